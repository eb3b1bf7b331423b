"""The public engine API: a thin, typed layer over ``herald._core.Engine``."""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import os
import re
import time
import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from operator import itemgetter
from pathlib import Path
from types import ModuleType
from typing import Any

from herald import _core
from herald.alerts import Alert, AlertRunner, AlertState, Transition
from herald.answers import Event, Status, StoreQuestions, Suppression
from herald._checks import checked_int, checked_text, config_error, seconds_to_ms, validation_error
from herald.clock import ManualClock
from herald.health import ProviderHealth
from herald.kinds import Durability, Priority
from herald.live_rules import LiveRules
from herald.providers import ProviderSpec, load_providers
from herald.retention import Retention
from herald.rules import CATCH_ALL, RuleSet
from herald.shadow import ProviderFigures, Shadow, compare_providers, shadows_from_config

__all__ = ["Engine", "Event", "Receipt", "Status", "StoreQuestions", "Suppression", "When"]

Receipt = _core.Receipt
When = datetime | timedelta | float | int | None


_open_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_type_of = itemgetter("type")
_TYPE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # what the core accepts as a type (notification.cpp)


def _data_dir(value: object) -> str:
    """The data directory as text: a str or an os.PathLike (bytes paths decoded as the OS does)."""
    try:
        path = os.fspath(value)  # type: ignore[call-overload]
    except TypeError:
        raise config_error("data_dir", f"must be a path (got {type(value).__name__})") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise config_error("data_dir", "must not be empty")
    if "\0" in path:
        raise config_error("data_dir", "must not contain a NUL character")
    return checked_text("data_dir", path, config=True)


@atexit.register
def _close_all() -> None:
    # The core's threads call into Python for routing: stop them before the interpreter goes.
    for engine in list(_open_engines):
        engine.close()


