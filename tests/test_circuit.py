"""Circuit breakers per provider, end to end: the in-process sandbox fails a provider, its circuit
opens, traffic goes on to the next provider without attempts on it, and after the outage a probe
closes it again. Time is the engine's ManualClock: no test waits for a cool-down to pass."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import herald
from herald import ManualClock, Plan, RuleSet, Sandbox

from support import wait_for

COOLDOWN_S = 10
TWILIO_SID = "AC00000000000000000000000000000001"  # as test_provider_apis.py
TWILIO_TOKEN = "twilio-test-token"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def providers(sandbox: Sandbox, **primary: Any) -> list[dict[str, Any]]:
    settings = {"max_attempts": 1, "circuit_consecutive_failures": 3, "circuit_cooldown_ms": COOLDOWN_S * 1000,
                "cost_per_message": 0.05, **primary}
    return [sandbox.provider("primary", **settings), sandbox.provider("backup", max_attempts=1, cost_per_message=0.01)]


def circuit(engine: herald.Engine, name: str = "primary") -> str:
    return engine.provider_health()[name].circuit


def provider_events(data_dir: Path) -> list[tuple[str, str, str]]:
    """The delivery log's provider-level events (id 0): (event, provider, detail)."""
    out = []
    for seg in sorted((data_dir / "log").glob("events-*.jsonl")):
        for line in seg.read_text("utf-8").splitlines():
            e = json.loads(line)
            if e["id"] == "0" and e["event"].startswith("circuit_"):
                out.append((e["event"], e.get("provider", ""), e.get("detail", "")))
    return out


def sent_to(engine: herald.Engine, id: int) -> list[str]:
    return [e.provider for e in engine.trace(id) if e.event == "sending"]


