"""Latency figures from the delivery log: enqueue-to-accepted per priority."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["accepted_latencies", "percentile", "read_log"]


def read_log(log_dir: str | Path) -> Iterable[dict]:
    """Every event in the JSON Lines segments under ``log_dir``, in log order."""
    for path in sorted(Path(log_dir).glob("events-*.jsonl")):
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def accepted_latencies(log_dir: str | Path, ids: set[int] | None = None) -> dict[str, list[float]]:
    """Milliseconds from "received" to "accepted", per priority, for ``ids`` (all when None)."""
    received: dict[int, tuple[int, str]] = {}
    out: dict[str, list[float]] = {}
    for e in read_log(log_dir):
        nid = int(e["id"])  # a string in the log (ids exceed 2**53)
        if ids is not None and nid not in ids:
            continue
        if e["event"] == "received":
            received[nid] = (e["ts_us"], e["priority"])
        elif e["event"] == "accepted" and nid in received:
            start, priority = received[nid]
            out.setdefault(priority, []).append((e["ts_us"] - start) / 1000.0)
    return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[rank]
