"""Alert rules: conditions on the engine's own metrics, evaluated on a rolling window, that send
a notification through the engine itself when they begin and end (docs/alerts.md).

An :class:`Alert` names a *signal* (what to measure over a window: :func:`failure_rate`,
:func:`latency_quantile`, :func:`dead_letters`, :func:`spend`), a threshold, and how long the
condition must hold before it fires (``for_``) and how long it must be clear, below
``clear_below``, before it resolves (``clear_for``): the two thresholds and the two delays keep
a value that hovers around the threshold from firing and resolving over and over.

Alerts come from ``Engine(alerts=[...])`` and from module-level ``Alert`` objects in the rules'
modules (beside the ``@rule`` functions). The engine samples its metrics every
``alert_interval`` seconds of its clock (a :class:`herald.ManualClock` in tests) and feeds an
:class:`AlertEvaluator`, which is pure: samples in, transitions out. A transition is written to
the delivery log (``alert_firing`` / ``alert_resolved``, notification id 0), shown in
``/metrics`` as ``herald_alert_firing{alert="..."}``, and sent as a notification of type
``alert.notify`` (``"herald_alert"`` by default) to ``alert.recipient``, routed by a rule like
any other (to Slack, a webhook, email).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from herald._checks import config_error
from herald.kinds import Priority

__all__ = [
    "Alert",
    "AlertEvaluator",
    "AlertState",
    "Sample",
    "Signal",
    "Transition",
    "Window",
    "dead_letters",
    "failure_rate",
    "latency_quantile",
    "parse_metrics",
    "spend",
]

logger = logging.getLogger("herald")

Labels = frozenset[tuple[str, str]]
Sample = dict[tuple[str, Labels], float]
"""One reading of the metrics: (name, labels) → value, as :func:`parse_metrics` reads them."""

AlertState = Literal["ok", "pending", "firing", "resolving"]
"""``pending``: the condition holds, not yet for ``for_``; ``resolving``: firing, and clear for
less than ``clear_for``."""

_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_metrics(text: str) -> Sample:
    """The samples of a Prometheus text exposition (what ``Engine.metrics()`` answers)."""
    out: Sample = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        name, labels_text, value_text = m.groups()
        labels = frozenset(
            (k, re.sub(r"\\[\\\"n]", lambda e: _UNESCAPE[e.group(0)], v))
            for k, v in _LABEL.findall(labels_text or ""))
        try:
            out[(name, labels)] = float(value_text)
        except ValueError:
            continue
    return out


def total(sample: Sample, name: str, **match: str) -> float:
    """The sum of ``name``'s series whose labels include ``match``."""
    want = set(match.items())
    return sum(v for (n, labels), v in sample.items() if n == name and want <= labels)


class Window:
    """The samples of the last ``keep`` seconds, oldest first, and what signals ask of them."""

    def __init__(self, keep: float) -> None:
        self.keep = keep
        self.samples: deque[tuple[float, Sample]] = deque()

    def add(self, at: float, sample: Sample) -> None:
        if self.samples and at < self.samples[-1][0]:
            raise ValueError(f"samples must come in time order ({at} after {self.samples[-1][0]})")
        self.samples.append((at, sample))
        # Keep one sample at or before the window's start: the base an increase is measured from.
        while len(self.samples) > 2 and self.samples[1][0] <= at - self.keep:
            self.samples.popleft()

    @property
    def now(self) -> float:
        return self.samples[-1][0] if self.samples else 0.0

    def base(self, over: float) -> Sample:
        """The latest sample at or before ``over`` seconds ago (the oldest one when none is)."""
        start = self.now - over
        chosen = self.samples[0][1]
        for at, sample in self.samples:
            if at > start:
                break
            chosen = sample
        return chosen

    def increase(self, over: float, name: str, **match: str) -> float:
        """How much the counter ``name`` (summed over the series matching) grew in ``over`` s."""
        if not self.samples:
            return 0.0
        return max(0.0, total(self.samples[-1][1], name, **match) - total(self.base(over), name, **match))


class Signal(Protocol):
    """What an alert measures: a number from the window, or None when there is nothing to judge
    (no attempts at all, say), which counts as clear."""

    @property
    def over(self) -> float | None:
        """Seconds of history the signal looks at (None: only the latest sample)."""

    def value(self, window: Window) -> float | None: ...

    def describe(self) -> str: ...


