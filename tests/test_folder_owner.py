"""One data folder, one engine: a second engine fails at once naming the pid that holds it, a
SIGKILL never leaves the folder locked, and the read-only tools work beside a running engine
without sending or asking for provider secrets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import herald
from herald import Sandbox

from support import default_rules


def _providers(sandbox: Sandbox) -> list[dict]:
    return [sandbox.provider("primary"), sandbox.provider("backup")]


def test_a_second_engine_in_the_same_process_fails_and_nothing_is_sent_twice(tmp_path: Path, sandbox: Sandbox) -> None:
    data_dir = tmp_path / "data"
    with herald.Engine(data_dir, rules=default_rules(), providers=_providers(sandbox)) as first:
        ids = [r.id for r in first.send_many([{"type": "otp", "recipient": f"u{i}", "data": {"code": "1"}}
                                              for i in range(200)])]
        with pytest.raises(herald.StoreError) as err:
            herald.Engine(data_dir, rules=default_rules(), providers=_providers(sandbox))
        assert str(data_dir) in str(err.value)
        assert f"pid {os.getpid()}" in str(err.value)
        assert first.wait_idle(30)
        assert all(first.status(i).state == "completed" for i in ids)
    assert sandbox.stats()["accepted"] == 200  # not 400


CHILD = textwrap.dedent("""
    import sys, time
    import herald
    from support import default_rules
    url, data_dir = sys.argv[1], sys.argv[2]
    providers = [{"name": n, "kind": "sandbox", "url": url} for n in ("primary", "backup")]
    engine = herald.Engine(data_dir, rules=default_rules(), providers=providers)
    engine.send_many([{"type": "otp", "recipient": f"c{i}", "data": {"code": "1"}} for i in range(200)])
    print("ready", flush=True)
    time.sleep(600)
""")


def test_another_process_is_refused_until_the_owner_dies(tmp_path: Path, sandbox: Sandbox) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, sandbox.url, str(data_dir)], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with pytest.raises(herald.StoreError) as err:
            herald.Engine(data_dir, rules=default_rules(), providers=_providers(sandbox))
        assert f"pid {child.pid}" in str(err.value)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    # The OS released the lock with the process: the folder opens and finishes what was left.
    with herald.Engine(data_dir, rules=default_rules(), providers=_providers(sandbox)) as engine:
        assert engine.wait_idle(30)
    sent = [m["body"]["to"]["id"] for m in sandbox.messages()]
    # Each exactly once: an attempt the kill left in doubt is looked up at the sandbox, not resent.
    assert sorted(sent) == sorted(f"c{i}" for i in range(200))


def test_cli_reads_beside_a_running_engine_without_sending(tmp_path: Path, sandbox: Sandbox) -> None:
    data_dir = tmp_path / "data"
    with herald.Engine(data_dir, rules=default_rules(), providers=_providers(sandbox)) as engine:
        later = engine.send("otp", "later", {"code": "1"}, send_at=time.time() + 3600)
        done = engine.send("otp", "now", {"code": "2"})
        assert engine.wait(done.id).state == "completed"
        before = sandbox.stats()["accepted"]
        for command, expect in ((["status", str(later.id)], '"state": "queued"'),
                                (["trace", str(done.id)], "completed"),
                                (["dead-letters"], ""),
                                (["suppressions"], "")):
            # No providers file and no secrets in the environment: the read-only commands need none.
            out = subprocess.run([sys.executable, "-m", "herald", "--data-dir", str(data_dir), *command],
                                 capture_output=True, text=True, timeout=60, cwd=tmp_path)
            assert out.returncode == 0, out.stderr
            assert expect in out.stdout
        assert sandbox.stats()["accepted"] == before  # nothing was dispatched by the CLI
        assert engine.status(later.id).state == "queued"
        with herald.open_readonly(data_dir) as reader:
            assert reader.status(done.id) == engine.status(done.id)
            assert [e.event for e in reader.trace(done.id)] == [e.event for e in engine.trace(done.id)]
            assert reader.dead_letters() == engine.dead_letters()


def test_open_readonly_on_a_folder_without_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(herald.StoreError, match="no herald data"):
        herald.open_readonly(tmp_path / "empty")
