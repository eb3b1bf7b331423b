"""Delivery behaviour against the real sandbox: priority, ordering, delay, expiry, idempotency,
failover, dead letters. Delay, Retry-After and expiry, which wait for time, are in test_clock.py
on the engine's ManualClock."""

from __future__ import annotations

import time

import pytest

import herald
from herald import Engine, Plan, RuleSet, Sandbox

from support import events_of, wait_for


def test_critical_overtakes_a_bulk_backlog(make_engine, sandbox: Sandbox) -> None:
    sandbox.set_faults("primary", latency_ms=2)
    engine = make_engine(primary_concurrency=2, route_batch=16)
    engine.send_many([{"type": "news", "recipient": f"bulk-{i}", "priority": "bulk"} for i in range(400)])
    # The critical one comes once the backlog is moving: some bulk has reached the provider.
    wait_for(lambda: sandbox.stats()["accepted"] > 0, what="the bulk backlog to reach the sandbox")
    otp = engine.send("otp", "vip", {"code": "1"}, priority="critical")
    assert engine.wait_idle(60)
    order = [m["body"]["to"]["id"] for m in sandbox.messages("primary")]
    position = order.index("vip")
    assert position < 60, f"critical OTP was sent after {position} bulk messages"
    assert engine.status(otp.id).state == "completed"


def test_weighted_lanes_serve_normal_before_bulk_but_bulk_still_moves(make_engine, sandbox: Sandbox) -> None:
    sandbox.set_faults("primary", latency_ms=1)
    engine = make_engine(primary_concurrency=1, route_batch=8)
    # Hold the provider busy while both lanes fill, so the lanes decide the order.
    sandbox.set_faults("primary", latency_ms=1000)  # long enough for a loaded machine to queue both lanes
    engine.send("news", "warmup", priority="bulk")
    # The sandbox records a send on receipt, before its latency: from then the one slot is taken.
    wait_for(lambda: sandbox.messages("primary"), what="the warm-up send to reach the sandbox")
    engine.send_many([{"type": "news", "recipient": f"b{i}", "priority": "bulk"} for i in range(40)])
    engine.send_many([{"type": "news", "recipient": f"n{i}", "priority": "normal"} for i in range(40)])
    sandbox.set_faults("primary", latency_ms=0)
    assert engine.wait_idle(60)
    order = [m["body"]["to"]["id"] for m in sandbox.messages("primary")][1:]
    first_40 = order[:40]
    normals = sum(1 for r in first_40 if r.startswith("n"))
    bulks = sum(1 for r in first_40 if r.startswith("b"))
    assert normals > bulks > 0, first_40


def test_ordering_key_is_fifo_even_across_retries(make_engine, sandbox: Sandbox) -> None:
    sandbox.set_faults("primary", error_rate=0.5, error_status=503)
    engine = make_engine(rules=RuleSet({"step": lambda n: Plan("push", ["primary", "backup"], "{n}")}))
    receipts = [engine.send("step", "u1", {"n": i}, ordering_key="order-42") for i in range(15)]
    assert engine.wait_idle(60)
    sent = [m["body"]["data"]["n"] for m in sandbox.messages() if m["body"]["to"]["id"] == "u1"]
    assert sent == list(range(15))
    assert all(engine.status(r.id).state == "completed" for r in receipts)


def test_expiry_before_the_send_time_arrives(engine: Engine, sandbox: Sandbox) -> None:
    with pytest.raises(herald.ValidationError, match="expires_at: must be later than send_at"):
        engine.send("otp", "u1", {"code": "1"}, send_at=time.time() + 5, expires_at=time.time() + 2)


def test_idempotency_repeat_returns_the_first_and_sends_once(engine: Engine, sandbox: Sandbox) -> None:
    first = engine.send("otp", "u1", {"code": "42"}, idempotency_key="reset-7")
    again = engine.send("otp", "u1", {"code": "42"}, idempotency_key="reset-7")
    assert again.id == first.id and again.duplicate
    # Same key for another recipient or type is a different notification.
    other = engine.send("otp", "u2", {"code": "42"}, idempotency_key="reset-7")
    assert other.id != first.id
    with pytest.raises(herald.IdempotencyConflict, match="idempotency_key: 'reset-7'"):
        engine.send("otp", "u1", {"code": "43"}, idempotency_key="reset-7")
    assert engine.wait_idle(10)
    after = engine.send("otp", "u1", {"code": "42"}, idempotency_key="reset-7")
    assert after.id == first.id and after.state == "completed"
    to_u1 = [m for m in sandbox.messages() if m["body"]["to"]["id"] == "u1"]
    assert len(to_u1) == 1
    assert "deduplicated" in events_of(engine, first.id)


def test_idempotency_survives_a_restart(make_engine, sandbox: Sandbox, tmp_path) -> None:
    engine = make_engine(data_dir=tmp_path / "idem")
    first = engine.send("otp", "u1", {"code": "1"}, idempotency_key="k")
    assert engine.wait_idle(10)
    engine.close()
    again = make_engine(data_dir=tmp_path / "idem")
    repeat = again.send("otp", "u1", {"code": "1"}, idempotency_key="k")
    assert repeat.id == first.id and repeat.duplicate and repeat.state == "completed"
    with pytest.raises(herald.IdempotencyConflict):
        again.send("otp", "u1", {"code": "2"}, idempotency_key="k")
    assert again.wait_idle(10)
    assert len(sandbox.messages()) == 1


