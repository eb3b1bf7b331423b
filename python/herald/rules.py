"""Routing rules: Python functions, registered per notification type, that return a Plan.

A rules directory (``routing_rules/`` by default) holds plain modules; each registers its rules
with the :func:`rule` decorator. The engine calls :meth:`RuleSet.route_batch` from its loop thread
with many notifications at once: one GIL acquisition per batch.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from herald import _core
from herald.plan import Plan

__all__ = ["Notification", "RuleFn", "RuleSet", "rule"]

Notification = _core.Notification
RuleFn = Callable[[Any], Plan]

def _text_of(exc: BaseException) -> str:
    """str(exc), or a stand-in when its __str__ fails too: the reason must not break the batch."""
    try:
        return str(exc)
    except Exception:
        return "<unprintable exception>"


def _name_of(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else type(fn).__name__


def rule(*types: str) -> Callable[[RuleFn], RuleFn]:
    """Registers the decorated function as the rule for one or more notification types."""
    if not types or not all(isinstance(t, str) and t for t in types):
        raise ValueError("rule(): give at least one notification type name")

    def register(fn: RuleFn) -> RuleFn:
        fn.__herald_types__ = tuple(types)  # type: ignore[attr-defined]
        return fn

    return register


class RuleSet:
    """The rules an engine uses, by notification type."""

    def __init__(self, rules: dict[str, RuleFn] | None = None) -> None:
        self._rules: dict[str, RuleFn] = dict(rules or {})

    @classmethod
    def load(cls, source: str | Path | ModuleType | Iterable[ModuleType] | RuleSet | None) -> RuleSet:
        """Rules from a directory of modules, a module, several modules, or an existing RuleSet."""
        if isinstance(source, RuleSet):
            return source
        rules = cls()
        if source is None:
            return rules
        if isinstance(source, (str, Path)):
            directory = Path(source)
            if not directory.is_dir():
                raise FileNotFoundError(f"rules: directory {str(directory)!r} does not exist")
            for path in sorted(directory.glob("*.py")):
                if path.name.startswith("_"):
                    continue
                rules._import_file(path)
            return rules
        modules = [source] if isinstance(source, ModuleType) else list(source)
        for module in modules:
            rules._add_module(module)
        return rules

    def _add_module(self, module: ModuleType) -> None:
        for value in list(vars(module).values()):
            for t in getattr(value, "__herald_types__", ()):
                self.add(t, value)

    def _import_file(self, path: Path) -> None:
        name = f"herald_rules_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"rules: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        self._add_module(module)

    def add(self, type_: str, fn: RuleFn) -> None:
        if type_ in self._rules and self._rules[type_] is not fn:
            raise ValueError(f"rules: two rules for type {type_!r}")
        self._rules[type_] = fn

    def types(self) -> list[str]:
        return sorted(self._rules)

    def __contains__(self, type_: object) -> bool:
        return type_ in self._rules

    def route(self, n: Any) -> Plan | str:
        """The plan for one notification, or the text of why there is none."""
        fn = self._rules.get(n.type)
        if fn is None:
            return f"no rule for type {n.type!r}"
        try:
            plan = fn(n)
        except Exception as exc:  # a broken rule dead-letters its notification; the engine goes on
            return f"rule {_name_of(fn)} raised {type(exc).__name__}: {_text_of(exc)}"
        if not isinstance(plan, Plan):
            return f"rule {_name_of(fn)} returned {type(plan).__name__}, not a Plan"
        return plan

    def route_batch(self, batch: list[Any]) -> list[Plan | str]:
        """Called by the core with a batch of notifications; one answer per notification."""
        route = self.route
        return [route(n) for n in batch]
