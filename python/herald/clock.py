"""Time under a test's control: ``Engine(clock=ManualClock())`` schedules, backs off, expires and
stamps events by this clock, and its timers fire when the clock is advanced, not when real time
passes. A test moves time forward instead of sleeping."""

from __future__ import annotations

import time

from herald import _core
from herald._checks import config_error

__all__ = ["ManualClock"]


class ManualClock:
    """A clock that moves only when :meth:`advance` is called. Starts at ``start`` (seconds since
    the epoch; default: the current time, so ids and timestamps look ordinary)."""

    def __init__(self, start: float | None = None) -> None:
        if start is None:
            start = time.time()
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 <= start < 253_402_300_800:
            raise config_error("start", f"must be seconds since the epoch, 0..253402300799 (got {start!r})")
        self._core = _core.ManualClock(int(start * 1_000_000))

    def now(self) -> float:
        """The clock's time, in seconds since the epoch."""
        return self._core.now_us() / 1e6

    def advance(self, seconds: float) -> None:
        """Moves time forward by ``seconds`` (>= 0) and wakes the engines that use this clock."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 10 * 365 * 86_400:
            raise config_error("seconds", f"must be a number of seconds, 0..315360000 (got {seconds!r})")
        self._core.advance_us(round(seconds * 1_000_000))

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now():.6f})"
