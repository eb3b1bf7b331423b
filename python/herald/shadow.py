"""Shadow routing: a share of one type's notifications goes through a candidate provider instead
of the usual one, so that the two can be compared on real traffic (:func:`compare_providers`).

``Engine(shadow=[Shadow(type="otp", provider="sms-primary", candidate="sms-candidate", percent=10)])``
sends 10% of the ``otp`` notifications whose plan names ``sms-primary`` to ``sms-candidate`` in its
place. Which ones is decided by a hash of the notification's id, so the same notification always
gets the same answer (after a restart, a retry of a dead letter, a second routing).

It is applied after the rule has returned its plan (:meth:`herald.RuleSet.router`); the routed
event lists the providers actually used ("sms via sms-candidate,sms-backup"), so a trace or the
delivery log shows which notifications were shadowed.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from herald._checks import checked_text, config_error

__all__ = ["ProviderFigures", "Shadow", "compare_providers", "shadow_providers", "shadows_from_config", "takes"]

_SCALE = 1 << 64


@dataclass(frozen=True, slots=True)
class Shadow:
    """``percent`` (0..100) of the notifications of ``type`` (``"*"``: every type) whose plan names
    ``provider`` use ``candidate`` in its place."""

    type: str
    provider: str
    candidate: str
    percent: float
    _key: bytes = field(init=False, repr=False, compare=False)
    _threshold: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("type", "provider", "candidate"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise config_error(f"Shadow.{name}", "must be a non-empty string")
            checked_text(f"Shadow.{name}", value, config=True)
        if self.provider == self.candidate:
            raise config_error("Shadow.candidate", f"must differ from provider ({self.provider!r})")
        p = self.percent
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100:
            raise config_error("Shadow.percent", f"must be a number from 0 to 100 (got {p!r})")
        object.__setattr__(self, "percent", float(p))
        # The hash key: each shadow splits traffic independently of the others.
        salt = f"{self.type}\0{self.provider}\0{self.candidate}".encode("utf-8", "surrogateescape")
        object.__setattr__(self, "_key", hashlib.blake2b(salt, digest_size=16).digest())
        object.__setattr__(self, "_threshold", math.floor(p / 100 * _SCALE))


def takes(shadow: Shadow, notification_id: int) -> bool:
    """Whether this notification goes to the candidate: a keyed hash of its id, below the share."""
    h = hashlib.blake2b(notification_id.to_bytes(8, "little", signed=False), digest_size=8,
                        key=shadow._key).digest()
    return int.from_bytes(h, "little") < shadow._threshold


def shadow_providers(providers: Sequence[str], provider: str, candidate: str) -> tuple[str, ...]:
    """The failover chain with ``candidate`` in ``provider``'s place. A chain that already names the
    candidate gets the two swapped, so that no provider appears twice and none is lost. A chain
    without ``provider`` is returned as it is. (Pure: one step's providers; a multi-step plan
    applies it per step.)"""
    if provider not in providers:
        return tuple(providers)
    return tuple(candidate if p == provider else provider if p == candidate else p for p in providers)


def shadows_from_config(value: Any, where: str = "shadow") -> tuple[Shadow, ...]:
    """Shadows from ``Engine(shadow=...)`` or a TOML array of tables (``[[shadow]]``): Shadow
    objects or mappings with type, provider, candidate and percent."""
    if value is None:
        return ()
    if isinstance(value, (Shadow, Mapping)):
        value = [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise config_error(where, "must be a list of herald.Shadow (or tables with type, provider, candidate, percent)")
    out: list[Shadow] = []
    for i, item in enumerate(value):
        if isinstance(item, Shadow):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise config_error(f"{where}[{i}]", "must be a herald.Shadow or a table")
        unknown = set(item) - {"type", "provider", "candidate", "percent"}
        if unknown:
            raise config_error(f"{where}[{i}].{sorted(unknown)[0]}", "unknown field")
        missing = [k for k in ("type", "provider", "candidate", "percent") if k not in item]
        if missing:
            raise config_error(f"{where}[{i}].{missing[0]}", "is required")
        try:
            out.append(Shadow(**item))
        except Exception as exc:  # name the item, not only the field
            field = getattr(exc, "field", "") or ""
            raise config_error(f"{where}[{i}].{field.removeprefix('Shadow.')}" if field else f"{where}[{i}]",
                               str(exc).split(": ", 1)[-1]) from None
    seen: set[tuple[str, str]] = set()
    for i, s in enumerate(out):
        if (s.type, s.provider) in seen:
            raise config_error(f"{where}[{i}]", f"a second shadow for type {s.type!r} and provider {s.provider!r}")
        seen.add((s.type, s.provider))
    return tuple(out)


# -- the comparison -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderFigures:
    """One provider's figures over a window. Rates are shares (0..1), None when there is nothing to
    divide by; latencies are of accepted attempts, in milliseconds."""

    provider: str
    attempts: int
    accepted: int
    acceptance_rate: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    completed: int
    """Notifications this provider finished (accepted), the base of the receipt rates."""
    delivered: int
    failed: int
    bounced: int
    delivered_rate: float | None
    failed_rate: float | None
    bounced_rate: float | None
    cost: float


def _since_ms(since: datetime | timedelta | float | int | None, now: float) -> int:
    if since is None:
        return 0
    if isinstance(since, timedelta):
        return int((now - since.total_seconds()) * 1000)
    if isinstance(since, datetime):
        if since.tzinfo is None:
            raise config_error("since", "a datetime must be timezone-aware")
        return int(since.astimezone(timezone.utc).timestamp() * 1000)
    if isinstance(since, bool) or not isinstance(since, (int, float)) or not since >= 0:
        raise config_error("since", "must be an aware datetime, a timedelta back from now, or epoch seconds")
    return int(since * 1000)


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (a value that occurred), None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def compare_providers(data_dir: str | Path, providers: Sequence[str], *, since: Any = None,
                      type: str | None = None, now: float | None = None) -> dict[str, ProviderFigures]:
    """Per provider, side by side: attempts, acceptance rate, latency p50/p99 of accepted attempts,
    final receipts (delivered, failed, bounced: shares of the notifications it completed) and cost.

    Read from the store's committed events and notifications (``<data_dir>/herald.db``, read-only).
    ``since``: notifications taken in at or after this time (an aware datetime, a timedelta back
    from ``now``, or epoch seconds); their ids carry the time of intake, so the window is a range
    of the primary keys of both tables, not a scan. ``type`` narrows to one notification type."""
    if isinstance(providers, str) or not providers or not all(isinstance(p, str) and p for p in providers):
        raise config_error("providers", "must be a non-empty list of provider names")
    names = list(dict.fromkeys(providers))
    if type is not None and (not isinstance(type, str) or not type):
        raise config_error("type", "must be a notification type or None")
    if now is None:
        now = datetime.now(timezone.utc).timestamp()
    first_id = max(0, _since_ms(since, now)) << 16  # ids are (intake ms << 16) + a counter
    db = Path(data_dir) / "herald.db"
    if not db.is_file():
        raise FileNotFoundError(f"compare_providers: no herald store at {str(db)!r}")
    marks = ",".join("?" * len(names))
    by_type = "" if type is None else " AND n.type = ?"
    type_args: list[Any] = [] if type is None else [type]
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        con.execute("BEGIN")  # one snapshot for both queries
        latencies: dict[str, list[float]] = {p: [] for p in names}
        attempts = dict.fromkeys(names, 0)
        # Attempts with an answer (or none): accepted and attempt_failed carry the provider.
        for provider, kind, latency_us in con.execute(
                "SELECT e.provider, e.kind, e.latency_us FROM all_events e"
                + (" JOIN notifications n ON n.id = e.nid" if type is not None else "")
                + f" WHERE e.nid >= ? AND e.kind IN ('accepted','attempt_failed') AND e.provider IN ({marks})"
                + by_type, [first_id, *names, *type_args]):
            attempts[provider] += 1
            if kind == "accepted":
                latencies[provider].append(latency_us / 1000)
        finals: dict[str, dict[str, Any]] = {p: {"completed": 0, "cost": 0.0} for p in names}
        # The latest receipt of each notification a provider completed (state 4: completed), and
        # what it was charged (every accepted attempt's price from the provider's configuration).
        for provider, receipt, count, cost in con.execute(
                "SELECT n.provider, n.receipt, COUNT(*), SUM(n.cost) FROM notifications n"
                f" WHERE n.id >= ? AND n.state = 4 AND n.provider IN ({marks})" + by_type
                + " GROUP BY n.provider, n.receipt", [first_id, *names, *type_args]):
            f = finals[provider]
            f["completed"] += count
            f["cost"] += cost or 0.0
            key = "delivered" if receipt == "opened" else receipt  # opened implies delivered
            if key is not None:
                f[key] = f.get(key, 0) + count
        con.execute("COMMIT")
    finally:
        con.close()
    out: dict[str, ProviderFigures] = {}
    for p in names:
        lat = sorted(latencies[p])
        f = finals[p]
        done = f["completed"]
        out[p] = ProviderFigures(
            provider=p, attempts=attempts[p], accepted=len(lat), acceptance_rate=_rate(len(lat), attempts[p]),
            latency_p50_ms=_percentile(lat, 50), latency_p99_ms=_percentile(lat, 99), completed=done,
            delivered=f.get("delivered", 0), failed=f.get("failed", 0), bounced=f.get("bounced", 0),
            delivered_rate=_rate(f.get("delivered", 0), done), failed_rate=_rate(f.get("failed", 0), done),
            bounced_rate=_rate(f.get("bounced", 0), done), cost=round(f["cost"], 10))
    return out


def format_comparison(figures: Mapping[str, ProviderFigures]) -> str:
    """The comparison as a text table, one column per provider."""
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.1f}%"

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} ms"

    rows = [
        ("attempts", lambda f: str(f.attempts)),
        ("accepted", lambda f: f"{f.accepted} ({pct(f.acceptance_rate)})"),
        ("latency p50", lambda f: ms(f.latency_p50_ms)),
        ("latency p99", lambda f: ms(f.latency_p99_ms)),
        ("completed", lambda f: str(f.completed)),
        ("delivered", lambda f: pct(f.delivered_rate)),
        ("failed", lambda f: pct(f.failed_rate)),
        ("bounced", lambda f: pct(f.bounced_rate)),
        ("cost", lambda f: f"{f.cost:.4f}"),
    ]
    cols = list(figures.values())
    table = [["", *(f.provider for f in cols)]] + [[label, *(fn(f) for f in cols)] for label, fn in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in table)