def _seconds(field_name: str, value: Any, low: float = 0.0, high: float = 30 * 86_400) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise config_error(field_name, f"must be a number of seconds from {low:g} to {int(high)} (got {value!r})")
    return float(value)


@dataclass(frozen=True)
class _FailureRate:
    over: float
    channel: str | None
    provider: str | None
    min_attempts: int

    def value(self, window: Window) -> float | None:
        if self.channel is not None:
            name, match = "herald_channel_attempts_total", {"channel": self.channel}
        else:
            name, match = "herald_attempts_total", ({"provider": self.provider} if self.provider else {})
        attempts = window.increase(self.over, name, **match)
        if attempts < max(1, self.min_attempts):
            return None
        accepted = window.increase(self.over, name, outcome="accepted", **match)
        return (attempts - accepted) / attempts

    def describe(self) -> str:
        where = f"channel={self.channel}" if self.channel else f"provider={self.provider}" if self.provider else "all"
        return f"failure rate ({where}) over {self.over:g} s"


def failure_rate(*, channel: str | None = None, provider: str | None = None, over: float = 120.0,
                 min_attempts: int = 1) -> Signal:
    """The share of attempts in the last ``over`` seconds that the provider did not accept
    (refused, failed, timed out), on one channel (the plan's) or one provider, or overall. None
    (clear) with fewer than ``min_attempts`` attempts in the window."""
    if channel is not None and provider is not None:
        raise config_error("failure_rate", "give channel or provider, not both")
    if isinstance(min_attempts, bool) or not isinstance(min_attempts, int) or min_attempts < 1:
        raise config_error("min_attempts", f"must be an integer, 1 or more (got {min_attempts!r})")
    return _FailureRate(_seconds("over", over, 1.0), channel, provider, min_attempts)


@dataclass(frozen=True)
class _LatencyQuantile:
    over: float
    q: float
    priority: str

    def value(self, window: Window) -> float | None:
        """Linear interpolation within the bucket, as Prometheus' histogram_quantile does."""
        name = "herald_accept_latency_seconds_bucket"
        if not window.samples:
            return None
        latest, base = window.samples[-1][1], window.base(self.over)
        bounds: dict[float, float] = {}
        for (n, labels), v in latest.items():
            if n != name or ("priority", self.priority) not in labels:
                continue
            le = dict(labels).get("le", "+Inf")
            bound = math.inf if le == "+Inf" else float(le)
            bounds[bound] = v - base.get((n, labels), 0.0)
        if not bounds or bounds.get(math.inf, 0.0) <= 0:
            return None
        count = bounds[math.inf]
        rank = self.q * count
        lower, below = 0.0, 0.0
        for bound in sorted(bounds):
            cumulative = bounds[bound]
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower  # past the last finite bucket: its bound is the best known
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
            lower, below = bound, cumulative
        return lower

    def describe(self) -> str:
        return f"p{self.q * 100:g} enqueue-to-accepted latency ({self.priority}) over {self.over:g} s"


def latency_quantile(q: float = 0.99, *, priority: Priority = "critical", over: float = 300.0) -> Signal:
    """The ``q`` quantile (seconds) of the time from ``send()`` to a provider's acceptance of
    ``priority`` notifications accepted in the last ``over`` seconds, from the
    ``herald_accept_latency_seconds`` histogram (so as exact as its buckets)."""
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1:
        raise config_error("q", f"must be a number between 0 and 1 (got {q!r})")
    if priority not in ("critical", "high", "normal", "bulk"):
        raise config_error("priority", f"must be critical, high, normal or bulk (got {priority!r})")
    return _LatencyQuantile(_seconds("over", over, 1.0), float(q), priority)


@dataclass(frozen=True)
class _DeadLetters:
    over: float

    def value(self, window: Window) -> float | None:
        return window.increase(self.over, "herald_notifications_final_total", state="dead_lettered")

    def describe(self) -> str:
        return f"dead letters added over {self.over:g} s"


def dead_letters(*, over: float = 300.0) -> Signal:
    """How many notifications were dead-lettered in the last ``over`` seconds (``above=0``: the
    dead-letter set is growing)."""
    return _DeadLetters(_seconds("over", over, 1.0))


