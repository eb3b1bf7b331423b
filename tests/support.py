"""Helpers shared by the tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import herald
from herald import Plan, RuleSet

# The start of the reason herald gives for text with no UTF-8 form (a lone surrogate), by field.
UTF8 = "must be valid UTF-8 text (lone surrogate at index {}"


def default_rules() -> RuleSet:
    return RuleSet(
        {
            "otp": lambda n: Plan("sms", ["primary", "backup"], "Your code is {code}"),
            "news": lambda n: Plan("email", ["primary"], "{headline|News}"),
            "solo": lambda n: Plan("sms", ["primary"], "{text|hello}"),
        }
    )


def events_of(engine: herald.Engine, id: int) -> list[str]:
    return [e.event for e in engine.trace(id)]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str | Callable[[], str] = "condition",
             interval: float = 0.02) -> Any:
    """Waits (bounded) on observable state: returns predicate()'s first truthy value, or fails
    after `timeout` s naming `what` (a callable is asked then, to describe the state it found).
    The sleep is the polling interval only: nothing waits on time passing."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(interval)
