"""What a rule returns: how one notification is to be delivered.

A :class:`Plan` holds one or more :class:`Step` s. ``Plan("sms", ["twilio"], "Code {code}")`` is
the plan of one step. With many steps::

    Plan.cascade(                                   # each step a fallback for the one before
        Step("sms", ["twilio", "vonage"], text="Your code is {code}"),
        Step("email", ["sendgrid"], subject="Your code", text="Your code is {code}", after="30s"),
    )
    Plan.all(Step("push", ...), Step("sms", ...))   # every step at once

A fallback starts when the step before it failed or, with ``after``, when that step has not
succeeded within that time. ``success`` says what counts: ``"accepted"`` (a provider took it, the
default), ``"delivered"`` (a delivery receipt) or ``"read"`` (an open receipt, or
``Engine.acknowledge``). One step succeeding ends the plan: the steps not started are cancelled.

A rule may also decide not to send (``Plan.skip("quiet hours")``) or to be asked again later
(``Plan.defer(timedelta(hours=1))``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from herald._checks import checked_text, validation_error

__all__ = ["CHANNELS", "Plan", "Step", "StepSuccess"]

CHANNELS = ("sms", "email", "push", "chat", "webhook")
"""The channels a step may name."""

StepSuccess = Literal["accepted", "delivered", "read"]
_SUCCESS = {"accepted": 0, "delivered": 1, "read": 2}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_MAX_AFTER_MS = 366 * 86_400_000


def _duration_ms(where: str, value: Any) -> int:
    """A duration as milliseconds: "30s", "10m", "500ms", "2h", "1d", a timedelta or seconds."""
    if isinstance(value, bool):
        raise validation_error(where, "must be a duration such as '30s', a timedelta or seconds")
    if isinstance(value, timedelta):
        ms = value.total_seconds() * 1000
    elif isinstance(value, (int, float)):
        ms = float(value) * 1000
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise validation_error(where, f"{value!r} is not a duration (e.g. '500ms', '30s', '10m', '2h', '1d')")
        ms = float(m.group(1)) * _UNIT_MS[m.group(2)]
    else:
        raise validation_error(where, "must be a duration such as '30s', a timedelta or seconds")
    if not ms == ms or ms <= 0 or ms > _MAX_AFTER_MS:  # NaN, not positive, or past a year
        raise validation_error(where, "must be more than 0 and at most 366 days")
    return max(1, int(round(ms)))


def _optional_text(where: str, value: Any) -> str:
    if value is None:
        return ""
    return checked_text(where, value)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a plan: a channel, providers in failover order, and what to send.

    Every text field is a template: ``{name}``, ``{a.b}`` and ``{name|default}`` are filled from
    the notification's data. A variable with neither a value nor a default ends the step with
    ``template: missing variable 'name'`` rather than sending a blank.

    * ``text``: the SMS or chat text, the push body, the email's text part;
    * ``subject`` and ``html`` (email: sent as multipart/alternative with ``text``);
    * ``title``, ``image`` and ``data`` (push; ``data`` maps keys to templates);
    * ``after``: for a fallback, how long the step before it has to succeed ("30s", "10m", a
      timedelta or seconds); without it the fallback starts only when that step failed;
    * ``success``: "accepted", "delivered" or "read";
    * ``with_previous``: start together with the step before (``Plan.all`` sets it).
    """

    channel: str
    providers: Sequence[str]
    text: str | None = None
    subject: str | None = None
    html: str | None = None
    title: str | None = None
    image: str | None = None
    data: Mapping[str, str] | None = None
    after: str | float | timedelta | None = None
    success: StepSuccess = "accepted"
    with_previous: bool = False
    batch: bool = False
    _wire: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check("Step.")

    def _check(self, where: str, text_name: str = "text") -> None:
        if not isinstance(self.channel, str) or not self.channel:
            raise validation_error(f"{where}channel", "must be a non-empty string")
        checked_text(f"{where}channel", self.channel)
        if self.channel not in CHANNELS:
            raise validation_error(f"{where}channel", f"unknown channel {self.channel!r} (known: {', '.join(CHANNELS)})")
        if isinstance(self.providers, str):
            object.__setattr__(self, "providers", (self.providers,))
        try:
            providers = tuple(self.providers)
        except TypeError:
            raise validation_error(f"{where}providers", "must be a non-empty sequence of provider names") from None
        if not providers or not all(isinstance(p, str) and p for p in providers):
            raise validation_error(f"{where}providers", "must be a non-empty sequence of provider names")
        for i, p in enumerate(providers):
            checked_text(f"{where}providers[{i}]", p)
        object.__setattr__(self, "providers", providers)
        texts = [_optional_text(f"{where}{text_name if name == 'text' else name}", getattr(self, name))
                 for name in ("text", "subject", "html", "title", "image")]
        data_json = ""
        if self.data is not None:
            if not isinstance(self.data, Mapping):
                raise validation_error(f"{where}data", "must be a mapping of keys to template strings")
            for k, v in self.data.items():
                checked_text(f"{where}data (a key)", k)
                checked_text(f"{where}data[{k!r}]", v)
            data_json = json.dumps(dict(self.data), ensure_ascii=False, separators=(",", ":"))
        after_ms = 0 if self.after is None else _duration_ms(f"{where}after", self.after)
        if self.success not in _SUCCESS:
            raise validation_error(f"{where}success", "must be 'accepted', 'delivered' or 'read'")
        if not isinstance(self.with_previous, bool):
            raise validation_error(f"{where}with_previous", "must be True or False")
        if not isinstance(self.batch, bool):
            raise validation_error(f"{where}batch", "must be True or False")
        object.__setattr__(self, "_wire", (self.channel, providers, *texts, data_json, self.batch,
                                           self.with_previous, after_ms, _SUCCESS[self.success]))

    @property
    def after_ms(self) -> int:
        """``after`` in milliseconds (0 = none)."""
        return int(self._wire[10])


