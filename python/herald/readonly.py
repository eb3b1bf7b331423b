"""Reading a data folder without an engine: what the CLI's status, trace, dead-letters and
suppressions use, and what a script can use while an engine (or ``herald serve``) owns the folder.

A reader takes no lock, starts no threads, never sends and needs no provider secrets: SQLite's WAL
lets it read committed state while the engine writes.
"""

from __future__ import annotations

from pathlib import Path

from herald import _core
from herald.engine import StoreQuestions, _data_dir

__all__ = ["ReadOnlyStore", "open_readonly"]


class ReadOnlyStore(StoreQuestions):
    """Committed state of one data folder, read-only: status, trace, dead_letters and suppressions
    as :class:`Engine` answers them. Use :func:`open_readonly` to get one."""

    _core: _core.StoreReader

    def __init__(self, data_dir: str | Path = "herald-data") -> None:
        self._core = _core.StoreReader(_data_dir(data_dir))

    def __enter__(self) -> ReadOnlyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._core.close()


def open_readonly(data_dir: str | Path = "herald-data") -> ReadOnlyStore:
    """Opens ``data_dir`` for reading; usable while an engine runs on it. Raises StoreError when
    the folder holds no herald data."""
    return ReadOnlyStore(data_dir)
