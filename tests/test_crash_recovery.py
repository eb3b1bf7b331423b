"""SIGKILL an engine process mid-run; a new engine on the same store finishes the work.

Checked in the sandbox's own records: every accepted notification arrived exactly once. Attempts
the crash left in doubt are settled by asking the sandbox (its status API finds a message by its
idempotency key) before anything is resent."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from herald import Engine, Plan, RuleSet, Sandbox
from support import wait_for

CHILD = textwrap.dedent(
    """
    import json, sys, threading
    from herald import Engine, Plan, RuleSet
    data_dir, url, total, ids_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    rules = RuleSet({"otp": lambda n: Plan("sms", ["primary"], "code {code}")})
    engine = Engine(data_dir, rules=rules, providers=[{"name": "primary", "kind": "sandbox", "url": url,
                                                       "concurrency": 32}])
    ids = []
    for start in range(0, total, 500):
        batch = [{"type": "otp", "recipient": f"u{i}", "data": {"code": str(i)}, "idempotency_key": f"k{i}"}
                 for i in range(start, min(total, start + 500))]
        ids.extend(r.id for r in engine.send_many(batch))
    with open(ids_file + ".tmp", "w") as f:
        json.dump(ids, f)
    import os
    os.replace(ids_file + ".tmp", ids_file)
    threading.Event().wait()  # the engine's threads deliver until the test kills this process
    """
)


def run_child_and_kill(data_dir: Path, sandbox: Sandbox, total: int, kill_after: int, tmp_path: Path) -> list[int]:
    ids_file = tmp_path / "ids.json"
    env = dict(os.environ)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), sandbox.url, str(total), str(ids_file)],
        stdout=subprocess.DEVNULL, env=env, cwd=tmp_path,
    )
    def alive() -> bool:
        assert child.poll() is None, "the engine process died on its own"
        return True

    try:
        wait_for(lambda: alive() and ids_file.exists(), timeout=60, what="the engine process to accept its batch")
        # Polled often: the kill should come close to kill_after.
        wait_for(lambda: alive() and sandbox.stats()["accepted"] >= kill_after, timeout=60,
                 what=f"{kill_after} sends to reach the sandbox", interval=0.002)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return json.loads(ids_file.read_text())


@pytest.mark.parametrize("kill_fraction", [0.05, 0.5], ids=["kill-early", "kill-midway"])
def test_sigkill_mid_run_loses_nothing_and_duplicates_only_in_doubt(
    tmp_path: Path, sandbox: Sandbox, kill_fraction: float
) -> None:
    total = 3000
    # Every answer is held 20 ms after the sandbox has recorded the message: whenever the kill comes,
    # up to 32 attempts have reached the sandbox and have no answer yet. They must be in doubt, and
    # the status query after the restart must find them instead of sending them again.
    sandbox.set_faults("primary", latency_ms=20)
    data_dir = tmp_path / "data"
    ids = run_child_and_kill(data_dir, sandbox, total, int(total * kill_fraction), tmp_path)
    assert len(ids) == total
    delivered_before = sandbox.stats()["accepted"]
    assert delivered_before < total, "the kill came too late to test anything"

    with closing(sqlite3.connect(data_dir / "herald.db")) as db:  # what the killed process left behind
        unfinished = db.execute("SELECT count(*) FROM notifications WHERE state < 4").fetchone()[0]
    assert unfinished > 0

    rules = RuleSet({"otp": lambda n: Plan("sms", ["primary"], "code {code}")})
    with Engine(data_dir, rules=rules, providers=[sandbox.provider("primary", concurrency=32)]) as engine:
        assert engine.stats()["recovered"] == unfinished
        assert engine.wait_idle(60)
        statuses = {i: engine.status(i) for i in ids}
        in_doubt = {i for i, s in statuses.items() if s.in_doubt}
        assert all(s.state == "completed" for s in statuses.values())
        assert in_doubt, "the kill left no attempt in doubt, though answers were held"
        for i in in_doubt:
            assert "in_doubt" in [e.event for e in engine.trace(i)]

    messages = sandbox.messages("primary")
    counts = Counter(int(m["headers"]["x-herald-id"]) for m in messages)
    assert set(counts) == set(ids), "a notification accepted before the crash never arrived"
    twice = sorted(i for i, c in counts.items() if c > 1)
    assert not twice, f"sent twice: {twice[:5]}"
    with Engine(data_dir, rules=rules, providers=[sandbox.provider("primary")]) as engine:
        traces = {i: [e.event for e in engine.trace(i)] for i in in_doubt}
    # An attempt in doubt that reached the sandbox before the kill is settled by the status query and
    # not sent again (one "sending"); one that never left is sent once more after the lookup found
    # nothing (two "sending"). Held answers make the first kind certain.
    settled = [i for i, t in traces.items() if "reconciled" in t]
    assert settled, "no attempt in doubt was settled by a status query"
    assert all(traces[i].count("sending") == 1 for i in settled)
    assert all(traces[i].count("sending") == 2 for i in set(in_doubt) - set(settled))


SEND_ONE_CHILD = textwrap.dedent(
    """
    import sys, threading
    from herald import Engine, Plan, RuleSet
    data_dir, url, ids_file = sys.argv[1], sys.argv[2], sys.argv[3]
    rules = RuleSet({"otp": lambda n: Plan("sms", ["primary"], "code {code}")})
    engine = Engine(data_dir, rules=rules, providers=[{"name": "primary", "kind": "sandbox", "url": url,
                                                       "concurrency": 8}])
    with open(ids_file, "w", buffering=1) as out:  # a line per send() that returned
        i = 0
        while True:
            out.write(f"{engine.send('otp', f'u{i}', {'code': str(i)}, idempotency_key=f'k{i}').id}\\n")
            i += 1
    """
)


def test_sigkill_while_sending_one_at_a_time_keeps_every_send_that_returned(tmp_path: Path,
                                                                           sandbox: Sandbox) -> None:
    # send() returns once the row is in the intake journal; the row reaches SQLite with the next
    # group commit. Whatever the kill interrupts, a send() that returned must be delivered, once.
    sandbox.set_faults("primary", latency_ms=5)
    data_dir, ids_file = tmp_path / "data", tmp_path / "ids.txt"
    child = subprocess.Popen([sys.executable, "-c", SEND_ONE_CHILD, str(data_dir), sandbox.url, str(ids_file)],
                             stdout=subprocess.DEVNULL, cwd=tmp_path)
    try:
        def sent() -> int:
            assert child.poll() is None, "the engine process died on its own"
            return ids_file.read_text().count("\n") if ids_file.exists() else 0
        wait_for(lambda: sent() >= 3000, timeout=60, what="3000 sends to return", interval=0.005)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    ids = [int(line) for line in ids_file.read_text().splitlines(keepends=True) if line.endswith("\n")]
    assert len(ids) >= 3000
    rules = RuleSet({"otp": lambda n: Plan("sms", ["primary"], "code {code}")})
    with Engine(data_dir, rules=rules, providers=[sandbox.provider("primary", concurrency=32)]) as engine:
        assert engine.wait_idle(60)
        states = {engine.status(i).state for i in ids}
        assert states == {"completed"}, states
    counts = Counter(int(m["headers"]["x-herald-id"]) for m in sandbox.messages("primary"))
    missing = set(ids) - set(counts)
    assert not missing, f"{len(missing)} sends that returned never arrived: {sorted(missing)[:5]}"
    twice = sorted(i for i, c in counts.items() if c > 1)
    assert not twice, f"sent twice: {twice[:5]}"
    assert not list((data_dir / "journal").glob("*.bin")) or all(
        p.stat().st_size == 0 for p in (data_dir / "journal").glob("*.bin")), "the replayed journal was kept"
