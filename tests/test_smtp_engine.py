"""Email over SMTP end to end: the engine, libcurl's SMTP and a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald import Engine, Plan, RuleSet

SERVER = Path(__file__).with_name("smtp_server.py")


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    maildir = tmp_path / "maildir"
    maildir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--maildir", str(maildir), "--user", "herald",
         "--password", "s3cret", "--reject", "nobody@example.com"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip())
        yield port, maildir
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def mail_engine(tmp_path: Path, port: int, password: str) -> Engine:
    rules = RuleSet({"welcome": lambda n: Plan("email", ["smtp"], "Hello {name}, welcome to herald.")})
    provider = {"name": "smtp", "kind": "smtp", "url": f"smtp://127.0.0.1:{port}",
                "settings": {"from": "noreply@herald.test", "from_name": "Herald", "subject": "Welcome",
                             "username": "herald"},
                "secrets": {"password": password}}
    return Engine(tmp_path / f"data-{password}", rules=rules, providers=[provider], retry_base=0.02, retry_max=0.1)


def stored(maildir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(maildir.glob("*.json"))]


def test_smtp_delivers_with_auth_and_the_right_headers(tmp_path: Path, smtp_server: tuple[int, Path]) -> None:
    port, maildir = smtp_server
    with mail_engine(tmp_path, port, "s3cret") as engine:
        r = engine.send("welcome", {"id": "u1", "email": "ada@example.com"}, {"name": "Ada Lovelace"})
        status = engine.wait(r.id)
    assert status.state == "completed"
    assert status.provider_message_id == f"<herald-{r.id}.1@herald>"
    [mail] = stored(maildir)
    assert mail["rcpt_tos"] == ["ada@example.com"]
    assert mail["mail_from"] == "noreply@herald.test"
    assert mail["authenticated"] and mail["login"] == "herald"
    assert mail["subject"] == "Welcome"
    assert mail["body"].strip() == "Hello Ada Lovelace, welcome to herald."
    headers = dict(mail["headers"])
    assert headers["X-Herald-Id"] == str(r.id)


def test_smtp_rejected_recipient_is_unusable(tmp_path: Path, smtp_server: tuple[int, Path]) -> None:
    port, maildir = smtp_server
    with mail_engine(tmp_path, port, "s3cret") as engine:
        r = engine.send("welcome", {"id": "u2", "email": "nobody@example.com"}, {"name": "N"})
        status = engine.wait(r.id)
        assert status.state == "dead_lettered" and "550" in status.last_error
        assert [(s.channel, s.address) for s in engine.suppressions()] == [("email", "nobody@example.com")]
    assert stored(maildir) == []


def test_smtp_wrong_password_fails_without_leaking_it(tmp_path: Path, smtp_server: tuple[int, Path]) -> None:
    port, maildir = smtp_server
    with mail_engine(tmp_path, port, "wrong-password") as engine:
        r = engine.send("welcome", {"id": "u3", "email": "ada@example.com"}, {"name": "A"})
        status = engine.wait(r.id)
        assert status.state == "dead_lettered"
        assert "535" in status.last_error
        trace = engine.trace(r.id)
        assert "attempt_failed" in [e.event for e in trace]  # the failure is recorded, without the password
        assert all("wrong-password" not in str(e) for e in trace)
    assert stored(maildir) == []
