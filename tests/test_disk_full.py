"""A full disk under a running engine: intake refuses, accepted notifications are held and status()
stays true, delivery resumes by itself when space returns, and an engine opens on a full disk.

The disk is a real tmpfs mounted by the test (the test machines run as root)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import herald
from herald import Sandbox

from support import default_rules, wait_for


class SmallDisk:
    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)
        assert done.returncode == 0, f"cannot mount a tmpfs (the tests need root): {done.stderr}"

    def fill(self) -> None:
        block = b"x" * 65536
        with open(self.path / "filler", "ab", buffering=0) as f:
            try:
                while True:
                    f.write(block)
            except OSError:
                pass
            try:
                while True:
                    f.write(b"x" * 512)
            except OSError:
                pass

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    d = SmallDisk(tmp_path / "disk", 8 << 20)
    yield d
    d.unmount()


def log_events(data_dir: Path) -> list[dict]:
    out = []
    for seg in sorted((data_dir / "log").glob("events-*.jsonl")):
        for line in seg.read_text().splitlines():
            out.append(json.loads(line))  # every line whole: a torn line fails here
    return out


def test_full_disk_holds_accepted_notifications_and_delivers_them_when_space_returns(
    disk: SmallDisk, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="herald")
    data_dir = disk.path / "data"
    engine = herald.Engine(
        data_dir,
        rules=default_rules(),
        providers=[sandbox.provider("primary", concurrency=8), sandbox.provider("backup", concurrency=8)],
        retry_base=0.02,
        retry_max=0.2,
        close_timeout=3.0,
        store_retry_max=0.1,
    )
    try:
        due = time.time() + 3.0
        # Due with the others but expiring a second later: its attempt is marked while the disk is
        # full and must not leave once the mark commits after expires_at.
        short = engine.send("otp", "short-lived", {"code": "0", "pad": "p" * 3000}, send_at=due,
                            expires_at=due + 1.0).id
        # 3 KB each: every row has a page of its own, so recording one dispatch batch needs pages.
        accepted = [engine.send("otp", f"u{i}", {"code": str(i), "pad": "p" * 3000}, send_at=due).id
                    for i in range(40)]
        disk.fill()
        # Intake is refused once the store has no room left. A refused transaction leaves the WAL
        # file as long as it got, and smaller ones may still fit there: refuse large, then small.
        refused = 0
        for size in (60_000, 1):
            for i in range(5000):
                try:
                    engine.send("otp", f"probe{size}-{i}", {"code": "x" * size})
                except herald.StoreError as exc:
                    assert "full" in str(exc)
                    refused += 1
                    break
        assert refused == 2, "the full disk never refused a write"
        assert engine.health()["store"]["degraded"] is True
        proven_full_us = time.time() * 1e6

        # The accepted ones come due while the disk is full: held, never dead-lettered, never sent
        # without their "sending" mark on disk, and status() says what is on disk.
        wait_for(lambda: time.time() > due + 1.5, 30, "the short-lived notification to expire")
        wait_for(lambda: engine.health()["store"]["write_faults"] >= 3, 30, "three refused retries")
        assert engine.dead_letters() == []
        assert not engine.wait_idle(0.2)
        assert [engine.status(i).state for i in accepted] == ["queued"] * len(accepted)
        assert [m for m in sandbox.messages() if m["body"]["to"]["id"].startswith("u")] == []
        with pytest.raises(herald.StoreError, match="cancel refused"):
            engine.cancel(accepted[0])

        freed_us = time.time() * 1e6
        disk.free()
        assert engine.wait_idle(30)
        assert engine.health()["store"]["degraded"] is False
        assert [engine.status(i).state for i in accepted] == ["completed"] * len(accepted)
        assert engine.status(short).state == "expired"
        assert not [m for m in sandbox.messages() if m["body"]["to"]["id"] == "short-lived"]
        sent = sorted(m["body"]["to"]["id"] for m in sandbox.messages() if m["body"]["to"]["id"].startswith("u"))
        assert sent == sorted(f"u{i}" for i in range(40))  # each exactly once
        # The engine takes new work again.
        again = engine.send("otp", "after", {"code": "1"})
        assert engine.wait(again.id).state == "completed"
    finally:
        engine.close()
    events = log_events(data_dir)
    downs = [e["ts_us"] for e in events if e["event"] == "store_degraded"]
    ups = [e["ts_us"] for e in events if e["event"] == "store_recovered"]
    # Between the large refusal and the small ones a small intake row may still fit in the WAL's
    # slack and end a first, short episode; a real write taken is a true recovery (a probe alone is
    # not, without the reserve's room free). From the moment the disk is proven full until it is
    # freed there is one episode, and it ends once, after the free.
    assert len(downs) == len(ups) >= 1
    assert [t for t in downs if t > proven_full_us] == []
    assert [t for t in ups if t > proven_full_us] == [ups[-1]] and ups[-1] > freed_us
    # The operator hears of each episode through the herald logger: once when it starts, once when
    # it ends.
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "herald"]
    assert records.count(("ERROR", "the store refuses writes: records are held in memory and delivery waits")) == len(downs)
    assert records.count(("WARNING", "the store takes writes again: held records committed")) == len(ups)
    down = next(r for r in caplog.records if r.getMessage().startswith("the store refuses writes"))
    assert "full" in down.herald["error"]  # type: ignore[attr-defined]
    assert records[0] == ("INFO", "engine started") and records[-1] == ("INFO", "engine closed")


def test_an_engine_opens_on_a_full_disk_and_resumes(disk: SmallDisk, sandbox: Sandbox) -> None:
    data_dir = disk.path / "data"
    options = dict(
        rules=default_rules(),
        providers=[sandbox.provider("primary"), sandbox.provider("backup")],
        close_timeout=3.0,
        store_retry_max=0.1,
    )
    with herald.Engine(data_dir, **options) as engine:
        waiting = [engine.send("otp", f"w{i}", {"code": "1"}, send_at=time.time() + 3600).id for i in range(10)]
    disk.fill()
    assert os.statvfs(disk.path).f_bavail * os.statvfs(disk.path).f_frsize < 8192
    with herald.Engine(data_dir, **options) as engine:
        assert [engine.status(i).state for i in waiting] == ["queued"] * 10
        disk.free()
        r = engine.send("otp", "fresh", {"code": "2"})
        assert engine.wait(r.id).state == "completed"