# The wire form of plain one-step plans already checked, by (channel, providers, template, batch):
# rules return a handful of distinct plans, made again for every notification. Bounded so that
# plans built from per-notification text cannot grow it without end.
_PLAIN_WIRES: dict[tuple[Any, ...], tuple[Any, ...]] = {}
_PLAIN_WIRES_MAX = 4096


class Plan:
    """A rule's answer: the steps to deliver a notification by (see the module's text).

    ``Plan(channel, providers, template)`` is the plan of one step and keeps working as it always
    did; the content fields (``subject``, ``html``, ``title``, ``image``, ``data``) and
    ``success`` may be given with it. ``Plan(steps=[...])``, :meth:`cascade` and :meth:`all`
    build plans with many steps.
    """

    # A plain plan sets only _wire (its Step is made when first asked for): a rule makes one plan
    # per notification, on the engine's loop, and each slot set cost as much as a third of the rest.
    __slots__ = ("_steps", "_wire")

    _steps: tuple[Step, ...]
    _wire: tuple[Any, ...]

    def __init__(
        self,
        channel: str | None = None,
        providers: Sequence[str] | None = None,
        template: str | None = None,
        batch: bool = False,
        *,
        subject: str | None = None,
        html: str | None = None,
        title: str | None = None,
        image: str | None = None,
        data: Mapping[str, str] | None = None,
        success: StepSuccess = "accepted",
        steps: Sequence[Step] | None = None,
    ) -> None:
        # Raises herald.ValidationError (a ValueError) naming the field, e.g. "Plan.providers[1]".
        # A plan of one step with nothing but channel, providers and text (and batch).
        plain = (subject is None and html is None and title is None and image is None and data is None
                 and success == "accepted")
        if (plain and steps is None and (batch is False or batch is True)
                and (type(providers) is list or type(providers) is tuple)):
            # A plain plan checked before (the common answer, once per notification): its shared
            # wire form, before any other check. The key's types are exact, so a lookup can only
            # find a plan made from the same, already checked, values.
            try:
                wire = _PLAIN_WIRES.get((channel, tuple(providers), template, batch))
            except TypeError:  # an unhashable provider name: the checks below say what is wrong
                wire = None
            if wire is not None:
                _set_wire(self, wire)
                return
        if steps is not None:
            if channel is not None or providers is not None or template is not None:
                raise validation_error("Plan.steps", "give either steps or channel/providers/template, not both")
            try:
                items = tuple(steps)
            except TypeError:
                raise validation_error("Plan.steps", "must be a sequence of herald.Step") from None
            if not items:
                raise validation_error("Plan.steps", "must hold at least one step")
            for i, st in enumerate(items):
                if not isinstance(st, Step):
                    raise validation_error(f"Plan.steps[{i}]", f"must be a herald.Step (got {type(st).__name__})")
            _check_waits(items)
        else:
            if providers is None:
                raise validation_error("Plan.providers", "must be a non-empty sequence of provider names")
            if not isinstance(channel, str) or not channel:
                raise validation_error("Plan.channel", "must be a non-empty string")
            if template is not None and not isinstance(template, str):
                raise validation_error("Plan.template", "must be a string or None")
            if not isinstance(batch, bool):
                raise validation_error("Plan.batch", "must be True or False")
            if plain and channel in CHANNELS:
                # The common plan, made once per notification on the engine's loop: the checks a
                # Step makes, without making one (about 3 µs instead of 9). Its wire form is then
                # shared with the same plan made again (looked up above).
                checked_text("Plan.channel", channel)
                chain = (providers,) if isinstance(providers, str) else providers
                try:
                    chain = tuple(chain)
                except TypeError:
                    raise validation_error("Plan.providers", "must be a non-empty sequence of provider names") from None
                if not chain or not all(isinstance(p, str) and p for p in chain):
                    raise validation_error("Plan.providers", "must be a non-empty sequence of provider names")
                for i, p in enumerate(chain):
                    checked_text(f"Plan.providers[{i}]", p)
                if template is not None:
                    checked_text("Plan.template", template)
                wire = ("plan", ((channel, chain, template or "", "", "", "", "", "", batch, False, 0, 0),))
                if len(_PLAIN_WIRES) < _PLAIN_WIRES_MAX and type(channel) is str and (
                        template is None or type(template) is str) and all(type(p) is str for p in chain):
                    _PLAIN_WIRES[(channel, chain, template, batch)] = wire
                _set_wire(self, wire)
                return
            one = Step.__new__(Step)
            for name, value in (("channel", channel), ("providers", providers), ("text", template),
                                ("subject", subject), ("html", html), ("title", title), ("image", image),
                                ("data", data), ("after", None), ("success", success),
                                ("with_previous", False), ("batch", batch)):
                object.__setattr__(one, name, value)
            one._check("Plan.", text_name="template")
            items = (one,)
        _set_steps(self, items)
        _set_wire(self, ("plan", tuple(st._wire for st in items)))

    @property
    def steps(self) -> tuple[Step, ...]:
        """The plan's steps (none for a skip or a deferral)."""
        try:
            return self._steps
        except AttributeError:  # a plain plan: its one Step, made now
            w = self._wire[1][0]
            steps = (Step(w[0], w[1], text=w[2] or None, batch=w[8]),)
            _set_steps(self, steps)
            return steps

    @property
    def skip_reason(self) -> str | None:
        """Why the notification is not sent (Plan.skip), or None."""
        w = self._wire
        return w[1] if w[0] == "skip" else None

    @property
    def defer_until(self) -> datetime | timedelta | float | None:
        """When to ask the rule again, as given to Plan.defer, or None."""
        w = self._wire
        return w[3] if w[0] == "defer" else None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Plan cannot be changed once made")

    # -- the one-step view (what plans were before they had steps) --------------------------------

    def _first(self) -> tuple[Any, ...] | None:
        return self._wire[1][0] if self._wire[0] == "plan" else None

    @property
    def channel(self) -> str:
        """The first step's channel."""
        first = self._first()
        return first[0] if first else ""

    @property
    def providers(self) -> tuple[str, ...]:
        """The first step's providers."""
        first = self._first()
        return tuple(first[1]) if first else ()

    @property
    def template(self) -> str | None:
        """The first step's text."""
        first = self._first()
        return (first[2] or None) if first else None

    @property
    def batch(self) -> bool:
        first = self._first()
        return bool(first[8]) if first else False

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def cascade(cls, *steps: Step) -> Plan:
        """Each step a fallback for the one before it."""
        return cls(steps=steps)

    @classmethod
    def all(cls, *steps: Step) -> Plan:
        """Every step at once (a security alert on every channel)."""
        items = []
        for i, st in enumerate(steps):
            if not isinstance(st, Step):
                raise validation_error(f"Plan.steps[{i}]", f"must be a herald.Step (got {type(st).__name__})")
            items.append(st if i == 0 or st.with_previous else _replace(st, with_previous=True))
        return cls(steps=items)

    @classmethod
    def skip(cls, reason: str) -> Plan:
        """Do not send it: the notification ends ``skipped`` with the reason in its trace."""
        checked_text("Plan.skip(reason)", reason)
        plan = cls.__new__(cls)
        _set_steps(plan, ())
        _set_wire(plan, ("skip", reason))
        return plan

    @classmethod
    def defer(cls, until: datetime | timedelta | float) -> Plan:
        """Ask the rule again later: at an aware datetime, after a timedelta, or after seconds."""
        if isinstance(until, datetime):
            if until.tzinfo is None:
                raise validation_error("Plan.defer(until)", "a datetime must be timezone-aware")
            wire: tuple[Any, ...] = ("defer", int(until.timestamp() * 1000), 0, until)
        else:
            wire = ("defer", -1, _duration_ms("Plan.defer(until)", until), until)
        plan = cls.__new__(cls)
        _set_steps(plan, ())
        _set_wire(plan, wire)
        return plan

    def with_providers(self, change: Callable[[tuple[str, ...]], Sequence[str]]) -> Plan:
        """The same plan with each step's providers replaced by ``change(providers)`` (shadow
        routing uses it); a skip or a deferral is returned as it is."""
        if not self.steps:
            return self
        steps = [_replace(st, providers=tuple(change(tuple(st.providers)))) for st in self.steps]
        return Plan(steps=steps)

    def __repr__(self) -> str:
        if self.skip_reason is not None:
            return f"Plan.skip({self.skip_reason!r})"
        if self.defer_until is not None:
            return f"Plan.defer({self.defer_until!r})"
        return f"Plan(steps={list(self.steps)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and self._wire == other._wire

    def __hash__(self) -> int:
        return hash(self._wire)


# Plan's slots set through their own descriptors: object.__setattr__ costs twice as much, and a
# plain plan is made once per notification on the engine's loop (Plan.__init__).
_set_steps = Plan.__dict__["_steps"].__set__
_set_wire = Plan.__dict__["_wire"].__set__


def _replace(st: Step, **changes: Any) -> Step:
    values = {name: getattr(st, name) for name in ("channel", "providers", "text", "subject", "html", "title",
                                                   "image", "data", "after", "success", "with_previous", "batch")}
    values.update(changes)
    return Step(**values)


def _check_waits(steps: tuple[Step, ...]) -> None:
    """A fallback after a step that succeeds only on a receipt or a read needs ``after``: else it
    would wait for a failure receipt that may never come."""
    for i in range(1, len(steps)):
        st = steps[i]
        if st.with_previous or st.after is not None:
            continue
        prev = steps[i - 1]
        if prev.success != "accepted":
            raise validation_error(
                f"Plan.steps[{i}].after",
                f"is required: the step before it succeeds only when {prev.success}, so say how long to wait",
            )
