"""Routing rules: Python functions, registered per notification type, that return a Plan.

Rules come from one of:

* a rules directory (``routing_rules/`` by default) of plain modules, each marking its rules with
  the :func:`rule` decorator;
* a module, or a module's name: ``Engine(rules=__name__)`` takes the ``@rule`` functions defined
  in the calling module (define them before the engine);
* with neither (``rules=None`` and no ``./routing_rules``): every ``@rule`` function registered
  so far in the process, so an inline ``@rule`` in the application's own module just works.

Module-level :class:`herald.Alert` objects (or lists of them) in a rules directory's modules or a
given module are the engine's alert rules too (docs/alerts.md).

``@rule("*")`` is the catch-all: it routes every type that has no rule of its own. The engine calls :meth:`RuleSet.route_batch` from its loop thread
with many notifications at once: one GIL acquisition per batch.

A RuleSet loaded from a directory remembers the directory and its files' modification times and
sizes (:attr:`RuleSet.directory`, :attr:`RuleSet.files`), so that the engine can load it again when
a file changes (:mod:`herald.live_rules`). Each load imports every file anew, from its source.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from herald import _core
from herald.alerts import Alert, collect
from herald.health import takes_providers
from herald.plan import Plan
from herald.shadow import Shadow, shadow_providers, takes

__all__ = ["CATCH_ALL", "Notification", "RuleFn", "RuleSet", "rule"]

Notification = _core.Notification
RuleFn = Callable[..., Plan]  # (n) or (n, providers): herald/health.py

def _text_of(exc: BaseException) -> str:
    """str(exc), or a stand-in when its __str__ fails too: the reason must not break the batch."""
    try:
        return str(exc)
    except Exception:
        return "<unprintable exception>"


def _name_of(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else type(fn).__name__


def _where(fn: Any) -> tuple[str, int] | None:
    """The file and line a rule function is defined at, when it has code."""
    code = getattr(fn, "__code__", None)
    return None if code is None else (code.co_filename, code.co_firstlineno)


def _at(where: tuple[str, int] | None) -> str:
    return "" if where is None else f" ({where[0]}:{where[1]})"


class RuleConflict(ValueError):
    """Two rules for one type; ``file`` and ``line`` say where the second one is."""

    def __init__(self, message: str, file: str | None, line: int | None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


FileStamp = tuple[int, int, int]  # st_mtime_ns, st_size, st_ino


def scan_directory(directory: str | Path) -> dict[str, FileStamp]:
    """The rule files of a directory (``*.py`` not starting with ``_``) with their stamps: what a
    reload check compares. One scandir and one stat per file."""
    out: dict[str, FileStamp] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name.endswith(".py") and not name.startswith("_"):
                try:
                    st = entry.stat()
                except FileNotFoundError:  # deleted between the listing and the stat
                    continue
                out[name] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return out


CATCH_ALL = "*"

# Every @rule function, by (module, qualname) so that a re-imported module replaces its own rules:
# what Engine(rules=None) uses without a rules directory.
_registered: dict[tuple[str, str], RuleFn] = {}
# Modules imported from a rules directory: their rules belong to that directory's RuleSet only.
_DIRECTORY_MODULE_PREFIX = "herald_rules_"


def rule(*types: str) -> Callable[[RuleFn], RuleFn]:
    """Marks the decorated function as the rule for one or more notification types (``"*"``: every
    type without a rule of its own) and registers it for ``Engine(rules=None)``."""
    if not types or not all(isinstance(t, str) and t for t in types):
        raise ValueError("rule(): give at least one notification type name")

    def register(fn: RuleFn) -> RuleFn:
        fn.__herald_types__ = tuple(types)  # type: ignore[attr-defined]
        _registered[(str(getattr(fn, "__module__", "")), _name_of(fn))] = fn
        return fn

    return register


class RuleSet:
    """The rules an engine uses, by notification type."""

    def __init__(self, rules: dict[str, RuleFn] | None = None) -> None:
        self._rules: dict[str, RuleFn] = dict(rules or {})
        # Each rule with whether it takes the providers' health, found once when it is added:
        # route() runs once per notification, on the engine's loop.
        self._calls: dict[str, tuple[RuleFn, bool]] = {t: (fn, takes_providers(fn)) for t, fn in self._rules.items()}
        self.directory: Path | None = None
        """The rules directory this set was loaded from (None: modules or a dict)."""
        self.files: dict[str, FileStamp] = {}
        """Its files as they were when loading began (:func:`scan_directory`)."""
        self.alerts: list[Alert] = []  # module-level Alert objects of the rules' modules

    @classmethod
    def registered(cls) -> RuleSet:
        """Every ``@rule`` function defined so far in this process, outside rules directories."""
        rules = cls()
        for (module, _), fn in _registered.items():
            if module.startswith(_DIRECTORY_MODULE_PREFIX):
                continue
            for t in getattr(fn, "__herald_types__", ()):
                rules.add(t, fn)
        return rules

    @classmethod
    def load(cls, source: str | Path | ModuleType | Iterable[ModuleType] | RuleSet | None) -> RuleSet:
        """Rules from a directory of modules, a module or a module's name (``__name__``), several
        modules, or an existing RuleSet. None gives an empty set."""
        if isinstance(source, RuleSet):
            return source
        rules = cls()
        if source is None:
            return rules
        if isinstance(source, str) and not Path(source).is_dir() and source in sys.modules:
            source = sys.modules[source]
        if isinstance(source, (str, Path)):
            directory = Path(source)
            if not directory.is_dir():
                raise FileNotFoundError(
                    f"rules: {str(directory)!r} is neither a directory nor an imported module's name"
                )
            rules.directory = directory
            # Stamped before importing: a file changed during the load is seen by the next check.
            rules.files = scan_directory(directory)
            for name in sorted(rules.files):
                rules._import_file(directory / name)
            return rules
        modules = [source] if isinstance(source, ModuleType) else list(source)
        for module in modules:
            rules._add_module(module)
        return rules

    def _add_module(self, module: ModuleType) -> None:
        for value in list(vars(module).values()):
            for t in getattr(value, "__herald_types__", ()):
                self.add(t, value)
        for alert in collect(vars(module).values()):
            if not any(alert is a for a in self.alerts):
                self.alerts.append(alert)

    def _import_file(self, path: Path) -> None:
        name = f"{_DIRECTORY_MODULE_PREFIX}{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"rules: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        # From the source, never a cached .pyc: its check (mtime in whole seconds and size) misses
        # an edit of the same length within the second, and a reload must see every edit.
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)
        self._add_module(module)

    def add(self, type_: str, fn: RuleFn) -> None:
        if type_ in self._rules and self._rules[type_] is not fn:
            first, second = _where(self._rules[type_]), _where(fn)
            raise RuleConflict(
                f"rules: two rules for type {type_!r}: {_name_of(self._rules[type_])}{_at(first)}"
                f" and {_name_of(fn)}{_at(second)}",
                None if second is None else second[0], None if second is None else second[1])
        self._rules[type_] = fn
        self._calls[type_] = (fn, takes_providers(fn))

    def types(self) -> list[str]:
        return sorted(self._rules)

    def __contains__(self, type_: object) -> bool:
        return type_ in self._rules

    def __len__(self) -> int:
        return len(self._rules)

    def routes(self, type_: str) -> bool:
        """Whether a notification of this type has a rule (its own or the catch-all)."""
        return type_ in self._rules or CATCH_ALL in self._rules

    def route(self, n: Any, providers: Any = None) -> Plan | str:
        """The plan for one notification, or the text of why there is none. A rule with a second
        parameter gets ``providers``: the providers' health by name (herald/health.py)."""
        call = self._calls.get(n.type) or self._calls.get(CATCH_ALL)
        if call is None:
            return f"no rule for type {n.type!r}"
        fn, with_providers = call
        try:
            plan = fn(n, providers) if with_providers else fn(n)
        except Exception as exc:  # a broken rule dead-letters its notification; the engine goes on
            return f"rule {_name_of(fn)} raised {type(exc).__name__}: {_text_of(exc)}"
        if not isinstance(plan, Plan):
            return f"rule {_name_of(fn)} returned {type(plan).__name__}, not a Plan"
        return plan

    def route_batch(self, batch: list[Any], providers: Any = None) -> list[Plan | str]:
        """Called by the core with a batch of notifications; one answer per notification."""
        route = self.route
        return [route(n, providers) for n in batch]

    def router(self, providers: Iterable[str],
               shadows: Sequence[Shadow] = ()) -> Callable[[list[Any]], list[Plan | str]]:
        """``route_batch`` for an engine with these provider names: a plan naming another provider
        is refused with the rule's name in the reason, and logged once per (rule, provider).
        ``shadows`` then send their share of a type's plans to a candidate provider
        (:mod:`herald.shadow`)."""
        known = frozenset(providers)
        warned: set[tuple[str, str]] = set()
        route = self.route
        by_type: dict[str, list[Shadow]] = {}
        for s in shadows:
            by_type.setdefault(s.type, []).append(s)
        every_type = by_type.pop(CATCH_ALL, [])

        # Wire forms already found to name only configured providers, by identity (plain plans share
        # theirs, herald/plan.py); each entry keeps its wire alive so an id is never reused here.
        known_wires: dict[int, tuple[Any, ...]] = {}

        def check(n: Any, providers: Any) -> Plan | str:
            plan = route(n, providers)
            if isinstance(plan, str):
                return plan
            whole = plan._wire
            if known_wires.get(id(whole)) is whole:
                return plan
            wire = whole[1] if whole[0] == "plan" else ()  # the steps' (channel, providers, ...)
            many = len(wire) > 1
            for k, step in enumerate(wire):
                for name in step[1]:
                    if name in known:
                        continue
                    fn = self._rules.get(n.type) or self._rules.get(CATCH_ALL)
                    rule_name = _name_of(fn)
                    if (rule_name, name) not in warned:
                        warned.add((rule_name, name))
                        logging.getLogger("herald").warning(
                            "rule %s names provider %r, which is not configured (configured: %s);"
                            " its notifications are dead-lettered",
                            rule_name, name, ", ".join(sorted(known)) or "none")
                    where = f"plan.steps[{k}].providers" if many else "plan.providers"
                    return f"rule {rule_name}: {where}: unknown provider {name!r}"
            if len(known_wires) < 4096:
                known_wires[id(whole)] = whole
            return plan

        def shadowed(n: Any, providers: Any) -> Plan | str:
            plan = check(n, providers)
            if isinstance(plan, str):
                return plan
            for s in by_type.get(n.type, every_type):
                if any(s.provider in st.providers for st in plan.steps) and takes(s, n.id):
                    plan = plan.with_providers(lambda chain: shadow_providers(chain, s.provider, s.candidate))
            return plan

        def route_batch(batch: list[Any], providers: Any = None) -> list[Plan | str]:
            return [check(n, providers) for n in batch]

        def route_batch_shadowed(batch: list[Any], providers: Any = None) -> list[Plan | str]:
            return [shadowed(n, providers) for n in batch]

        route_batch.__herald_health__ = True  # type: ignore[attr-defined]  # the core passes providers
        route_batch_shadowed.__herald_health__ = True  # type: ignore[attr-defined]
        return route_batch_shadowed if by_type or every_type else route_batch