@dataclass(frozen=True)
class _Spend:
    budget: float
    over: float | None
    provider: str | None

    def value(self, window: Window) -> float | None:
        if not window.samples:
            return None
        match = {"provider": self.provider} if self.provider else {}
        if self.over is None:
            spent = total(window.samples[-1][1], "herald_spend_total", **match)
        else:
            spent = window.increase(self.over, "herald_spend_total", **match)
        return spent / self.budget

    def describe(self) -> str:
        span = "since the engine started" if self.over is None else f"over {self.over:g} s"
        return f"spend{f' ({self.provider})' if self.provider else ''} {span} as a share of {self.budget:g}"


def spend(budget: float, *, over: float | None = None, provider: str | None = None) -> Signal:
    """The cost of accepted attempts (``cost_per_message`` of each provider) as a share of
    ``budget``: since the engine started, or in the last ``over`` seconds. ``above=0.8``: 80 % of
    the budget is spent."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < math.inf:
        raise config_error("budget", f"must be a positive number (got {budget!r})")
    return _Spend(float(budget), None if over is None else _seconds("over", over, 1.0), provider)


_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


@dataclass(frozen=True)
class Alert:
    """One alert rule: fires once ``signal`` has been above ``above`` for ``for_`` seconds, and
    resolves once it has been at or below ``clear_below`` (default: ``above``) for ``clear_for``
    seconds (default: ``for_``). Each transition sends a notification of type ``notify`` to
    ``recipient`` with data ``{alert, state, value, threshold, summary, text}``."""

    name: str
    signal: Signal
    above: float
    for_: float = 60.0
    clear_below: float | None = None
    clear_for: float | None = None
    notify: str = "herald_alert"
    recipient: str | Mapping[str, Any] = "ops"
    priority: Priority = "high"
    summary: str = ""

    def __post_init__(self) -> None:
        where = f"alerts.{self.name}" if isinstance(self.name, str) and _NAME.fullmatch(self.name) else "alerts"
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise config_error("alerts.name", f"must be 1 to 128 of A-Z a-z 0-9 _ . : - (got {self.name!r})")
        if not callable(getattr(self.signal, "value", None)) or not callable(getattr(self.signal, "describe", None)):
            raise config_error(f"{where}.signal", "must be a signal (failure_rate(), latency_quantile(), ...)")
        for name in ("above",) + (("clear_below",) if self.clear_below is not None else ()):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise config_error(f"{where}.{name}", f"must be a finite number (got {v!r})")
        if self.clear_below is not None and self.clear_below > self.above:
            raise config_error(f"{where}.clear_below", f"must not exceed above ({self.clear_below} > {self.above})")
        _seconds(f"{where}.for_", self.for_)
        if self.clear_for is not None:
            _seconds(f"{where}.clear_for", self.clear_for)
        if not isinstance(self.notify, str) or not _NAME.fullmatch(self.notify):
            raise config_error(f"{where}.notify", f"must be a notification type (got {self.notify!r})")
        if self.priority not in ("critical", "high", "normal", "bulk"):
            raise config_error(f"{where}.priority", f"must be critical, high, normal or bulk (got {self.priority!r})")

    @property
    def resolve_below(self) -> float:
        return self.above if self.clear_below is None else self.clear_below

    @property
    def resolve_after(self) -> float:
        return self.for_ if self.clear_for is None else self.clear_for


@dataclass(frozen=True)
class Transition:
    """An alert began (``firing``) or ended (``resolved``) at ``at`` (epoch seconds)."""

    alert: Alert
    state: Literal["firing", "resolved"]
    at: float
    value: float | None
    since: float  # when the condition (or its clearing) began

    @property
    def text(self) -> str:
        a = self.alert
        shown = "no data" if self.value is None else f"{self.value:.4g}"
        if self.state == "firing":
            return (f"[herald] FIRING {a.name}: {a.signal.describe()} is {shown} > {a.above:g}"
                    f" for {self.at - self.since:g} s{(' - ' + a.summary) if a.summary else ''}")
        return (f"[herald] RESOLVED {a.name}: {a.signal.describe()} is {shown} <= {a.resolve_below:g}"
                f" for {self.at - self.since:g} s")


@dataclass
class _Track:
    state: AlertState = "ok"
    since: float = 0.0  # when the current pending/resolving stretch began
    fired_at: float = 0.0
    value: float | None = None


@dataclass
class AlertEvaluator:
    """The alerts' state machine, without I/O: :meth:`observe` takes one metrics sample at one
    time and answers the transitions it causes. ok → pending (above) → firing (still above after
    ``for_``); firing → resolving (at or below ``clear_below``) → ok (still there after
    ``clear_for``); a pending alert that drops back is ok again, a resolving one that rises above
    ``clear_below`` is firing again, both without a transition."""

    alerts: list[Alert]
    window: Window = field(init=False)
    _tracks: dict[str, _Track] = field(init=False)

    def __post_init__(self) -> None:
        names = [a.name for a in self.alerts]
        for name in names:
            if names.count(name) > 1:
                raise config_error(f"alerts.{name}", "two alerts have this name")
        keep = max([float(getattr(a.signal, "over", 0.0) or 0.0) for a in self.alerts] + [1.0])
        self.window = Window(keep)
        self._tracks = {a.name: _Track() for a in self.alerts}

    def state(self, name: str) -> AlertState:
        return self._tracks[name].state

    def states(self) -> dict[str, AlertState]:
        return {name: t.state for name, t in self._tracks.items()}

    def observe(self, at: float, sample: Sample) -> list[Transition]:
        self.window.add(at, sample)
        out: list[Transition] = []
        for a in self.alerts:
            t = self._tracks[a.name]
            value = a.signal.value(self.window)
            t.value = value
            above = value is not None and value > a.above
            clear = value is None or value <= a.resolve_below
            if t.state == "ok" and above:
                t.state, t.since = "pending", at
            elif t.state == "pending" and not above:
                t.state = "ok"
            elif t.state == "firing" and clear:
                t.state, t.since = "resolving", at
            elif t.state == "resolving" and not clear:
                t.state = "firing"
            if t.state == "pending" and at - t.since >= a.for_:
                out.append(Transition(a, "firing", at, value, t.since))
                t.state, t.fired_at = "firing", at
            elif t.state == "resolving" and at - t.since >= a.resolve_after:
                out.append(Transition(a, "resolved", at, value, t.since))
                t.state = "ok"
        return out


class AlertRunner:
    """The engine's side: a thread that samples ``metrics()`` every ``interval`` seconds of
    ``now()`` (the engine's clock), feeds the evaluator and acts on its transitions through
    ``on_transition``. Under a manual clock it looks at the clock every 5 ms of real time and
    evaluates once whenever the clock has moved ``interval`` past the last evaluation (once, at
    the new time, however far it jumped)."""

    def __init__(self, alerts: list[Alert], *, interval: float, now: Callable[[], float],
                 metrics: Callable[[], str], on_transition: Callable[[Transition], None],
                 manual_clock: bool) -> None:
        self.evaluator = AlertEvaluator(list(alerts))
        self.interval = interval
        self._now = now
        self._metrics = metrics
        self._act = on_transition
        self._poll = 0.005 if manual_clock else interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.evaluated_at = 0.0  # the clock time of the last evaluation
        self.evaluations = 0
        self._next = now()
        self._thread = threading.Thread(target=self._run, name="herald-alerts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self._now()
            if now >= self._next - 1e-6:  # the clock's microseconds against a float sum
                try:
                    self.evaluate(now)
                except Exception:  # an engine closing under it, a broken signal: log, go on
                    if self._stop.is_set():
                        return
                    logger.exception("alert evaluation failed")
                self._next = now + self.interval
            self._stop.wait(self._poll)

    def evaluate(self, now: float) -> list[Transition]:
        """One evaluation at ``now``: sample, observe, act on each transition."""
        with self._lock:
            transitions = self.evaluator.observe(now, parse_metrics(self._metrics()))
            for t in transitions:
                self._act(t)
            self.evaluated_at = now
            self.evaluations += 1
            return transitions

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


def collect(values: Iterable[Any]) -> list[Alert]:
    """The Alert objects among ``values`` (a module's globals), and the ones in lists of them."""
    out: list[Alert] = []
    for v in values:
        if isinstance(v, Alert):
            out.append(v)
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Alert) for x in v):
            out.extend(v)
    return out
