"""The engine on a ManualClock: delays, Retry-After and expiry follow the clock a test moves, not
real time, so these tests wait for nothing but the engine's own work."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

import herald
from herald import ManualClock, Plan, RuleSet, Sandbox

from support import events_of, wait_for


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_send_at_waits_for_the_engines_clock(make_engine, sandbox: Sandbox, clock: ManualClock) -> None:
    engine = make_engine(clock=clock)
    start = clock.now()
    r = engine.send("otp", "u1", {"code": "1"}, send_at=timedelta(seconds=60))
    assert engine.status(r.id).send_at == pytest.approx(start + 60, abs=0.002)
    engine.flush()  # the loop has taken it in: it waits in the scheduler for its time
    assert engine.status(r.id).state == "queued"
    clock.advance(59.9)
    engine.flush()
    assert engine.status(r.id).state == "queued"
    assert sandbox.messages() == []
    clock.advance(0.1)
    assert engine.wait(r.id, timeout=10).state == "completed"
    sending = next(e for e in engine.trace(r.id) if e.event == "sending")
    assert sending.at >= start + 60  # stamped by the engine's clock


def test_retry_after_waits_for_the_clock(make_engine, sandbox: Sandbox, clock: ManualClock) -> None:
    sandbox.set_faults("primary", rate_limit_rate=1.0, retry_after_s=30)
    engine = make_engine(clock=clock, rules=RuleSet({"solo": lambda n: Plan("sms", ["primary"])}))
    start = clock.now()
    r = engine.send("solo", "u1")
    status = wait_for(lambda: (s := engine.status(r.id)).state == "retry_scheduled" and s, what="the first 429")
    assert status.next_attempt_at == pytest.approx(start + 30, abs=0.01)
    sandbox.clear_faults()
    clock.advance(29.5)
    engine.flush()
    assert engine.status(r.id).state == "retry_scheduled"
    assert len(sandbox.messages()) == 0  # the 429 answer is not a recorded message
    clock.advance(0.5)
    assert engine.wait(r.id, timeout=10).state == "completed"
    trace = engine.trace(r.id)
    assert [e.http_status for e in trace if e.event == "attempt_failed"] == [429]
    assert next(e for e in trace if e.event == "retry_scheduled").detail == "in 30000 ms (Retry-After 30000 ms)"


def test_a_notification_past_its_expiry_on_the_clock_is_never_sent(make_engine, sandbox: Sandbox,
                                                                    clock: ManualClock) -> None:
    engine = make_engine(clock=clock)
    r = engine.send("otp", "u1", {"code": "1"}, send_at=timedelta(seconds=5), expires_at=timedelta(seconds=10))
    engine.flush()
    clock.advance(11)  # its time came and went while nothing moved the clock
    status = engine.wait(r.id, timeout=10)
    assert status.state == "expired"
    assert sandbox.messages() == []
    assert "sending" not in events_of(engine, r.id)


def test_retries_stop_at_expires_at_and_nothing_is_sent_late(make_engine, sandbox: Sandbox,
                                                             clock: ManualClock) -> None:
    sandbox.set_faults("primary", error_rate=1.0, error_status=503)
    engine = make_engine(clock=clock, rules=RuleSet({"solo": lambda n: Plan("sms", ["primary"])}),
                         # its circuit breaker off: this is about retries meeting the expiry
                         providers=[sandbox.provider("primary", max_attempts=50, circuit_consecutive_failures=0,
                                                     circuit_failure_rate=0)], retry_base=0.1, retry_max=0.2)
    expires_at = clock.now() + 0.8
    r = engine.send("solo", "u1", expires_at=expires_at)
    for attempt in range(1, 50):
        status = wait_for(lambda: (s := engine.status(r.id)).attempts == attempt and s.state != "sending" and s,
                          what=f"the answer to attempt {attempt}")
        if status.final:
            break
        assert status.state == "retry_scheduled"
        clock.advance(status.next_attempt_at - clock.now())
    assert status.state == "expired"
    assert 3 <= status.attempts <= 9  # 0.8 s of 0.05–0.2 s backoffs on the engine's clock
    trace = engine.trace(r.id)
    assert trace[-1].event == "expired"
    assert all(e.at < expires_at for e in trace if e.event == "sending")
    assert sandbox.messages() == []


def test_the_clock_only_moves_forward() -> None:
    clock = ManualClock(start=1_000_000)
    clock.advance(0.25)
    assert clock.now() == 1_000_000.25
    with pytest.raises(herald.ConfigError, match="seconds"):
        clock.advance(-1)
    with pytest.raises(herald.ConfigError, match="start"):
        ManualClock(start=-5)
    with pytest.raises(herald.ConfigError, match="clock"):
        herald.Engine(clock="now")  # type: ignore[arg-type]


def test_held_events_ride_with_the_next_write_or_are_written_within_a_quarter_second(
        make_engine, sandbox: Sandbox, clock: ManualClock, tmp_path) -> None:
    # One token a second: the first goes at once, the second is routed and waits for the clock.
    engine = make_engine(clock=clock, data_dir=tmp_path / "data",
                         rules=RuleSet({"solo": lambda n: Plan("sms", ["primary"])}),
                         providers=[sandbox.provider("primary", rate_per_s=1.0)])
    first = engine.send("solo", "u1")
    second = engine.send("solo", "u2")
    wait_for(lambda: engine.status(first.id).state == "completed", what="the first to be sent")
    # Nothing is due yet but the held "routed" of the second: a quarter second of the clock writes it.
    clock.advance(0.25)
    wait_for(lambda: "routed" in events_of(engine, second.id), what="the held routed event to be written")
    assert engine.status(second.id).state == "queued"  # still waiting for its token
    clock.advance(1.0)
    # Not engine.wait(): its flush() would write the held "sending" mark before the answer.
    wait_for(lambda: engine.status(second.id).state == "completed", what="the second to be sent")
    for r in (first, second):
        assert events_of(engine, r.id) == ["received", "queued", "routed", "sending", "accepted", "completed"]
    engine.close()
    con = sqlite3.connect(tmp_path / "data" / "herald.db")
    rows = dict(con.execute("SELECT nid, count(*) FROM events WHERE nid IN (?, ?) GROUP BY nid", (first.id, second.id)))
    # first: routed, sending (held until the answer), accepted and completed in one row; second:
    # routed alone, then the other three.
    assert rows == {first.id: 1, second.id: 2}
    flat = con.execute("SELECT kind FROM all_events WHERE nid = ? ORDER BY seq", (first.id,)).fetchall()
    assert [k for (k,) in flat] == ["routed", "sending", "accepted", "completed"]


def test_a_sending_mark_waits_for_the_answer_or_is_written_within_a_quarter_second(
        make_engine, sandbox: Sandbox, clock: ManualClock, tmp_path) -> None:
    engine = make_engine(clock=clock, data_dir=tmp_path / "data",
                         rules=RuleSet({"solo": lambda n: Plan("sms", ["primary"])}),
                         providers=[sandbox.provider("primary")])
    sandbox.set_faults("primary", latency_ms=1500)
    r = engine.send("solo", "u1")
    wait_for(lambda: engine.stats()["in_flight"] == 1, what="the request to be in flight")
    # "sending" is durable in the intake journal; the store shows it once the answer comes, or
    # after a quarter second of the engine's clock without one.
    assert engine.status(r.id).state == "queued"
    clock.advance(0.25)
    wait_for(lambda: engine.status(r.id).state == "sending", what="the held mark to be written")
    assert events_of(engine, r.id) == ["received", "queued", "routed", "sending"]
    wait_for(lambda: engine.status(r.id).state == "completed", what="the answer")
    engine.close()
    con = sqlite3.connect(tmp_path / "data" / "herald.db")
    rows = con.execute("SELECT count(*) FROM events WHERE nid = ?", (r.id,)).fetchone()[0]
    assert rows == 2  # routed with sending; accepted with completed
    assert sum(f.stat().st_size for f in (tmp_path / "data" / "journal").iterdir()) == 0