def test_an_outage_opens_the_circuit_traffic_fails_over_and_a_probe_closes_it(
        make_engine, sandbox: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    engine = make_engine(clock=clock, providers=providers(sandbox))
    sandbox.set_faults("primary", error_rate=1.0, error_status=503)
    # Three attempts fail on primary (each then goes to backup): the third opens its circuit.
    for i in range(3):
        assert circuit(engine) == "closed"
        r = engine.send("otp", f"u{i}", {"code": "1"})
        assert engine.wait(r.id, timeout=10).state == "completed"
        assert sent_to(engine, r.id) == ["primary", "backup"]
    assert circuit(engine) == "open"
    health = engine.provider_health()["primary"]
    assert health.failure_rate == 1.0 and health.attempts == 3
    assert health.half_open_at == pytest.approx(clock.now() + COOLDOWN_S, abs=0.5)

    # While it is open, nothing is attempted on primary: straight to backup, with the reason.
    ids = [engine.send("otp", f"v{i}", {"code": "2"}).id for i in range(5)]
    for id in ids:
        assert engine.wait(id, timeout=10).state == "completed"
        assert sent_to(engine, id) == ["backup"]
        over = [e for e in engine.trace(id) if e.event == "failed_over"]
        assert [(e.provider, e.detail) for e in over] == [("backup", "from primary: circuit open")]
    assert engine.stats()["attempts"] == 3 * 2 + 5

    # The outage ends; after the cool-down one probe goes to primary, succeeds and closes it.
    sandbox.clear_faults()
    clock.advance(COOLDOWN_S - 0.5)
    assert circuit(engine) == "open"
    clock.advance(0.5)
    wait_for(lambda: circuit(engine) == "half_open", what="the circuit to go half-open")
    probe = engine.send("otp", "w", {"code": "3"})
    assert engine.wait(probe.id, timeout=10).state == "completed"
    assert sent_to(engine, probe.id) == ["primary"]
    assert circuit(engine) == "closed"
    after = engine.send("otp", "x", {"code": "4"})
    assert engine.wait(after.id, timeout=10).state == "completed"
    assert sent_to(engine, after.id) == ["primary"]

    engine.flush()
    events = provider_events(tmp_path / "data")
    assert [(kind, provider) for kind, provider, _ in events] == [
        ("circuit_opened", "primary"), ("circuit_half_open", "primary"), ("circuit_closed", "primary")]
    assert events[0][2] == "3 failures in a row"
    assert events[2][2] == "probe succeeded"
    metrics = engine.metrics()
    assert 'herald_provider_circuit{provider="primary",state="closed"} 1' in metrics
    assert 'herald_provider_circuit{provider="primary",state="open"} 0' in metrics


def test_with_every_provider_open_a_notification_waits_for_the_probe_instead_of_dead_lettering(
        make_engine, sandbox: Sandbox, clock: ManualClock) -> None:
    engine = make_engine(clock=clock, providers=providers(sandbox, circuit_consecutive_failures=2),
                         rules=RuleSet({"solo": lambda n: Plan("sms", ["primary"], "hi")}))
    sandbox.set_faults("primary", error_rate=1.0, error_status=503)
    for i in range(2):  # each fails its only attempt on its only provider: dead-lettered, as before
        assert engine.wait(engine.send("solo", f"u{i}").id, timeout=10).state == "dead_lettered"
    assert circuit(engine) == "open"

    r = engine.send("solo", "waits")
    status = wait_for(lambda: (s := engine.status(r.id)).state == "retry_scheduled" and s, what="it to wait")
    assert status.attempts == 0
    assert status.next_attempt_at == pytest.approx(engine.provider_health()["primary"].half_open_at, abs=0.01)
    waited = next(e for e in engine.trace(r.id) if e.event == "retry_scheduled")
    assert re.fullmatch(r"in \d+ ms: every provider of the plan from primary on has its circuit open; "
                        r"waiting for primary to let a probe through", waited.detail)

    sandbox.clear_faults()
    clock.advance(COOLDOWN_S)
    assert engine.wait(r.id, timeout=10).state == "completed"
    assert sent_to(engine, r.id) == ["primary"]  # the probe
    assert circuit(engine) == "closed"


def test_a_failed_probe_reopens_the_circuit(make_engine, sandbox: Sandbox, clock: ManualClock) -> None:
    engine = make_engine(clock=clock, providers=providers(sandbox, circuit_consecutive_failures=1))
    sandbox.set_faults("primary", error_rate=1.0, error_status=503)
    assert engine.wait(engine.send("otp", "u", {"code": "1"}).id, timeout=10).state == "completed"
    assert circuit(engine) == "open"
    clock.advance(COOLDOWN_S)
    wait_for(lambda: circuit(engine) == "half_open", what="half-open")
    probe = engine.send("otp", "p", {"code": "1"})
    assert engine.wait(probe.id, timeout=10).state == "completed"
    assert sent_to(engine, probe.id) == ["primary", "backup"]  # the probe failed, backup took it
    assert circuit(engine) == "open"


def test_an_answer_about_the_recipient_is_not_a_provider_failure(make_engine, sandbox: Sandbox) -> None:
    twilio = {"name": "sms", "kind": "twilio", "url": sandbox.url, "circuit_consecutive_failures": 1,
              "settings": {"account_sid": TWILIO_SID, "from": "+15550100"}, "secrets": {"auth_token": TWILIO_TOKEN}}
    engine = make_engine(providers=[twilio], rules=RuleSet({"otp": lambda n: Plan("sms", ["sms"], "hi")}))
    for phone in ("+15005550001", "+15005550004"):  # an invalid number, then an opted-out one
        r = engine.send("otp", {"id": phone, "phone": phone})
        status = engine.wait(r.id, timeout=10)
        assert status.state in ("dead_lettered", "suppressed")
        assert [e.http_status for e in engine.trace(r.id) if e.event == "attempt_failed"] == [400]
    health = engine.provider_health()["sms"]
    assert (health.circuit, health.attempts, health.failure_rate) == ("closed", 2, 0.0)


def test_a_rule_reads_the_providers_health_and_picks_the_cheapest_usable(make_engine, sandbox: Sandbox,
                                                                        clock: ManualClock) -> None:
    seen: list[Any] = []

    def cheapest(n: herald.Notification, providers: Any) -> Plan:
        seen.append(providers)
        names = ["primary", "backup"]
        usable = [p for p in names if providers[p].circuit != "open"] or names
        first = min(usable, key=lambda p: providers[p].cost)
        return Plan("sms", [first] + [p for p in names if p != first], "{code}")

    rules = RuleSet({"otp": cheapest, "plain": lambda n: Plan("sms", ["backup"], "hi")})
    engine = make_engine(clock=clock, rules=rules, providers=[
        sandbox.provider("primary", max_attempts=1, cost_per_message=0.05),
        sandbox.provider("backup", max_attempts=1, cost_per_message=0.01, circuit_consecutive_failures=1)])
    # backup costs 0.01, primary 0.05: the rule picks backup.
    r = engine.send("otp", "u", {"code": "1"})
    assert engine.wait(r.id, timeout=10).state == "completed"
    assert sent_to(engine, r.id) == ["backup"]
    assert engine.status(r.id).cost == pytest.approx(0.01)
    # A rule taking only the notification still works beside it.
    assert engine.wait(engine.send("plain", "u").id, timeout=10).state == "completed"

    # backup's circuit opens: the same rule now puts primary first.
    sandbox.set_faults("backup", error_rate=1.0, error_status=503)
    failed = engine.send("otp", "v", {"code": "2"})
    assert engine.wait(failed.id, timeout=10).state == "completed"
    assert sent_to(engine, failed.id) == ["backup", "primary"]
    assert circuit(engine, "backup") == "open"
    r = engine.send("otp", "w", {"code": "3"})
    assert engine.wait(r.id, timeout=10).state == "completed"
    assert sent_to(engine, r.id) == ["primary"]
    assert [e.event for e in engine.trace(r.id)].count("failed_over") == 0  # the rule chose, no failover

    # The view is the loop's state during the routing call only: kept, it cannot be read later.
    with pytest.raises(herald.HeraldError, match="only during the routing call"):
        seen[0]["primary"]


def test_provider_health_reads_cost_latency_and_rates(make_engine, sandbox: Sandbox) -> None:
    engine = make_engine(providers=providers(sandbox))
    before = engine.provider_health()
    assert set(before) == {"primary", "backup"}
    assert before["primary"].p99_ms is None and before["primary"].attempts == 0
    assert before["primary"].cost == 0.05 and before["backup"].cost == 0.01
    assert before["primary"].half_open_at is None
    for i in range(4):
        assert engine.wait(engine.send("otp", f"u{i}", {"code": "1"}).id, timeout=10).state == "completed"
    after = engine.provider_health()["primary"]
    assert after.attempts == 4 and after.failure_rate == 0.0 and after.circuit == "closed"
    assert after.p99_ms is not None and 0 < after.p99_ms < 10_000
    assert "circuit='closed'" in repr(after)
