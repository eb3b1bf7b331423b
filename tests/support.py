"""Helpers shared by the tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import herald
from herald import Plan, RuleSet


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
