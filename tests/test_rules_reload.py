"""Hot reload of a rules directory: an edited file takes effect without a restart, a broken one
keeps the previous rules and says where it broke, a deleted file's rule goes, and rules from
modules are never touched. The engine runs on a ManualClock: the directory check follows it, so
nothing here sleeps. Files get explicit mtimes (os.utime) instead of waiting for the clock's
granularity."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

import herald
from herald import ManualClock, Plan, RuleSet, Sandbox
from herald.rules import RuleConflict

from support import wait_for

OTP = '''from herald import Plan, rule


@rule("otp")
def otp(n):
    return Plan("sms", ["primary"], "{template}")
'''

KEY = "reload-test-key-0123456789"
_stamp = 1_700_000_000  # every write gets a later mtime than the one before, whatever the clock


def write(path: Path, text: str) -> None:
    global _stamp
    path.write_text(text, encoding="utf-8")
    _stamp += 10
    os.utime(path, (_stamp, _stamp))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    write(d / "otp.py", OTP.format(template="old {code}"))
    return d


def texts(sandbox: Sandbox) -> list[str]:
    return [m["text"] for m in sandbox.messages()]


def sent(engine: herald.Engine, type_: str = "otp", code: str = "1") -> herald.Status:
    status = engine.wait(engine.send(type_, {"id": "u1", "phone": "+15550001111"}, {"code": code}).id, timeout=10)
    assert status.state == "completed", status
    return status


def test_an_edited_rule_file_routes_the_next_notifications(make_engine, sandbox: Sandbox, rules_dir: Path,
                                                           clock: ManualClock) -> None:
    engine = make_engine(rules=rules_dir, clock=clock)
    sent(engine, code="1")
    write(rules_dir / "otp.py", OTP.format(template="new {code}"))
    # Before the check interval has passed on the engine's clock, routing does not look.
    sent(engine, code="2")
    assert texts(sandbox) == ["old 1", "old 2"]
    clock.advance(1.0)
    sent(engine, code="3")
    assert texts(sandbox)[-1] == "new 3"
    status = engine.rules_status()
    assert status["reloads"] == 1 and status["error"] is None and status["files"] == ["otp.py"]


def test_reload_rules_forces_a_load_without_waiting_for_the_interval(make_engine, sandbox: Sandbox,
                                                                     rules_dir: Path, clock: ManualClock) -> None:
    engine = make_engine(rules=rules_dir, clock=clock, rules_check_interval=None)
    write(rules_dir / "otp.py", OTP.format(template="forced {code}"))
    clock.advance(3600)
    sent(engine)
    assert texts(sandbox) == ["old 1"]  # no automatic checks at all
    assert engine.reload_rules()["reloads"] == 1
    sent(engine, code="2")
    assert texts(sandbox)[-1] == "forced 2"


def test_a_syntax_error_keeps_the_old_rules_and_names_file_and_line(make_engine, sandbox: Sandbox, rules_dir: Path,
                                                                    clock: ManualClock,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(rules=rules_dir, clock=clock)
    broken = OTP.format(template="broken {code}").replace("def otp(n):", "def otp(n)")  # line 5
    write(rules_dir / "otp.py", broken)
    clock.advance(1.0)
    with caplog.at_level(logging.ERROR, logger="herald"):
        sent(engine, code="1")  # the routing call finds the change, fails to load it, routes as before
    assert texts(sandbox) == ["old 1"]
    where = f"{rules_dir / 'otp.py'}:5"
    error = engine.rules_status()["error"]
    assert error["file"] == str(rules_dir / "otp.py") and error["line"] == 5
    assert error["text"].startswith(where + ": SyntaxError")
    assert engine.health()["rules"] == "error" and engine.health()["rules_error"].startswith(where)
    assert any(where in r.getMessage() for r in caplog.records if r.name == "herald"), caplog.text
    with pytest.raises(herald.ConfigError, match=f"rules: {where}: SyntaxError") as err:
        engine.reload_rules()
    assert err.value.field == "rules"
    # Fixing it loads again at the next check; the error is gone.
    write(rules_dir / "otp.py", OTP.format(template="fixed {code}"))
    clock.advance(1.0)
    sent(engine, code="2")
    assert texts(sandbox)[-1] == "fixed 2"
    assert engine.rules_status()["error"] is None and engine.health()["rules"] == "ok"


def test_a_broken_file_is_not_imported_again_until_it_changes(make_engine, rules_dir: Path, clock: ManualClock,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(rules=rules_dir, clock=clock)
    text = OTP.format(template="x") + "\nraise RuntimeError('boom at import')\n"
    write(rules_dir / "otp.py", text)
    with caplog.at_level(logging.ERROR, logger="herald"):
        for _ in range(3):
            clock.advance(1.0)
            sent(engine)
    failures = [r for r in caplog.records if r.name == "herald" and "not reloaded" in r.getMessage()]
    assert len(failures) == 1, caplog.text
    error = engine.rules_status()["error"]
    assert (error["line"], error["message"]) == (text.splitlines().index("raise RuntimeError('boom at import')") + 1,
                                                 "RuntimeError: boom at import")


def test_an_exception_at_import_and_two_rules_for_a_type_are_reported_where_they_are(
        make_engine, rules_dir: Path, clock: ManualClock) -> None:
    engine = make_engine(rules=rules_dir, clock=clock)
    loaded = sys.modules["herald_rules_otp"]
    write(rules_dir / "helper_fails.py", "import json\n\nVALUE = json.loads('{not json')\n")
    with pytest.raises(herald.ConfigError, match=r"helper_fails\.py:3: JSONDecodeError"):
        engine.reload_rules()
    (rules_dir / "helper_fails.py").unlink()
    write(rules_dir / "zz_second.py", OTP.format(template="second"))
    with pytest.raises(herald.ConfigError) as err:
        engine.reload_rules()
    assert f"{rules_dir / 'zz_second.py'}:4: rules: two rules for type 'otp'" in str(err.value)
    assert f"otp ({rules_dir / 'otp.py'}:4)" in str(err.value)
    # The old rules still route, from the module objects loaded first.
    assert engine.rules.route(type("N", (), {"type": "otp", "id": 1, "data": {}})()).template == "old {code}"
    assert sys.modules["herald_rules_otp"] is loaded
    assert "herald_rules_zz_second" not in sys.modules  # a failed load leaves no module behind


def test_a_deleted_files_rule_disappears_and_a_new_files_rule_appears(make_engine, sandbox: Sandbox, rules_dir: Path,
                                                                     clock: ManualClock) -> None:
    write(rules_dir / "news.py", OTP.replace('"otp"', '"news"').replace("def otp", "def news").format(template="news"))
    engine = make_engine(rules=rules_dir, clock=clock)
    sent(engine, "news")
    (rules_dir / "news.py").unlink()
    write(rules_dir / "welcome.py",
          OTP.replace('"otp"', '"welcome"').replace("def otp", "def welcome").format(template="hi"))
    clock.advance(1.0)
    # Intake looks too when a type is unknown, so a new rule file's type is accepted at once.
    sent(engine, "welcome")
    assert texts(sandbox)[-1] == "hi"
    with pytest.raises(herald.ValidationError, match="no rule routes type 'news'"):
        engine.send("news", "u1")
    assert engine.rules.types() == ["otp", "welcome"]
    assert "herald_rules_news" not in sys.modules


def test_rules_from_modules_are_never_reloaded(make_engine, clock: ManualClock, tmp_path: Path) -> None:
    registered_before = RuleSet.registered().types()
    rules = RuleSet({"otp": lambda n: Plan("sms", ["primary"], "app {code}")})
    engine = make_engine(rules=rules, clock=clock)
    assert engine.reload_rules()["directory"] is None
    assert engine.rules is rules
    status = engine.rules_status()
    assert (status["check_interval"], status["reloads"], status["types"]) == (None, 0, ["otp"])
    # A directory engine's reloads leave the application's registered rules alone.
    d = tmp_path / "other_rules"
    d.mkdir()
    write(d / "x.py", OTP.format(template="dir"))
    other = make_engine(rules=d, clock=clock, data_dir=tmp_path / "other")
    write(d / "x.py", OTP.format(template="dir 2"))
    other.reload_rules()
    assert RuleSet.registered().types() == registered_before
    assert engine.rules is rules


def test_the_check_interval_is_checked(make_engine) -> None:
    with pytest.raises(herald.ConfigError, match="rules_check_interval"):
        make_engine(rules_check_interval=-1)


def test_a_rule_conflict_names_both_definitions() -> None:
    def a(n: object) -> Plan:
        return Plan("sms", ["x"])

    def b(n: object) -> Plan:
        return Plan("sms", ["x"])

    rules = RuleSet({"otp": a})
    with pytest.raises(RuleConflict) as err:
        rules.add("otp", b)
    assert err.value.file == __file__ and err.value.line == b.__code__.co_firstlineno
    assert isinstance(err.value, ValueError)


def test_herald_serve_reloads_its_rules_directory(tmp_path: Path, sandbox: Sandbox,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """serve builds its engine the same way: a rules file edited while it runs routes the next
    notifications (default check interval: 1 s of real time, so this waits on the sandbox)."""
    import threading

    from herald.client import Client
    from herald.serve import load_config, serve

    rules_dir = tmp_path / "routing_rules"
    rules_dir.mkdir()
    write(rules_dir / "otp.py", OTP.format(template="old {code}"))
    (tmp_path / "herald.toml").write_text(
        f'[serve]\nlisten = "127.0.0.1:0"\nrules = "routing_rules"\n'
        f'[serve.api_keys]\nt = {{ env = "HERALD_RELOAD_TEST_KEY" }}\n'
        f'[providers.primary]\nkind = "sandbox"\nurl = "{sandbox.url}"\n', encoding="utf-8")
    monkeypatch.setenv("HERALD_RELOAD_TEST_KEY", KEY)
    config = load_config(tmp_path / "herald.toml")
    stop = threading.Event()
    urls: list[str] = []
    done = threading.Thread(target=lambda: serve(config, stop=stop, announce=False), daemon=True)
    handler = _UrlCatcher(urls)
    herald_log = logging.getLogger("herald")
    level = herald_log.level
    herald_log.addHandler(handler)
    herald_log.setLevel(logging.INFO)
    try:
        done.start()
        wait_for(lambda: urls, what="serve to start")
        with Client(urls[0], api_key=KEY) as client:
            client.send("otp", {"id": "u1", "phone": "+15550001111"}, {"code": "1"})
            wait_for(lambda: texts(sandbox) == ["old 1"], what=lambda: f"the first message, got {texts(sandbox)}")
            write(rules_dir / "otp.py", OTP.format(template="new {code}"))

            def routed_new() -> bool:
                client.send("otp", {"id": "u1", "phone": "+15550001111"}, {"code": "n"})
                return wait_for(lambda: len(texts(sandbox)) >= 2, what="a message") and texts(sandbox)[-1] == "new n"

            wait_for(routed_new, timeout=15, interval=0.2, what=lambda: f"the new template, got {texts(sandbox)}")
    finally:
        stop.set()
        done.join(20)
        herald_log.removeHandler(handler)
        herald_log.setLevel(level)
    assert not done.is_alive()


class _UrlCatcher(logging.Handler):
    def __init__(self, urls: list[str]) -> None:
        super().__init__()
        self.urls = urls

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "herald", None)
        if record.getMessage() == "serve started" and isinstance(fields, dict):
            self.urls.append(fields["url"])
