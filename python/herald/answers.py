"""What the committed store answers, as typed records: :class:`Status` (where one notification
stands), :class:`Event` (one entry of its trace) and :class:`Suppression`, and
:class:`StoreQuestions`, the questions both an engine and a read-only store answer with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from herald import _core
from herald.kinds import FINAL_STATES, EventKind, Priority, ReceiptState, State, SuppressionReason

__all__ = ["Event", "Status", "StoreQuestions", "Suppression"]


@dataclass(frozen=True, slots=True)
class Status:
    """Where one notification stands. Times are epoch seconds."""

    id: int
    state: State
    tenant: str
    type: str
    recipient_id: str
    priority: Priority
    attempts: int
    provider: str | None
    provider_message_id: str | None
    last_error: str | None
    in_doubt: bool
    idempotency_key: str | None
    ordering_key: str | None
    created_at: float | None
    updated_at: float | None
    send_at: float | None
    expires_at: float | None
    next_attempt_at: float | None
    channel: str | None = None
    address: str | None = None
    receipt: ReceiptState | None = None
    """Latest delivery receipt: delivered, failed, bounced, opened or unconfirmed (None = none yet)."""
    receipt_at: float | None = None
    cost: float = 0.0

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True, slots=True)
class Suppression:
    """An address not to be used again on a channel: ``unusable`` (hard bounce, invalid number,
    unregistered token) or ``opted_out`` (STOP, unsubscribe)."""

    channel: str
    address: str
    reason: SuppressionReason
    detail: str
    provider: str
    notification_id: int
    at: float | None


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a notification's trace."""

    id: int
    event: EventKind
    at: float
    attempt: int
    provider: str | None
    latency_ms: float | None
    http_status: int | None
    detail: str | None
    step: int | None = None
    """The plan step it belongs to, in a plan with many steps."""

    def __str__(self) -> str:
        stamp = datetime.fromtimestamp(self.at).isoformat(timespec="milliseconds")
        parts = [stamp, f"{self.event:<16}"]
        if self.step is not None:
            parts.append(f"step={self.step}")
        if self.attempt:
            parts.append(f"attempt={self.attempt}")
        if self.provider:
            parts.append(f"provider={self.provider}")
        if self.http_status is not None:
            parts.append(f"http={self.http_status}")
        if self.latency_ms is not None:
            parts.append(f"latency={self.latency_ms:.1f}ms")
        if self.detail:
            parts.append(f"- {self.detail}")
        return " ".join(parts)


class StoreQuestions:
    """The questions both an engine and a read-only store answer from the committed store, over a
    core object (``_core``) that returns plain dicts."""

    _core: _core.Engine | _core.StoreReader  # typed, so that a type checker holds the rows to the stub

    def status(self, id: int) -> Status | None:
        """The notification's current state, or None for an unknown id."""
        raw = self._core.status(id)
        return None if raw is None else Status(**raw)

    def trace(self, id: int) -> list[Event]:
        """Every recorded decision about one notification, oldest first (raises NotFound)."""
        return [Event(**e) for e in self._core.trace(id)]

    def dead_letters(self, limit: int = 1000) -> list[Status]:
        return [Status(**s) for s in self._core.dead_letters(limit)]

    def suppressions(self, limit: int = 10_000) -> list[Suppression]:
        """Addresses herald will not send to again, oldest first."""
        return [Suppression(**s) for s in self._core.suppressions(limit)]