def test_idempotency_within_one_batch(engine: Engine, sandbox: Sandbox) -> None:
    item = {"type": "otp", "recipient": "u1", "data": {"code": "1"}, "idempotency_key": "same"}
    a, b = engine.send_many([item, dict(item)])
    assert a.id == b.id and b.duplicate and not a.duplicate
    with pytest.raises(herald.IdempotencyConflict, match=r"notifications\[1\]"):
        engine.send_many([dict(item, idempotency_key="x"), dict(item, idempotency_key="x", data={"code": "2"})])
    assert engine.wait_idle(10)
    assert len(sandbox.messages()) == 1


def test_a_batch_with_repeats_among_new_ones_sends_each_new_one_once(engine: Engine, sandbox: Sandbox) -> None:
    first = engine.send("otp", "u0", {"code": "0"}, idempotency_key="k0")

    def item(i: int, key: str) -> dict:
        return {"type": "otp", "recipient": f"u{i}", "data": {"code": str(i)}, "idempotency_key": key}

    # A repeat of an earlier call, a repeat inside the batch, new ones before, between and after.
    results = engine.send_many([item(1, "k1"), item(0, "k0"), item(2, "k2"), item(1, "k1"), item(3, "k3")])
    assert [r.duplicate for r in results] == [False, True, False, True, False]
    assert results[1].id == first.id and results[3].id == results[0].id
    assert len({results[0].id, results[2].id, results[4].id, first.id}) == 4
    assert engine.wait_idle(10)
    assert sorted(m["body"]["to"]["id"] for m in sandbox.messages()) == ["u0", "u1", "u2", "u3"]
    for r in (results[0], results[2], results[4]):
        assert engine.status(r.id).state == "completed"


def test_failover_to_the_next_provider(make_engine, sandbox: Sandbox) -> None:
    sandbox.set_faults("primary", error_rate=1.0, error_status=500)
    engine = make_engine()
    r = engine.send("otp", "u1", {"code": "1"})
    status = engine.wait(r.id, timeout=10)
    assert status.state == "completed" and status.provider == "backup"
    assert status.attempts == 3
    kinds = events_of(engine, r.id)
    assert kinds.count("attempt_failed") == 2 and "retry_scheduled" in kinds and "failed_over" in kinds
    assert len(sandbox.messages("backup")) == 1 and sandbox.messages("primary") == []


def test_permanent_error_fails_over_without_retrying(make_engine, sandbox: Sandbox) -> None:
    sandbox.set_faults("primary", error_rate=1.0, error_status=401)
    engine = make_engine()
    r = engine.send("otp", "u1", {"code": "1"})
    status = engine.wait(r.id, timeout=10)
    assert status.provider == "backup" and status.attempts == 2
    assert "retry_scheduled" not in events_of(engine, r.id)


def test_all_providers_failing_dead_letters_and_retry_requeues(make_engine, sandbox: Sandbox) -> None:
    sandbox.set_faults("*", error_rate=1.0, error_status=502)
    engine = make_engine()
    r = engine.send("otp", "u1", {"code": "1"})
    status = engine.wait(r.id, timeout=10)
    assert status.state == "dead_lettered"
    assert "every provider failed" in status.last_error and "HTTP 502" in status.last_error
    assert [d.id for d in engine.dead_letters()] == [r.id]
    with pytest.raises(herald.InvalidState):
        engine.retry(engine.send("otp", "u2", {"code": "1"}, send_at=time.time() + 60).id)
    sandbox.clear_faults()
    engine.retry(r.id)
    status = engine.wait(r.id, timeout=10)
    assert status.state == "completed" and status.provider == "primary"
    assert "retried" in events_of(engine, r.id)
    assert engine.dead_letters() == []


def test_invalid_recipient_without_an_address_is_dead_lettered_without_failover(make_engine, sandbox: Sandbox) -> None:
    sandbox.set_faults("primary", error_rate=1.0, error_status=400, error_code="recipient_invalid")
    engine = make_engine()
    r = engine.send("otp", "u1", {"code": "1"})
    status = engine.wait(r.id, timeout=10)
    assert status.state == "dead_lettered" and status.last_error.startswith("recipient invalid")
    assert sandbox.messages("backup") == []


def test_a_rule_that_raises_dead_letters_only_its_notification(make_engine, sandbox: Sandbox) -> None:
    def picky(n):
        if n.data["n"] == 3:
            raise KeyError("no template for n=3")
        return Plan("sms", ["primary"])

    engine = make_engine(rules=RuleSet({"picky": picky}))
    receipts = [engine.send("picky", f"u{i}", {"n": i}) for i in range(6)]
    assert engine.wait_idle(10)
    states = [engine.status(r.id).state for r in receipts]
    assert states == ["completed"] * 3 + ["dead_lettered"] + ["completed"] * 2
    reason = engine.status(receipts[3].id).last_error
    assert "raised KeyError" in reason and "no template for n=3" in reason


def test_unknown_provider_is_dead_lettered_naming_the_rule(make_engine) -> None:
    def typo(n):
        return Plan("sms", ["primry"])

    engine = make_engine(rules=RuleSet({"typo": typo}))
    b = engine.send("typo", "u1")
    assert engine.wait(b.id).last_error == (
        "rule test_unknown_provider_is_dead_lettered_naming_the_rule.<locals>.typo:"
        " plan.providers: unknown provider 'primry'")


def test_rules_returning_garbage_are_reported(make_engine) -> None:
    engine = make_engine(rules=RuleSet({"bad": lambda n: {"channel": "sms"}}))
    status = engine.wait(engine.send("bad", "u1").id)
    assert status.state == "dead_lettered" and "returned dict, not a Plan" in status.last_error
