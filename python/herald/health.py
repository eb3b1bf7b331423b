"""Providers' health as rules read it: each provider's circuit breaker state, recent failure rate,
p99 latency and cost per message.

A rule that takes a second parameter gets the providers' health by name while it routes::

    @rule("otp")
    def otp(n, providers):
        usable = [p for p in ("sms-a", "sms-b") if providers[p].circuit != "open"]
        cheapest = min(usable or ["sms-a", "sms-b"], key=lambda p: providers[p].cost)
        return Plan("sms", [cheapest] + [p for p in ("sms-a", "sms-b") if p != cheapest], "...")

``providers[name]`` is a :class:`ProviderHealth`: ``circuit`` (``"closed"``, ``"open"`` or
``"half_open"``), ``failure_rate`` (failed share of the attempts in the circuit's window, 0..1),
``attempts`` (in that window), ``p99_ms`` (of the latest 256 round trips; None before any),
``cost`` (the provider's ``cost_per_message``) and ``half_open_at`` (epoch seconds while open,
else None). It is the engine loop's own state, read on its thread during the routing call: the
view is readable during that call only. Rules taking only the notification keep working.
:meth:`herald.Engine.provider_health` answers the same view at any time.
"""

from __future__ import annotations

import inspect
from typing import Any

from herald import _core

__all__ = ["ProviderHealth", "ProviderHealthView", "takes_providers"]

ProviderHealth = _core.ProviderHealth
ProviderHealthView = _core.ProviderHealthView

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_arity: dict[Any, bool] = {}


def takes_providers(fn: Any) -> bool:
    """Whether rule ``fn`` takes a second positional parameter (the providers' health)."""
    code = getattr(fn, "__code__", None)
    if code is not None:  # a function or a bound method: the fast path, read every call
        return bool(code.co_argcount - (1 if inspect.ismethod(fn) else 0) >= 2)
    try:
        return _arity[fn]
    except KeyError:
        pass
    except TypeError:  # unhashable callable: look each time
        return _count_positional(fn) >= 2
    _arity[fn] = _count_positional(fn) >= 2
    return _arity[fn]


def _count_positional(fn: Any) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(1 for p in params if p.kind in _POSITIONAL)