class Engine(StoreQuestions):
    """A notification engine on this machine: durable queue, routing, delivery and its log.

    ``Engine()`` with no arguments keeps its state in ``./herald-data`` (SQLite, WAL), loads rules
    from ``./routing_rules`` when that directory exists (else every ``@rule`` function defined so
    far in the process) and providers from ``./herald.toml`` when that file exists.

    ``rules`` is a directory of rule modules, a module or a module's name (``rules=__name__``: the
    ``@rule`` functions of the calling module, defined above the engine), several modules, or a
    :class:`herald.RuleSet`. ``@rule("*")`` routes every type that has no rule of its own.
    """

    _core: _core.Engine

    def __init__(
        self,
        data_dir: str | Path = "herald-data",
        *,
        rules: str | Path | ModuleType | Iterable[ModuleType] | RuleSet | None = None,
        providers: ProviderSpec = None,
        durability: Durability = "process",
        max_attempts_per_provider: int = 3,
        retry_base: float = 0.2,
        retry_max: float = 60.0,
        route_batch: int = 512,
        seed: int = 0,
        close_timeout: float = 10.0,
        receipts: str | None = None,
        public_url: str | None = None,
        reconcile_after: float = 600.0,
        reconcile_interval: float = 30.0,
        retention: Retention | None = None,
        store_retry_max: float = 5.0,
        clock: ManualClock | None = None,
        rules_check_interval: float | None = 1.0,
        shadow: Iterable[Shadow | Mapping[str, Any]] | None = None,
        alerts: Iterable[Alert] = (),
        alert_interval: float = 5.0,
    ) -> None:
        """``receipts="127.0.0.1:8787"`` starts the receipt server providers call back
        (``public_url`` is where they reach it, when that differs). A delivery accepted by a
        provider that sends receipts, still without a final one after ``reconcile_after`` seconds,
        is looked up through the provider's status API every ``reconcile_interval`` seconds.

        Ranges (a value outside raises :class:`herald.ConfigError` naming the option; bools are not
        numbers): ``route_batch`` 1..65536, ``max_attempts_per_provider`` 1..100, ``retry_base``
        0..3600 s, ``retry_max`` 0..86400 s, ``close_timeout`` 0..86400 s, ``reconcile_after``
        0..2592000 s (30 days), ``reconcile_interval`` 0..86400 s, ``seed`` 0..2**64-1. Provider
        ranges are in :mod:`herald.providers`.

        ``retention`` limits what the store keeps (:class:`herald.Retention`: 7 days, 2 GiB of
        database, 1 GiB of log by default). When the disk refuses writes, the engine holds its
        records and retries them, pausing at most ``store_retry_max`` seconds (0.001..3600) between
        tries; :meth:`health` shows it.

        ``clock`` (tests): a :class:`herald.ManualClock` the engine schedules, retries, expires and
        stamps events by; its timers fire when the clock is advanced. Default: the system clock.

        Rules from a directory are loaded again when one of its files changes: routing looks at
        the directory at most every ``rules_check_interval`` seconds of the engine's clock
        (0..3600; None or 0: only :meth:`reload_rules`). A file that fails to load keeps the
        previous rules; :meth:`rules_status` and ``health()["rules"]`` say why, with file and line.

        ``shadow``: :class:`herald.Shadow` entries, each sending ``percent`` of a type's
        notifications whose plan names ``provider`` to ``candidate`` instead (chosen by a hash of
        the notification's id); :meth:`compare_providers` compares the two.

        ``alerts``: :class:`herald.Alert` rules, besides the module-level ones of the rules'
        modules, evaluated every ``alert_interval`` seconds (0.01..3600) of the engine's clock
        (docs/alerts.md). Each one's ``notify`` type must have a rule."""
        if rules is None and Path("routing_rules").is_dir():
            rules = "routing_rules"
        elif rules is None:
            rules = RuleSet.registered()
        # Durations are checked here, in seconds and under the caller's names; the core checks the
        # same ranges again in milliseconds. Integer options the core names as the caller does.
        route_batch_size = checked_int("route_batch", route_batch, 1, 65_536)
        retry_base_ms = seconds_to_ms("retry_base", retry_base, 0, 3600)
        retry_max_ms = seconds_to_ms("retry_max", retry_max, 0, 86_400)
        close_timeout_ms = seconds_to_ms("close_timeout", close_timeout, 0, 86_400)
        reconcile_after_ms = seconds_to_ms("reconcile_after", reconcile_after, 0, 30 * 86_400)
        reconcile_interval_ms = max(1, seconds_to_ms("reconcile_interval", reconcile_interval, 0, 86_400))
        store_retry_max_ms = max(1, seconds_to_ms("store_retry_max", store_retry_max, 0.001, 3600))
        if retention is not None and not isinstance(retention, Retention):
            raise config_error("retention", f"must be a herald.Retention (got {type(retention).__name__})")
        retention_options = (retention or Retention()).core_options()
        if clock is not None and not isinstance(clock, ManualClock):
            raise config_error("clock", f"must be a herald.ManualClock or None (got {type(clock).__name__})")
        if rules_check_interval is not None:
            rules_check_interval = seconds_to_ms("rules_check_interval", rules_check_interval, 0, 3600) / 1000
        if isinstance(alert_interval, bool) or not isinstance(alert_interval, (int, float)) \
                or not 0.01 <= alert_interval <= 3600:
            raise config_error("alert_interval", "must be a number of seconds from 0.01 to 3600")
        try:
            extra_alerts = list(alerts)
        except TypeError:
            raise config_error("alerts", f"must be a list of herald.Alert (got {type(alerts).__name__})") from None
        for i, a in enumerate(extra_alerts):
            if not isinstance(a, Alert):
                raise config_error(f"alerts[{i}]", f"must be a herald.Alert (got {type(a).__name__})")
        self._alerts: AlertRunner | None = None
        path = _data_dir(data_dir)
        loaded = RuleSet.load(rules)
        provider_configs = load_providers(providers)
        provider_names = [str(p.get("name", "")) for p in provider_configs]
        self._shadows = shadows_from_config(shadow)
        for i, s in enumerate(self._shadows):
            for field in ("provider", "candidate"):
                if getattr(s, field) not in provider_names:
                    raise config_error(f"shadow[{i}].{field}", f"{getattr(s, field)!r} is not a configured provider"
                                                               f" (configured: {', '.join(provider_names) or 'none'})")
        # A RuleSet subclass with its own route_batch decides every type itself: no intake check.
        self._routes_every_type = type(loaded).route_batch is not RuleSet.route_batch
        if self._routes_every_type and self._shadows:
            raise config_error("shadow", "needs the rules' own router (a RuleSet without its own route_batch)")
        # The router must not hold the engine (the core holds the router; GC cannot see that cycle).
        routes_every_type, shadows = self._routes_every_type, self._shadows
        self._live = LiveRules(
            loaded, lambda r: r.route_batch if routes_every_type else r.router(provider_names, shadows),
            interval=None if self._routes_every_type else rules_check_interval,
            now=time.monotonic if clock is None else clock.now)
        router = self._live.route_batch
        # Every option by keyword, so that a type checker holds each name and type to _core.pyi.
        self._core = _core.Engine(
            path, durability, provider_configs, router, route_batch_size=route_batch_size,
            max_attempts_per_provider=max_attempts_per_provider, retry_base_ms=retry_base_ms,
            retry_max_ms=retry_max_ms, seed=seed, close_timeout_ms=close_timeout_ms,
            receipts="" if receipts is None else receipts, public_url="" if public_url is None else public_url,
            reconcile_after_ms=reconcile_after_ms, reconcile_interval_ms=reconcile_interval_ms,
            store_retry_max_ms=store_retry_max_ms, clock=None if clock is None else clock._core, **retention_options)
        if not self._routes_every_type and not len(self.rules):
            logging.getLogger("herald").warning(
                "engine at %s started with no rules: every send() will be refused (define @rule"
                " functions, a ./routing_rules directory, or pass rules=)", path)
        _open_engines.add(self)
        all_alerts = self.rules.alerts + [a for a in extra_alerts if not any(a is b for b in self.rules.alerts)]
        if all_alerts:
            try:
                self._start_alerts(all_alerts, float(alert_interval), clock)
            except BaseException:
                self.close()
                raise

    # -- alerts --------------------------------------------------------------------------------

    def _start_alerts(self, alerts: list[Alert], interval: float, clock: ManualClock | None) -> None:
        for a in alerts:
            if not self._routes_every_type and not self.rules.routes(a.notify):
                raise config_error(f"alerts.{a.name}.notify",
                                   f"no rule routes type {a.notify!r}: add a rule that sends alerts somewhere")
        for a in alerts:
            self._core.declare_alert(a.name)
        self._alerts = AlertRunner(alerts, interval=interval, now=clock.now if clock is not None else time.time,
                                   metrics=self._core.metrics, on_transition=self._alert_changed,
                                   manual_clock=clock is not None)

    def _alert_changed(self, t: Transition) -> None:
        """Records the transition, then tells someone: the notification goes through this engine."""
        a = t.alert
        self._core.alert_changed(a.name, t.state == "firing", t.text)
        data = {"alert": a.name, "state": t.state, "value": t.value, "threshold": a.above if t.state == "firing"
                else a.resolve_below, "signal": a.signal.describe(), "summary": a.summary, "text": t.text, "at": t.at}
        self.send(a.notify, a.recipient, data, priority=a.priority,
                  idempotency_key=f"herald-alert:{a.name}:{t.state}:{round(t.at * 1e6)}")

    def alert_states(self) -> dict[str, AlertState]:
        """Each alert rule's state: ``ok``, ``pending`` (above, not yet for ``for_``), ``firing``
        or ``resolving`` (clear, not yet for ``clear_for``)."""
        return {} if self._alerts is None else self._alerts.evaluator.states()

    @property
    def alerts_evaluated_at(self) -> float | None:
        """The engine-clock time (epoch s) of the last alert evaluation; None before the first or
        without alerts. Tests wait on it after advancing a ManualClock."""
        if self._alerts is None or not self._alerts.evaluations:
            return None
        return self._alerts.evaluated_at

    @property
    def rules(self) -> RuleSet:
        """The rules in use (after a reload: the reloaded ones)."""
        return self._live.rules

    def reload_rules(self) -> dict[str, Any]:
        """Loads the rules directory again now, whether or not a file changed. Returns
        :meth:`rules_status`; raises :class:`herald.ConfigError` (``field`` "rules", the message
        ``file:line: error``) when a file fails, the previous rules staying in use. Rules from
        modules are not reloaded (nothing happens)."""
        problem = self._live.reload()
        if problem is not None:
            raise config_error("rules", str(problem))
        return self.rules_status()

    def rules_status(self) -> dict[str, Any]:
        """The rules in use: ``directory`` (None for modules), ``types``, ``files``, ``loaded_at``
        (epoch s), ``reloads`` (since start), ``check_interval`` (s, None: no automatic checks) and
        ``error``: None, or the last failed load (``file``, ``line``, ``message``, ``at``, ``text``
        as ``file:line: message``) while the previous rules stay in use."""
        return self._live.status()

    def compare_providers(self, providers: Iterable[str], *, since: When = None,
                          type: str | None = None) -> dict[str, ProviderFigures]:
        """Providers side by side over the notifications taken in since ``since`` (of one
        ``type``, or all): attempts, acceptance rate, latency p50/p99 of accepted attempts, the
        shares of their completed notifications with a delivered, failed or bounced receipt, and
        cost. Reads the committed store (what :meth:`flush` has written), see
        :func:`herald.shadow.compare_providers`."""
        self._core.flush()
        return compare_providers(self.data_dir, list(providers), since=since, type=type)

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops intake, lets attempts in flight finish, commits everything. Idempotent."""
        alerts = getattr(self, "_alerts", None)
        if alerts is not None:
            alerts.stop()  # before the core: an evaluation calls into it
        if not self._core.closed:
            self._core.close()
        _open_engines.discard(self)

    @property
    def closed(self) -> bool:
        return bool(self._core.closed)

    @property
    def data_dir(self) -> Path:
        return Path(self._core.data_dir)

    @property
    def receipts_url(self) -> str | None:
        """``<public_url>/receipts`` while the receipt server runs, else None."""
        return self._core.receipts_url or None

    # -- intake --------------------------------------------------------------------------------

    def send(
        self,
        type: str,
        recipient: str | Mapping[str, Any],
        data: Mapping[str, Any] | None = None,
        *,
        priority: Priority = "normal",
        idempotency_key: str | None = None,
        ordering_key: str | None = None,
        send_at: When = None,
        expires_at: When = None,
        tenant: str = "default",
    ) -> Receipt:
        """Accepts one notification; returns once it is durable.

        ``recipient`` is a user id or a dict with an ``id`` and addresses. ``send_at`` and
        ``expires_at`` take an aware datetime, a timedelta from now, or epoch seconds. A repeat of
        ``idempotency_key`` returns the first notification's receipt (``duplicate=True``).

        Limits (:class:`herald.ValidationError` names the field, down to ``data.a.b[3]``): text must
        be valid UTF-8 (no lone surrogates); ``data`` and ``recipient`` must be JSON-like (dict with
        str keys, list, tuple, str, int within 64 bits, finite float, bool, None, date/datetime), at
        most 64 levels deep, not contain themselves, and come to at most 256 KiB of JSON; times
        must fall from 1970-01-01 to 9999-12-31.
        """
        self._check_routed(type, "type")
        fields: dict[str, Any] = {"type": type, "recipient": recipient, "priority": priority, "tenant": tenant}
        if data is not None:
            fields["data"] = data
        if idempotency_key is not None:
            fields["idempotency_key"] = idempotency_key
        if ordering_key is not None:
            fields["ordering_key"] = ordering_key
        if send_at is not None:
            fields["send_at"] = send_at
        if expires_at is not None:
            fields["expires_at"] = expires_at
        return self._core.send(fields)

    def send_many(self, notifications: Iterable[Mapping[str, Any]], *, chunk: int = 10_000) -> list[Receipt]:
        """Accepts many notifications (dicts with the keyword names of :meth:`send`).

        Each chunk is validated whole and committed at once: a bad item rejects its chunk, naming
        the item, before any of that chunk is accepted. A type with no rule (and no ``@rule("*")``)
        is such a bad item: ``notifications[i].type``.
        """
        checked_int("chunk", chunk, 1, 2**31 - 1, config=False)
        if isinstance(notifications, list):
            items = notifications
        else:
            try:
                items = list(notifications)
            except TypeError:
                raise validation_error("notifications", "must be an iterable of dicts") from None
        out: list[Receipt] = []
        # A collection mid-intake would walk every caller's dict for nothing: hold it until the end.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for start in range(0, len(items), chunk):
                part = items[start : start + chunk]
                self._check_routed_many(part, start)
                out.extend(self._core.send_many(part))
        finally:
            if collecting:
                gc.enable()
        return out

    def _check_routed(self, type_: object, field: str) -> None:
        """Fail fast: a type no rule routes is refused at intake rather than dead-lettered later.
        Types that are not well-formed names are left to the core, which says what is wrong."""
        rules = self.rules._rules
        if (not self._routes_every_type and isinstance(type_, str) and type_ not in rules and CATCH_ALL not in rules
                and self._live.poll()):  # a rule file for a new type, seen before routing saw it
            rules = self.rules._rules
        if (not self._routes_every_type and isinstance(type_, str) and type_ not in rules and CATCH_ALL not in rules
                and _TYPE_NAME.fullmatch(type_)):  # a malformed type: the core's own error says why
            known = ", ".join(repr(t) for t in sorted(rules)) or "none"
            raise validation_error(field, f"no rule routes type {type_!r} (rules exist for: {known};"
                                          " @rule('*') catches every type)")

    def _check_routed_many(self, items: list[Any], offset: int) -> None:
        rules = self.rules._rules
        if self._routes_every_type or CATCH_ALL in rules:
            return
        try:  # the common case at C speed: one set of the types in the chunk
            missing = set(map(_type_of, items)).difference(rules)
        except (KeyError, TypeError, AttributeError):
            missing = {None}  # an item without a hashable type: find it one by one below
        if missing and self._live.poll():  # rule files for new types, seen before routing saw them
            return self._check_routed_many(items, offset)
        if not missing:
            return
        for i, item in enumerate(items):
            type_ = item.get("type") if isinstance(item, Mapping) else None
            self._check_routed(type_, f"notifications[{offset + i}].type")

    # -- questions -----------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        return dict(self._core.stats())

    def metrics(self) -> str:
        """Counters, latency histograms and queue gauges in the Prometheus text format (what
        ``herald serve`` answers at ``GET /metrics``); see docs/serve.md for the names."""
        return str(self._core.metrics())

    def health(self) -> dict[str, Any]:
        """Whether the engine can do its work. ``store``: ``degraded`` (the disk refuses writes;
        records are held in memory and delivery waits), ``error``, ``since`` (epoch s),
        ``held_batches``, ``write_faults`` (refused commits since start). ``rules``: ``ok``, or
        ``error`` with ``file:line: message`` when the rules directory failed to reload and the
        previous rules are still in use."""
        health = dict(self._core.health())
        problem = self._live.problem
        health["rules"] = "ok" if problem is None else "error"
        if problem is not None:
            health["rules_error"] = str(problem)
        return health

    def provider_health(self) -> dict[str, ProviderHealth]:
        """Each provider's health by name, what rules read as their second parameter
        (herald/health.py): ``circuit`` ("closed", "open", "half_open"), ``failure_rate`` and
        ``attempts`` over the circuit's window, ``p99_ms`` (None before any answer), ``cost``,
        ``half_open_at`` (epoch seconds while open)."""
        return dict(self._core.provider_health())

    def prune(self) -> dict[str, int]:
        """Runs a retention pass now (the engine also runs one every ``retention.interval``)."""
        return dict(self._core.prune())

    def unsuppress(self, channel: str, address: str) -> bool:
        """Lifts a suppression (the recipient re-subscribed). False when there was none."""
        return bool(self._core.unsuppress(channel, address))

    # -- control -------------------------------------------------------------------------------

    def retry(self, id: int) -> None:
        """Re-queues a dead-lettered notification from the first provider of its plan."""
        self._core.retry(id)

    def cancel(self, id: int) -> bool:
        """Cancels a notification not yet sent; False when it is final or an attempt is in flight."""
        return bool(self._core.cancel(id))

    def acknowledge(self, id: int, *, channel: str) -> None:
        """Tells the engine the recipient read notification ``id`` on ``channel`` (opened the push,
        clicked the link). It is recorded in the trace, and a step of its plan that succeeds when
        read (``success="read"``) succeeds: the fallbacks not yet started are cancelled."""
        self._core.acknowledge(id, channel)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Blocks until every accepted notification is final and recorded; False on timeout."""
        return bool(self._core.wait_idle(timeout))

    def wait(self, id: int, timeout: float = 30.0) -> Status:
        """Blocks until one notification is final; raises TimeoutError with its last status."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise validation_error("timeout", "must be a number of seconds, 0 or more")
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            self._core.flush()
            status = self.status(id)
            if status is None:
                raise _core.NotFound(f"notification {id} not found")
            if status.final:
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"notification {id} is still {status.state} after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def flush(self) -> None:
        """Blocks until every recorded change is committed to the store."""
        self._core.flush()

    # -- asyncio twins -------------------------------------------------------------------------

    async def asend(self, type: str, recipient: str | Mapping[str, Any], data: Mapping[str, Any] | None = None,
                    **options: Any) -> Receipt:
        return await asyncio.to_thread(self.send, type, recipient, data, **options)

    async def asend_many(self, notifications: Iterable[Mapping[str, Any]], *, chunk: int = 10_000) -> list[Receipt]:
        items = list(notifications)
        return await asyncio.to_thread(self.send_many, items, chunk=chunk)

    async def astatus(self, id: int) -> Status | None:
        return await asyncio.to_thread(self.status, id)

    async def atrace(self, id: int) -> list[Event]:
        return await asyncio.to_thread(self.trace, id)

    async def await_(self, id: int, timeout: float = 30.0) -> Status:
        return await asyncio.to_thread(self.wait, id, timeout)

    async def await_idle(self, timeout: float = 30.0) -> bool:
        return await asyncio.to_thread(self.wait_idle, timeout)
