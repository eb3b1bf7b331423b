"""The words the engine uses, as ``Literal`` types: what an event, a state, a receipt or an error
class can be. The C++ core writes these strings; ``tests/test_kinds.py`` checks that each type
here holds exactly the words the core uses.

Each type has a ``frozenset`` of its values beside it, for code that checks a word at run time::

    from herald.kinds import EVENT_KINDS, EventKind

    def is_receipt(kind: EventKind) -> bool: ...
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, get_args

__all__ = [
    "DURABILITIES",
    "ERROR_CLASSES",
    "EVENT_KINDS",
    "FINAL_STATES",
    "PRIORITIES",
    "RECEIPT_STATES",
    "STATES",
    "SUPPRESSION_REASONS",
    "Durability",
    "ErrorClass",
    "EventKind",
    "FinalState",
    "Priority",
    "ReceiptState",
    "State",
    "SuppressionReason",
]

EventKind: TypeAlias = Literal[
    # intake (received and queued are in the delivery log only, not in a trace), and a dead letter
    # put back in the queue
    "received", "queued", "deduplicated", "retried",
    # delivery; in_doubt, lookup, reconciled: an attempt whose outcome a crash lost, the status
    # query about it, what it settled
    "routed", "sending", "accepted", "attempt_failed", "retry_scheduled", "failed_over", "in_doubt", "lookup",
    "reconciled",
    # final (every one but completed carries an error class)
    "completed", "expired", "dead_lettered", "cancelled", "suppressed", "opted_out",
    # receipts: progress, the delivery receipts, and refused ones (about the engine: id 0)
    "receipt", "delivered", "delivery_failed", "bounced", "deferred", "opened", "receipt_rejected",
    # the store (id 0)
    "store_degraded", "store_recovered",
    # plans with many steps (each carries its step), the application's read, and the rule's own
    # decisions: Plan.skip ends it skipped, Plan.defer postpones it
    "step_started", "step_succeeded", "step_failed", "step_cancelled", "acknowledged", "skipped", "postponed",
    # alert rules (id 0; docs/alerts.md)
    "alert_firing", "alert_resolved",
    # a provider's circuit breaker (id 0, the provider named)
    "circuit_opened", "circuit_half_open", "circuit_closed",
]
"""What happened, in a trace (:attr:`herald.Event.event`) or the delivery log's ``event`` field
(docs/delivery-log.md). In the order of the core's ``enum class EventKind``."""

State: TypeAlias = Literal[
    "queued", "routed", "sending", "retry_scheduled",
    "completed", "expired", "dead_lettered", "cancelled", "suppressed", "skipped",
]
"""Where a notification stands (:attr:`herald.Status.state`, :attr:`herald.Receipt.state`)."""

FinalState: TypeAlias = Literal["completed", "expired", "dead_lettered", "cancelled", "suppressed", "skipped"]
"""The states a notification stays in (:attr:`herald.Status.final`)."""

Priority: TypeAlias = Literal["critical", "high", "normal", "bulk"]
"""Scheduling lanes, most urgent first."""

ReceiptState: TypeAlias = Literal["delivered", "failed", "bounced", "opened", "unconfirmed"]
"""The latest delivery receipt of a notification (:attr:`herald.Status.receipt`; None before
the first). ``unconfirmed``: the provider's status API was asked and never gave a final answer."""

SuppressionReason: TypeAlias = Literal["unusable", "opted_out"]
"""Why an address is suppressed (:attr:`herald.Suppression.reason`): ``unusable`` (hard bounce,
invalid number, unregistered token) or ``opted_out`` (STOP, unsubscribe)."""

ErrorClass: TypeAlias = Literal[
    "transport", "timeout", "rate_limited", "provider_error", "recipient_invalid", "opted_out",
    "suppressed", "template_error", "expired", "cancelled", "no_provider", "routing_error",
]
"""Why an attempt or a notification did not succeed (the delivery log's ``error_class``)."""

Durability: TypeAlias = Literal["process", "fsync"]
"""When ``send()`` returns: once the store has the notification (``process``: survives a crash of
the process) or once it is on disk (``fsync``: survives a power cut)."""

EVENT_KINDS: Final[frozenset[EventKind]] = frozenset(get_args(EventKind))
STATES: Final[frozenset[State]] = frozenset(get_args(State))
FINAL_STATES: Final[frozenset[FinalState]] = frozenset(get_args(FinalState))
PRIORITIES: Final[frozenset[Priority]] = frozenset(get_args(Priority))
RECEIPT_STATES: Final[frozenset[ReceiptState]] = frozenset(get_args(ReceiptState))
SUPPRESSION_REASONS: Final[frozenset[SuppressionReason]] = frozenset(get_args(SuppressionReason))
ERROR_CLASSES: Final[frozenset[ErrorClass]] = frozenset(get_args(ErrorClass))
DURABILITIES: Final[frozenset[Durability]] = frozenset(get_args(Durability))
