"""The worked examples in routing_rules/ do what their docstrings say, end to end: the real rules
directory, a real engine on SQLite, the sandbox over HTTP (every provider a sandbox one under the
name the rules use), deadlines on a ManualClock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from herald import Engine, ManualClock, RuleSet, Sandbox

from support import events_of, wait_for

RULES = Path(__file__).resolve().parent.parent / "routing_rules"
USER = {"id": "u1", "phone": "+15550001", "email": "u1@example.com", "push_token": "tok-1"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def engine(tmp_path: Path, sandbox: Sandbox, clock: ManualClock) -> Any:
    providers = [sandbox.provider(name, max_attempts=1)
                 for name in ("sms-primary", "sms-backup", "email-primary", "email-backup", "push", "slack")]
    with Engine(tmp_path / "data", rules=RuleSet.load(RULES), providers=providers, clock=clock,
                retry_base=0.02, retry_max=0.2, close_timeout=3.0) as e:
        yield e


def channels(sandbox: Sandbox, id: int) -> list[str]:
    """The channels of the messages the sandbox received for notification `id`, in order."""
    return [m["body"]["channel"] for m in sandbox.messages() if m["body"].get("id") == id]


def test_every_example_loads_and_routes_its_type() -> None:
    rules = RuleSet.load(RULES)
    assert {"otp", "order_update", "security_alert", "admin_alert", "campaign"} <= set(rules.types())


def test_otp_goes_by_sms(engine: Engine, sandbox: Sandbox) -> None:
    r = engine.send("otp", USER, {"code": "123456"}, priority="critical")
    assert engine.wait(r.id, timeout=10).state == "completed"
    assert channels(sandbox, r.id) == ["sms"]
    assert "step_cancelled" in events_of(engine, r.id)  # the email will never be needed


def test_otp_falls_back_to_email_when_both_sms_providers_refuse(engine: Engine, sandbox: Sandbox) -> None:
    sandbox.set_faults("sms-primary", error_rate=1.0, error_status=400)
    sandbox.set_faults("sms-backup", error_rate=1.0, error_status=400)
    r = engine.send("otp", USER, {"code": "123456"}, priority="critical")
    assert engine.wait(r.id, timeout=10).state == "completed"
    assert channels(sandbox, r.id) == ["email"]
    email = next(m["body"] for m in sandbox.messages() if m["body"].get("id") == r.id)
    assert email["subject"] == "Your sign-in code" and "<b>123456</b>" in email["html"]


def test_an_unread_order_update_is_emailed_after_ten_minutes(engine: Engine, sandbox: Sandbox,
                                                               clock: ManualClock) -> None:
    r = engine.send("order_update", USER, {"order_id": "A17", "status": "shipped"}, ordering_key="A17")
    wait_for(lambda: channels(sandbox, r.id) == ["push"], what="the push")
    push = next(m["body"] for m in sandbox.messages() if m["body"].get("id") == r.id)
    assert push["title"] == "Order A17" and push["payload"] == {"order_id": "A17", "screen": "orders"}
    engine.flush()
    clock.advance(599)
    engine.flush()
    assert channels(sandbox, r.id) == ["push"]
    clock.advance(1)
    assert engine.wait(r.id, timeout=10).state == "completed"
    assert channels(sandbox, r.id) == ["push", "email"]


def test_a_read_order_update_is_not_emailed(engine: Engine, sandbox: Sandbox, clock: ManualClock) -> None:
    r = engine.send("order_update", USER, {"order_id": "A18", "status": "packed"}, ordering_key="A18")
    wait_for(lambda: channels(sandbox, r.id) == ["push"], what="the push")
    engine.acknowledge(r.id, channel="push")
    assert engine.wait(r.id, timeout=10).state == "completed"
    clock.advance(3600)
    engine.flush()
    assert channels(sandbox, r.id) == ["push"]


def test_a_security_alert_goes_on_every_channel(engine: Engine, sandbox: Sandbox) -> None:
    r = engine.send("security_alert", USER, {"device": "Firefox on Linux"}, priority="critical")
    assert engine.wait(r.id, timeout=10).state == "completed"
    assert sorted(channels(sandbox, r.id)) == ["email", "push", "sms"]


def test_an_admin_alert_goes_to_chat(engine: Engine, sandbox: Sandbox) -> None:
    r = engine.send("admin_alert", {"id": "ops"}, {"title": "SMS failures", "detail": "7% over 2 min"})
    assert engine.wait(r.id, timeout=10).state == "completed"
    [message] = [m["body"] for m in sandbox.messages() if m["body"].get("id") == r.id]
    assert message["channel"] == "chat"
    assert message["text"] == ":rotating_light: SMS failures: 7% over 2 min"


def test_a_campaign_email_has_its_subject(engine: Engine, sandbox: Sandbox) -> None:
    r = engine.send("campaign", USER, {"headline": "Autumn sale", "body": "30% off"}, priority="bulk")
    assert engine.wait(r.id, timeout=10).state == "completed"
    [message] = [m["body"] for m in sandbox.messages() if m["body"].get("id") == r.id]
    assert message["channel"] == "email" and message["subject"] == "Autumn sale"
    assert message["text"] == "Autumn sale: 30% off"
