"""What the store keeps: final notifications, their events and the delivery log's segments.

``Engine(retention=Retention(...))`` sets the limits the engine's pruner keeps (a pass every
``interval`` seconds, off the send path); :func:`prune` runs one pass over a data directory from
the command line (``herald prune``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from herald import _core
from herald._checks import checked_int, seconds_to_ms

__all__ = ["Retention", "prune"]

_DAY = 86_400
_MAX_AGE_S = 100_000 * _DAY
_MAX_BYTES = 2**63 - 1


class RetentionOptions(TypedDict):
    """Retention's keyword options of ``herald._core.Engine`` (a type checker holds them to _core.pyi)."""

    retention_max_age_ms: int
    retention_max_db_bytes: int
    retention_log_max_age_ms: int
    retention_log_max_bytes: int
    retention_interval_ms: int


@dataclass(frozen=True, slots=True)
class Retention:
    """Limits on what is kept; 0 switches a limit off.

    ``max_age`` (seconds, 7 days): final notifications (completed, expired, dead-lettered,
    cancelled, suppressed) created and last changed longer ago are deleted with their events. It
    is also the idempotency window: a key repeated after its notification is gone starts anew.
    ``max_db_bytes`` (2 GiB): then the oldest final notifications until the database's live pages
    fit (pruned to 90%). ``log_max_age`` (7 days) and ``log_max_bytes`` (1 GiB): delivery log
    segments, oldest first; the segment being written stays. ``interval`` (60 s): how often the
    engine prunes (0 = only when :meth:`Engine.prune` is called). Unfinished notifications are
    never pruned.
    """

    max_age: float = 7 * _DAY
    max_db_bytes: int = 2 << 30
    log_max_age: float = 7 * _DAY
    log_max_bytes: int = 1 << 30
    interval: float = 60.0

    def core_options(self) -> RetentionOptions:
        """The engine's options in milliseconds and bytes, each checked by name."""
        return {
            "retention_max_age_ms": seconds_to_ms("retention.max_age", self.max_age, 0, _MAX_AGE_S),
            "retention_max_db_bytes": checked_int("retention.max_db_bytes", self.max_db_bytes, 0, _MAX_BYTES),
            "retention_log_max_age_ms": seconds_to_ms("retention.log_max_age", self.log_max_age, 0, _MAX_AGE_S),
            "retention_log_max_bytes": checked_int("retention.log_max_bytes", self.log_max_bytes, 0, _MAX_BYTES),
            "retention_interval_ms": seconds_to_ms("retention.interval", self.interval, 0, 365 * _DAY),
        }


def prune(data_dir: str | Path, retention: Retention | None = None) -> dict[str, Any]:
    """One pass over ``data_dir`` without an engine: what ``retention`` no longer keeps is deleted.

    Run it where no engine is using the folder (an engine prunes by itself, or call
    :meth:`Engine.prune`). Returns counts: notifications, events, segments, segment_bytes, and what
    remains: db_bytes (live pages), log_bytes.
    """
    options = (retention or Retention()).core_options()
    return dict(
        _core.prune_data_dir(
            str(data_dir),
            max_age_ms=options["retention_max_age_ms"],
            max_db_bytes=options["retention_max_db_bytes"],
            log_max_age_ms=options["retention_log_max_age_ms"],
            log_max_bytes=options["retention_log_max_bytes"],
        )
    )
