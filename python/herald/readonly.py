"""Reading a data folder without an engine: what the CLI's status, trace, dead-letters and
suppressions use, and what a script can use while an engine (or ``herald serve``) owns the folder.

A reader takes no lock, starts no threads, never sends and needs no provider secrets: SQLite's WAL
lets it read committed state while the engine writes.
"""

from __future__ import annotations

from pathlib import Path

from herald import _core
from herald.engine import Event, Status, Suppression

__all__ = ["ReadOnlyStore", "open_readonly"]


class ReadOnlyStore:
    """Committed state of one data folder, read-only. Use :func:`open_readonly` to get one."""

    def __init__(self, data_dir: str | Path = "herald-data") -> None:
        self._core = _core.StoreReader(str(data_dir))

    def __enter__(self) -> ReadOnlyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._core.close()

    def status(self, id: int) -> Status | None:
        """The notification's last committed state, or None for an unknown id."""
        raw = self._core.status(id)
        return None if raw is None else Status(**raw)

    def trace(self, id: int) -> list[Event]:
        """Every committed event of one notification, oldest first (raises NotFound)."""
        return [Event(**e) for e in self._core.trace(id)]

    def dead_letters(self, limit: int = 1000) -> list[Status]:
        return [Status(**s) for s in self._core.dead_letters(limit)]

    def suppressions(self, limit: int = 10_000) -> list[Suppression]:
        return [Suppression(**s) for s in self._core.suppressions(limit)]


def open_readonly(data_dir: str | Path = "herald-data") -> ReadOnlyStore:
    """Opens ``data_dir`` for reading; usable while an engine runs on it. Raises StoreError when
    the folder holds no herald data."""
    return ReadOnlyStore(data_dir)
