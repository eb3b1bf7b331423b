"""herald: a self-hosted notification engine with a C++ core.

Hand it notifications with :class:`Engine`; write rules that return a :class:`Plan`.
"""

from herald.clock import ManualClock
from herald.engine import Engine, Event, Receipt, Status, Suppression
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
from herald.plan import Plan
from herald.readonly import ReadOnlyStore, open_readonly
from herald.retention import Retention
from herald.rules import Notification, RuleSet, rule
from herald.sandbox import Sandbox

__all__ = [
    "AsyncClient",
    "Client",
    "ConfigError",
    "Engine",
    "EngineClosed",
    "Event",
    "HeraldError",
    "IdempotencyConflict",
    "InvalidState",
    "ManualClock",
    "NotFound",
    "Notification",
    "Plan",
    "ReadOnlyStore",
    "Receipt",
    "Retention",
    "RuleSet",
    "Sandbox",
    "Status",
    "Suppression",
    "StoreError",
    "ValidationError",
    "open_readonly",
    "rule",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The HTTP client loads httpx only when it is asked for: an engine alone does not need it.
    if name in ("Client", "AsyncClient"):
        from herald import client

        return getattr(client, name)
    raise AttributeError(f"module 'herald' has no attribute {name!r}")
