"""The `herald` command, run as users run it: `python -m herald ...` in a subprocess."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import herald
from herald import Sandbox
from herald.cli import _parser

RULES = '''
from herald import Plan, rule


@rule("otp")
def otp(n):
    return Plan("sms", ["sms"], "Your code is {code}")
'''


def herald_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "herald", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture
def folder(tmp_path: Path, sandbox: Sandbox) -> Path:
    """A folder with rules and a providers file pointed at the sandbox, as a user would set it up."""
    (tmp_path / "routing_rules").mkdir()
    (tmp_path / "routing_rules" / "otp.py").write_text(RULES, encoding="utf-8")
    (tmp_path / "herald.toml").write_text(f'[providers.sms]\nkind = "sandbox"\nurl = "{sandbox.url}"\n',
                                          encoding="utf-8")
    return tmp_path


def test_version(tmp_path: Path) -> None:
    result = herald_cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"herald {herald.__version__}"


def test_every_option_has_help_text() -> None:
    def walk(parser: argparse.ArgumentParser, where: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    missing += walk(sub, f"{where} {name}")
            elif not action.help:
                missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
        return missing

    assert walk(_parser(), "herald") == []


def test_send_then_status_with_global_options_after_the_subcommand(folder: Path, sandbox: Sandbox) -> None:
    data_dir = str(folder / "elsewhere")
    sent = herald_cli("send", "otp", '{"id": "u1", "phone": "+15550100"}', "--data", '{"code": "42"}',
                      "--wait", "10", "--data-dir", data_dir, cwd=folder)
    assert sent.returncode == 0, sent.stderr
    receipt, final = (json.loads(line) for line in sent.stdout.splitlines())
    assert final["state"] == "completed", final
    assert [m for m in sandbox.messages() if "42" in json.dumps(m)]
    # Before and after the subcommand read the same folder.
    after = herald_cli("status", str(receipt["id"]), "--data-dir", data_dir, cwd=folder)
    before = herald_cli("--data-dir", data_dir, "status", str(receipt["id"]), cwd=folder)
    assert after.returncode == before.returncode == 0, after.stderr + before.stderr
    assert json.loads(after.stdout)["state"] == json.loads(before.stdout)["state"] == "completed"
    default = herald_cli("status", str(receipt["id"]), cwd=folder)  # ./herald-data: not the folder written
    assert default.returncode == 2 and "no herald data in herald-data" in default.stderr


def test_bad_json_is_one_clear_line_and_exit_2(folder: Path) -> None:
    result = herald_cli("send", "otp", "u1", "--data", "{bad", cwd=folder)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("herald send: --data: not valid JSON") and "'{bad'" in line


def test_retry_re_queues_a_dead_letter_and_cancel_refuses_a_final_one(folder: Path, sandbox: Sandbox) -> None:
    sandbox.set_faults("*", error_rate=1.0, error_status=400)
    sent = herald_cli("send", "otp", '{"id": "u1", "phone": "+15550100"}', "--data", '{"code": "7"}',
                      "--wait", "10", cwd=folder)
    assert sent.returncode == 0, sent.stderr
    receipt, final = (json.loads(line) for line in sent.stdout.splitlines())
    assert final["state"] == "dead_lettered", final
    id_ = str(receipt["id"])

    cancel = herald_cli("cancel", id_, cwd=folder)
    assert cancel.returncode == 1
    assert "not cancelled: it is dead_lettered" in cancel.stderr

    sandbox.clear_faults()
    retry = herald_cli("retry", id_, cwd=folder)
    assert retry.returncode == 0, retry.stderr
    assert json.loads(retry.stdout)["state"] != "dead_lettered"
    with herald.open_readonly(folder / "herald-data") as store:
        events = [e.event for e in store.trace(int(id_))]
    assert events.index("retried") > events.index("dead_lettered"), events


def test_cancel_of_a_scheduled_notification(folder: Path) -> None:
    with herald.Engine(folder / "herald-data", rules=folder / "routing_rules",
                       providers=folder / "herald.toml") as engine:
        later = engine.send("otp", {"id": "u1", "phone": "+15550100"}, {"code": "1"}, send_at=timedelta(hours=1))
    result = herald_cli("cancel", str(later.id), cwd=folder)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"id": later.id, "state": "cancelled"}


def test_retry_of_an_unknown_id_is_one_line(folder: Path) -> None:
    result = herald_cli("retry", "999", cwd=folder)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
