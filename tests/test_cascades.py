"""Plans with many steps, end to end: a real engine on SQLite sending to the sandbox over HTTP, the
deadlines on the engine's ManualClock so nothing waits on real time."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from herald import Engine, ManualClock, Plan, RuleSet, Sandbox, Step, ValidationError

from support import events_of, wait_for

RECIPIENT = {"id": "u1", "phone": "+15550001", "email": "u1@example.com", "push_token": "tok-1"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def cascade_engine(tmp_path: Any, sandbox: Sandbox, rules: dict[str, Any], **options: Any) -> Engine:
    providers = [sandbox.provider(name, concurrency=8, max_attempts=1)
                 for name in ("sms-a", "sms-b", "email-a", "push-a")]
    return Engine(tmp_path / "data", rules=RuleSet(rules), providers=providers, retry_base=0.02, retry_max=0.2,
                  close_timeout=3.0, **options)


def otp(n: Any) -> Plan:
    return Plan.cascade(
        Step("sms", ["sms-a", "sms-b"], text="Your code is {code}"),
        Step("email", ["email-a"], subject="Your code", text="Your code is {code}", after="30s"),
    )


def channels_sent(sandbox: Sandbox) -> list[str]:
    return [m["body"]["channel"] for m in sandbox.messages()]


def test_otp_goes_by_sms_and_cancels_the_email(tmp_path, sandbox: Sandbox) -> None:
    with cascade_engine(tmp_path, sandbox, {"otp": otp}) as engine:
        r = engine.send("otp", RECIPIENT, {"code": "123456"})
        status = engine.wait(r.id, timeout=10)
        assert status.state == "completed"
        assert channels_sent(sandbox) == ["sms"]
        message = sandbox.messages()[0]["body"]
        assert message["id"] == r.id and message["step"] == 0 and message["text"] == "Your code is 123456"
        kinds = events_of(engine, r.id)
        assert kinds.count("step_started") == 1 and kinds.count("step_cancelled") == 1
        assert kinds[-1] == "completed"
        sending = next(e for e in engine.trace(r.id) if e.event == "sending")
        assert sending.provider == "sms-a"


def test_otp_fails_over_between_sms_providers_then_falls_back_to_email(tmp_path, sandbox: Sandbox) -> None:
    sandbox.set_faults("sms-a", error_rate=1.0, error_status=400)
    sandbox.set_faults("sms-b", error_rate=1.0, error_status=400)
    with cascade_engine(tmp_path, sandbox, {"otp": otp}) as engine:
        r = engine.send("otp", RECIPIENT, {"code": "42"})
        assert engine.wait(r.id, timeout=10).state == "completed"
        assert channels_sent(sandbox) == ["email"]
        trace = engine.trace(r.id)
        kinds = [e.event for e in trace]
        assert kinds.count("failed_over") == 1  # sms-a → sms-b inside the SMS step
        failed = next(e for e in trace if e.event == "step_failed")
        assert failed.detail.startswith("every provider failed")
        started = [e for e in trace if e.event == "step_started"]
        assert [e.detail.split(";")[0] for e in started] == ["sms via sms-a,sms-b", "email via email-a"]
        assert "step 0 failed" in started[1].detail


def test_every_step_failing_dead_letters_the_notification(tmp_path, sandbox: Sandbox) -> None:
    sandbox.set_faults("*", error_rate=1.0, error_status=400)
    with cascade_engine(tmp_path, sandbox, {"otp": otp}) as engine:
        r = engine.send("otp", RECIPIENT, {"code": "42"})
        status = engine.wait(r.id, timeout=10)
        assert status.state == "dead_lettered"
        assert "every step failed" in status.last_error
        assert [d.id for d in engine.dead_letters()] == [r.id]  # its steps are not dead letters of their own


def test_a_fallback_starts_at_its_deadline_when_the_first_step_did_not_succeed(tmp_path, sandbox: Sandbox,
                                                                               clock: ManualClock) -> None:
    def order_update(n: Any) -> Plan:
        return Plan.cascade(
            Step("push", ["push-a"], title="Order {order}", text="It is {status}", success="read"),
            Step("email", ["email-a"], subject="Order {order}", text="It is {status}", after="10m"),
        )

    with cascade_engine(tmp_path, sandbox, {"order": order_update}, clock=clock) as engine:
        r = engine.send("order", RECIPIENT, {"order": "A1", "status": "shipped"})
        wait_for(lambda: channels_sent(sandbox) == ["push"], what="the push")
        engine.flush()
        clock.advance(599)
        engine.flush()
        assert engine.status(r.id).state == "routed"  # accepted, waiting to be read
        assert channels_sent(sandbox) == ["push"]
        clock.advance(1)
        assert engine.wait(r.id, timeout=10).state == "completed"
        assert channels_sent(sandbox) == ["push", "email"]
        started = [e for e in engine.trace(r.id) if e.event == "step_started"]
        assert "did not succeed within 600 s" in started[1].detail


def test_a_read_push_cancels_the_email(tmp_path, sandbox: Sandbox, clock: ManualClock) -> None:
    def order_update(n: Any) -> Plan:
        return Plan.cascade(
            Step("push", ["push-a"], text="Order {order}", success="read"),
            Step("email", ["email-a"], text="Order {order}", after="10m"),
        )

    with cascade_engine(tmp_path, sandbox, {"order": order_update}, clock=clock) as engine:
        r = engine.send("order", RECIPIENT, {"order": "A1"})
        wait_for(lambda: channels_sent(sandbox) == ["push"], what="the push")
        engine.acknowledge(r.id, channel="push")
        assert engine.wait(r.id, timeout=10).state == "completed"
        clock.advance(3600)
        engine.flush()
        assert channels_sent(sandbox) == ["push"]
        kinds = events_of(engine, r.id)
        assert "acknowledged" in kinds and "step_cancelled" in kinds
        with pytest.raises(ValidationError, match="channel"):
            engine.acknowledge(r.id, channel="pigeon")


def test_a_security_alert_goes_on_every_channel_at_once(tmp_path, sandbox: Sandbox) -> None:
    def security(n: Any) -> Plan:
        return Plan.all(Step("push", ["push-a"], text="New sign-in"), Step("sms", ["sms-a"], text="New sign-in"),
                        Step("email", ["email-a"], subject="New sign-in", text="New sign-in", html="<b>New</b> sign-in"))

    with cascade_engine(tmp_path, sandbox, {"security": security}) as engine:
        r = engine.send("security", RECIPIENT)
        assert engine.wait(r.id, timeout=10).state == "completed"
        assert sorted(channels_sent(sandbox)) == ["email", "push", "sms"]
        assert events_of(engine, r.id).count("step_started") == 3


def test_the_rule_may_skip_or_defer(tmp_path, sandbox: Sandbox, clock: ManualClock) -> None:
    calls: list[int] = []

    def quiet(n: Any) -> Plan:
        return Plan.skip("quiet hours for this user")

    def later(n: Any) -> Plan:
        calls.append(1)
        if len(calls) == 1:
            return Plan.defer(timedelta(minutes=5))
        return Plan("sms", ["sms-a"], "hello")

    with cascade_engine(tmp_path, sandbox, {"quiet": quiet, "later": later}, clock=clock) as engine:
        s = engine.send("quiet", RECIPIENT)
        status = engine.wait(s.id, timeout=10)
        assert status.state == "skipped"
        assert "quiet hours" in status.last_error
        d = engine.send("later", RECIPIENT)
        wait_for(lambda: "postponed" in events_of(engine, d.id), what="the postponement")
        assert engine.status(d.id).state == "queued"
        clock.advance(299)
        engine.flush()
        assert sandbox.messages() == [] and len(calls) == 1
        clock.advance(1)
        assert engine.wait(d.id, timeout=10).state == "completed"
        assert len(calls) == 2


def test_a_cascade_survives_a_restart_without_resending_a_step(tmp_path, sandbox: Sandbox,
                                                               clock: ManualClock) -> None:
    def order_update(n: Any) -> Plan:
        return Plan.cascade(
            Step("push", ["push-a"], text="Order {order}", success="read"),
            Step("email", ["email-a"], text="Order {order}", after="10m"),
        )

    rules = {"order": order_update}
    engine = cascade_engine(tmp_path, sandbox, rules, clock=clock)
    r = engine.send("order", RECIPIENT, {"order": "A1"})
    wait_for(lambda: channels_sent(sandbox) == ["push"], what="the push")
    engine.flush()
    engine.close()
    clock.advance(601)  # the deadline passes while nothing runs
    with cascade_engine(tmp_path, sandbox, rules, clock=clock) as again:
        assert again.wait(r.id, timeout=10).state == "completed"
        assert channels_sent(sandbox) == ["push", "email"]  # the push is not sent again
        started = [e for e in again.trace(r.id) if e.event == "step_started"]
        assert [e.step for e in started] == [0, 1]


def test_a_step_without_an_address_or_a_provider_for_its_channel_is_skipped(tmp_path, sandbox: Sandbox) -> None:
    providers = [
        {"name": "twilio", "kind": "twilio", "url": sandbox.url,
         "settings": {"account_sid": "AC" + "0" * 32, "from": "+15550000"},
         "secrets": {"auth_token": "twilio-test-token"}},
        sandbox.provider("email-a"),
    ]

    def rule(n: Any) -> Plan:
        return Plan.cascade(Step("sms", ["twilio"], text="hi"), Step("email", ["email-a"], text="hi"))

    with Engine(tmp_path / "data", rules=RuleSet({"t": rule}), providers=providers) as engine:
        r = engine.send("t", {"id": "u2", "email": "u2@example.com"})  # no phone
        assert engine.wait(r.id, timeout=10).state == "completed"
        assert [m["body"]["channel"] for m in sandbox.messages() if "channel" in m.get("body", {})] == ["email"]
        failed = next(e for e in engine.trace(r.id) if e.event == "attempt_failed")
        assert failed.step == 0 and failed.provider == "twilio"
        assert "no address for it on sms" in failed.detail


def test_plans_are_checked_when_made() -> None:
    with pytest.raises(ValidationError, match=r"^Step\.channel: unknown channel 'pigeon'"):
        Step("pigeon", ["a"])
    with pytest.raises(ValidationError, match=r"^Step\.after: '30 parsecs' is not a duration"):
        Step("sms", ["a"], after="30 parsecs")
    with pytest.raises(ValidationError, match=r"^Plan\.steps\[1\]\.after: is required"):
        Plan.cascade(Step("push", ["a"], success="read"), Step("email", ["b"]))
    with pytest.raises(ValidationError, match=r"^Step\.success"):
        Step("sms", ["a"], success="maybe")  # type: ignore[arg-type]
    assert Step("sms", ["a"], after="1.5m").after_ms == 90_000
    assert Plan("sms", ["a"], "hi").providers == ("a",)


def test_an_acknowledgement_at_the_deadline_gives_one_outcome_every_time(tmp_path, sandbox: Sandbox,
                                                                         clock: ManualClock) -> None:
    def order_update(n: Any) -> Plan:
        return Plan.cascade(
            Step("push", ["push-a"], text="Order {order}", success="read"),
            Step("email", ["email-a"], text="Order {order}", after="60s"),
        )

    with cascade_engine(tmp_path, sandbox, {"order": order_update}, clock=clock) as engine:
        outcomes = {"email sent": 0, "email cancelled": 0}
        for i in range(25):
            r = engine.send("order", RECIPIENT, {"order": str(i)})
            wait_for(lambda: engine.status(r.id).state == "routed" and any(
                m["body"]["id"] == r.id for m in sandbox.messages()), what="the push")
            engine.flush()
            # The deadline and the read at the same moment, from two threads.
            go = threading.Barrier(2)

            def read() -> None:
                go.wait()
                engine.acknowledge(r.id, channel="push")

            t = threading.Thread(target=read)
            t.start()
            go.wait()
            clock.advance(60)
            t.join()
            assert engine.wait(r.id, timeout=10).state == "completed"
            trace = engine.trace(r.id)
            started = [e for e in trace if e.event == "step_started" and e.step == 1]
            cancelled = [e for e in trace if e.event == "step_cancelled" and e.step == 1]
            emails = [m for m in sandbox.messages() if m["body"]["id"] == r.id and m["body"]["channel"] == "email"]
            assert len(started) + len(cancelled) == 1, [e.event for e in trace]
            assert len(emails) == len(started)
            assert [e.event for e in trace].count("completed") == 1
            outcomes["email sent" if started else "email cancelled"] += 1
        assert sum(outcomes.values()) == 25
