"""herald: a self-hosted notification engine with a C++ core.

Hand it notifications with :class:`Engine`; write rules that return a :class:`Plan`.
"""

from herald.alerts import Alert, dead_letters, failure_rate, latency_quantile, spend
from herald.clock import ManualClock
from herald.engine import Engine, Event, Receipt, Status, Suppression
from herald.kinds import Durability, ErrorClass, EventKind, FinalState, Priority, ReceiptState, State, SuppressionReason
from herald.errors import (
    ConfigError,
    EngineClosed,
    HeraldError,
    IdempotencyConflict,
    InvalidState,
    NotFound,
    StoreError,
    ValidationError,
)
from herald.health import ProviderHealth
from herald.plan import Plan, Step
from herald.readonly import ReadOnlyStore, open_readonly
from herald.retention import Retention
from herald.rules import Notification, RuleSet, rule
from herald.sandbox import Sandbox
from herald.shadow import ProviderFigures, Shadow

__all__ = [
    "Alert",
    "AsyncClient",
    "Client",
    "ConfigError",
    "Durability",
    "Engine",
    "EngineClosed",
    "ErrorClass",
    "Event",
    "EventKind",
    "FinalState",
    "HeraldError",
    "IdempotencyConflict",
    "InvalidState",
    "ManualClock",
    "NotFound",
    "Notification",
    "Plan",
    "Step",
    "Priority",
    "ProviderFigures",
    "ProviderHealth",
    "ReadOnlyStore",
    "Receipt",
    "ReceiptState",
    "Retention",
    "RuleSet",
    "Sandbox",
    "Shadow",
    "State",
    "Status",
    "Suppression",
    "SuppressionReason",
    "StoreError",
    "ValidationError",
    "dead_letters",
    "failure_rate",
    "latency_quantile",
    "open_readonly",
    "rule",
    "spend",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The HTTP client loads httpx only when it is asked for: an engine alone does not need it.
    if name in ("Client", "AsyncClient"):
        from herald import client

        return getattr(client, name)
    raise AttributeError(f"module 'herald' has no attribute {name!r}")
