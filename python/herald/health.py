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
from types import MethodType
from typing import Any

from herald import _core

__all__ = ["ProviderHealth", "ProviderHealthView", "takes_providers"]

ProviderHealth = _core.ProviderHealth
ProviderHealthView = _core.ProviderHealthView

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_arity: dict[Any, bool] = {}


def takes_providers(fn: Any) -> bool:
    """Whether rule ``fn`` takes the providers' health: its second positional parameter is named
    ``providers`` or has no default. One with a default under another name is left alone, so the
    ``lambda n, b=batch: ...`` idiom for binding a loop variable keeps its value."""
    code = getattr(fn, "__code__", None)
    if code is not None:  # a function or a bound method: the fast path, read every call
        second = 2 if isinstance(fn, MethodType) else 1  # inspect.ismethod without its call
        if code.co_argcount <= second:
            return False
        if code.co_varnames[second] == "providers":
            return True
        return second < code.co_argcount - len(getattr(fn, "__defaults__", None) or ())
    try:
        return _arity[fn]
    except KeyError:
        pass
    except TypeError:  # unhashable callable: look each time
        return _wants_providers(fn)
    _arity[fn] = _wants_providers(fn)
    return _arity[fn]


def _wants_providers(fn: Any) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values() if p.kind in _POSITIONAL]
    except (TypeError, ValueError):
        return False
    if len(params) < 2:
        return False
    return params[1].name == "providers" or params[1].default is inspect.Parameter.empty
