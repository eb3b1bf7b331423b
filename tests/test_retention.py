"""Retention: final notifications and their events go once past the limits, unfinished ones stay,
and `herald prune` does the same from the command line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import herald
from herald import Retention, Sandbox

from support import default_rules


def _rows(data_dir: Path, sql: str) -> int:
    with sqlite3.connect(data_dir / "herald.db") as db:
        return int(db.execute(sql).fetchone()[0])


def test_final_notifications_past_max_age_are_pruned_with_their_events(tmp_path: Path, sandbox: Sandbox) -> None:
    data_dir = tmp_path / "data"
    engine = herald.Engine(
        data_dir,
        rules=default_rules(),
        providers=[sandbox.provider("primary"), sandbox.provider("backup")],
        retention=Retention(max_age=0.2, interval=0),
    )
    with engine:
        done = [r.id for r in engine.send_many([{"type": "otp", "recipient": f"u{i}", "data": {"code": "1"}}
                                                for i in range(200)])]
        assert engine.wait_idle(30)
        later = engine.send("otp", "later", {"code": "2"}, send_at=time.time() + 3600).id
        assert _rows(data_dir, f"SELECT count(*) FROM all_events WHERE nid = {done[0]}") > 0
        removed = {"notifications": 0, "events": 0}
        deadline = time.monotonic() + 10
        while removed["notifications"] < 200:  # waits for the rows to pass max_age, pass by pass
            assert time.monotonic() < deadline, removed
            one = engine.prune()
            removed = {k: removed[k] + one[k] for k in removed}
        assert removed["notifications"] == 200
        assert removed["events"] == 200 * 4  # routed, sending, accepted and completed for each
        assert all(engine.status(i) is None for i in done)
        assert engine.status(later).state == "queued"  # unfinished: never pruned
        assert engine.stats()["pruned"] == 200
        assert _rows(data_dir, f"SELECT count(*) FROM all_events WHERE nid IN ({','.join(map(str, done))})") == 0


def test_herald_prune_on_the_command_line(tmp_path: Path, sandbox: Sandbox) -> None:
    data_dir = tmp_path / "data"
    with herald.Engine(data_dir, rules=default_rules(),
                       providers=[sandbox.provider("primary"), sandbox.provider("backup")],
                       retention=Retention(interval=0)) as engine:
        engine.send_many([{"type": "otp", "recipient": f"u{i}", "data": {"code": "1"}} for i in range(50)])
        assert engine.wait_idle(30)
    keep = subprocess.run([sys.executable, "-m", "herald", "--data-dir", str(data_dir), "prune"],
                          capture_output=True, text=True, timeout=60)
    assert keep.returncode == 0, keep.stderr
    assert json.loads(keep.stdout)["notifications"] == 0  # younger than 7 days: kept
    assert _rows(data_dir, "SELECT count(*) FROM notifications") == 50
    # A database limit of 0 MB is "no limit"; an age of 86 ms takes everything final.
    cut = subprocess.run([sys.executable, "-m", "herald", "--data-dir", str(data_dir), "prune",
                          "--max-age-days", "0.000001"], capture_output=True, text=True, timeout=60)
    assert cut.returncode == 0, cut.stderr
    report = json.loads(cut.stdout)
    assert report["notifications"] == 50
    assert _rows(data_dir, "SELECT count(*) FROM notifications") == 0
    assert _rows(data_dir, "SELECT count(*) FROM all_events") == 0


def test_retention_options_are_checked_by_name(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(herald.ConfigError) as err:
        herald.Engine(tmp_path / "d", rules=default_rules(), providers=[], retention=Retention(max_db_bytes=-1))
    assert err.value.field == "retention.max_db_bytes"
    with pytest.raises(herald.ConfigError) as err:
        herald.Engine(tmp_path / "d", rules=default_rules(), providers=[], retention=Retention(interval=float("nan")))
    assert err.value.field == "retention.interval"
    with pytest.raises(herald.ConfigError) as err:
        herald.Engine(tmp_path / "d", rules=default_rules(), providers=[], retention={"max_age": 1})  # type: ignore[arg-type]
    assert err.value.field == "retention"
