"""Hot reload: the rules an engine routes by, loaded again when a file of their directory changes.

The check rides on the routing call (the engine's loop thread, once per batch): at most once per
``interval`` seconds of the engine's clock it lists the directory (one scandir, one stat per file)
and compares modification times, sizes and inodes with those of the last load. When they differ,
every file is imported anew into a new :class:`RuleSet`, which replaces the current one in a single
assignment only if every file loaded. A file that fails (a syntax error, an exception at import,
a second rule for a type) leaves the previous rules in place; the problem, with its file and line,
is logged (logger ``herald``) and kept in :attr:`LiveRules.problem` until a load succeeds. The same
broken files are not imported again at every check, only once they change.

Rules from modules (not a directory) are never reloaded: their code is the application's.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herald import rules as rules_module
from herald.rules import RuleConflict, RuleSet, scan_directory

__all__ = ["LiveRules", "RulesProblem"]

log = logging.getLogger("herald")
Router = Callable[[list[Any]], list[Any]]

# Directory modules live in sys.modules and the @rule registry under shared names: one load at a
# time in the process, so that a failed one can put both back as they were.
_import_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class RulesProblem:
    """Why the last load of the rules directory failed."""

    file: str
    line: int | None
    message: str
    at: float
    """When it was found (epoch seconds)."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


def _problem(exc: BaseException, directory: Path, files: list[str]) -> RulesProblem:
    """Where the load failed: the file and line of the error in the rules directory."""
    now = time.time()
    if isinstance(exc, SyntaxError) and exc.filename:
        return RulesProblem(str(exc.filename), exc.lineno, f"{type(exc).__name__}: {exc.msg}", now)
    if isinstance(exc, RuleConflict) and exc.file:
        return RulesProblem(exc.file, exc.line, str(exc), now)
    paths = {str(directory / name) for name in files}
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in paths:  # the innermost frame in a rule file: where the import broke
            return RulesProblem(frame.filename, frame.lineno, f"{type(exc).__name__}: {exc}", now)
    return RulesProblem(str(directory), None, f"{type(exc).__name__}: {exc}", now)


def _directory_modules() -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
    prefix = rules_module._DIRECTORY_MODULE_PREFIX
    return ({k: v for k, v in sys.modules.items() if k.startswith(prefix)},
            {k: v for k, v in rules_module._registered.items() if k[0].startswith(prefix)})


def _restore(modules: dict[str, Any], registered: dict[tuple[str, str], Any]) -> None:
    prefix = rules_module._DIRECTORY_MODULE_PREFIX
    for name in [k for k in sys.modules if k.startswith(prefix) and k not in modules]:
        del sys.modules[name]
    sys.modules.update(modules)
    for key in [k for k in rules_module._registered if k[0].startswith(prefix) and k not in registered]:
        del rules_module._registered[key]
    rules_module._registered.update(registered)


def _forget_deleted(directory: Path, present: dict[str, Any]) -> None:
    """Drops the modules (and their registered rules) of files no longer in the directory."""
    prefix = rules_module._DIRECTORY_MODULE_PREFIX
    gone = []
    for name, module in sys.modules.items():
        file = getattr(module, "__file__", None)
        if name.startswith(prefix) and file and Path(file).parent == directory and Path(file).name not in present:
            gone.append(name)
    for name in gone:
        del sys.modules[name]
        for key in [k for k in rules_module._registered if k[0] == name]:
            del rules_module._registered[key]


class LiveRules:
    """The current rules and their router, swapped whole when the directory's files change."""

    def __init__(self, rules: RuleSet, make_router: Callable[[RuleSet], Router], *,
                 interval: float | None, now: Callable[[], float]) -> None:
        self._make_router = make_router
        self._state: tuple[RuleSet, Router] = (rules, make_router(rules))  # swapped in one assignment
        self.directory = rules.directory
        self._interval = interval if self.directory is not None and interval else None
        self._now = now
        self._next_check = now() + (self._interval or 0)
        self._lock = threading.Lock()
        self._failed_files: dict[str, Any] | None = None
        self.problem: RulesProblem | None = None
        self.reloads = 0
        self.loaded_at = time.time()

    @property
    def rules(self) -> RuleSet:
        return self._state[0]

    def route_batch(self, batch: list[Any], providers: Any = None) -> list[Any]:
        """The engine's router: checks the directory when its interval has passed, then routes.
        ``providers``: the providers' health, for rules that read it (herald/health.py)."""
        if self._interval is not None and self._now() >= self._next_check:
            self.poll()
        route: Callable[..., list[Any]] = self._state[1]
        return route(batch, providers) if getattr(route, "__herald_health__", False) else route(batch)

    route_batch.__herald_health__ = True  # type: ignore[attr-defined]  # the core passes providers

    def poll(self) -> bool:
        """Reloads when the interval has passed and a file changed; True when the rules changed.
        Never waits: while another thread reloads, routing goes on with the current rules."""
        if self._interval is None or self._now() < self._next_check:
            return False
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._next_check = self._now() + self._interval
            assert self.directory is not None
            try:
                files = scan_directory(self.directory)
            except OSError as exc:  # the directory went away: keep routing by what was loaded
                self._fail(RulesProblem(str(self.directory), None, f"{type(exc).__name__}: {exc}", time.time()), None)
                return False
            if files == self.rules.files or files == self._failed_files:
                return False
            return self._load() is None
        finally:
            self._lock.release()

    def reload(self) -> RulesProblem | None:
        """Loads the directory again now, changed or not; None when the new rules are in place."""
        if self.directory is None:
            return None
        with self._lock:
            return self._load()

    def _load(self) -> RulesProblem | None:
        assert self.directory is not None
        with _import_lock:
            saved = _directory_modules()
            # The files as they were before this load: a fix saved during a failing load differs
            # from them and is loaded at the next check.
            files: dict[str, Any] | None = None
            try:
                files = scan_directory(self.directory)
                new = RuleSet.load(self.directory)
            except (Exception, SystemExit) as exc:
                _restore(*saved)
                self._fail(_problem(exc, self.directory, list(files or ())), files)
                return self.problem
            _forget_deleted(self.directory, new.files)
            router = self._make_router(new)
        self._state = (new, router)
        self._failed_files = None
        fixed = self.problem is not None
        self.problem = None
        self.reloads += 1
        self.loaded_at = time.time()
        log.info("rules reloaded from %s%s: %s", self.directory, " (the error is fixed)" if fixed else "",
                 ", ".join(new.types()) or "no rules",
                 extra={"herald": {"directory": str(self.directory), "types": ",".join(new.types())}})
        return None

    def _fail(self, problem: RulesProblem, files: dict[str, Any] | None) -> None:
        self.problem = problem
        self._failed_files = files
        log.error("rules not reloaded, the previous ones stay: %s", problem,
                  extra={"herald": {"directory": str(self.directory), "file": problem.file,
                                    "line": "" if problem.line is None else str(problem.line),
                                    "error": problem.message}})

    def status(self) -> dict[str, Any]:
        """What :meth:`herald.Engine.rules_status` answers."""
        rules = self.rules
        return {
            "directory": None if self.directory is None else str(self.directory),
            "types": rules.types(),
            "files": sorted(rules.files),
            "loaded_at": self.loaded_at,
            "reloads": self.reloads,
            "check_interval": self._interval,
            "error": None if self.problem is None else {
                "file": self.problem.file, "line": self.problem.line, "message": self.problem.message,
                "at": self.problem.at, "text": str(self.problem)},
        }
