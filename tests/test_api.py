"""The public API: receipts, status, trace, validation errors that name the field, lifetimes."""

from __future__ import annotations

import asyncio
import gc
from datetime import datetime, timedelta, timezone

import pytest

import herald
from herald import Engine, Sandbox

from support import events_of


def test_send_returns_a_durable_receipt_and_the_trace_tells_the_story(engine: Engine, sandbox: Sandbox) -> None:
    receipt = engine.send("otp", {"id": "u1", "phone": "+15550100"}, {"code": "481516"}, priority="critical")
    assert isinstance(receipt.id, int) and receipt.state == "queued" and receipt.duplicate is False
    status = engine.wait(receipt.id, timeout=10)
    assert status.state == "completed"
    assert status.provider == "primary"
    assert status.provider_message_id and status.provider_message_id.startswith("sbx-")
    assert status.attempts == 1
    assert events_of(engine, receipt.id) == ["received", "queued", "routed", "sending", "accepted", "completed"]
    accepted = [e for e in engine.trace(receipt.id) if e.event == "accepted"][0]
    assert accepted.http_status == 202 and accepted.latency_ms is not None and accepted.latency_ms > 0
    [message] = sandbox.messages("primary")
    assert message["body"]["text"] == "Your code is 481516"
    assert message["body"]["to"] == {"id": "u1", "phone": "+15550100"}
    assert message["headers"]["x-herald-id"] == str(receipt.id)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"type": ""}, "type", id="empty-type"),
        pytest.param({"type": "bad type"}, "type", id="type-with-space"),
        pytest.param({"recipient": {"email": "a@b.c"}}, "recipient.id", id="recipient-without-id"),
        pytest.param({"recipient": 42}, "recipient", id="recipient-wrong-type"),
        pytest.param({"data": ["not", "a", "dict"]}, "data", id="data-not-dict"),
        pytest.param({"data": {"x": object()}}, "data.x", id="data-not-json"),
        pytest.param({"priority": "urgent"}, "priority", id="unknown-priority"),
        pytest.param({"expires_at": 1.0}, "expires_at", id="expired-already"),
        pytest.param({"send_at": datetime(2030, 1, 1)}, "send_at", id="naive-datetime"),
        pytest.param({"send_at": "tomorrow"}, "send_at", id="send-at-string"),
        pytest.param({"idempotency_key": "k" * 300}, "idempotency_key", id="key-too-long"),
    ],
)
def test_bad_input_names_the_field_and_reason(engine: Engine, kwargs: dict, field: str) -> None:
    args = {"type": "otp", "recipient": "u1", "data": {"code": "1"}}
    args.update(kwargs)
    with pytest.raises(herald.ValidationError) as info:
        engine.send(args.pop("type"), args.pop("recipient"), args.pop("data"), **args)
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")
    assert isinstance(info.value, ValueError)


def test_send_many_rejects_the_whole_batch_naming_the_item(engine: Engine, sandbox: Sandbox) -> None:
    batch = [{"type": "otp", "recipient": f"u{i}", "data": {"code": str(i)}} for i in range(5)]
    batch[3]["priority"] = "soonish"
    with pytest.raises(herald.ValidationError) as info:
        engine.send_many(batch)
    assert info.value.field == "notifications[3].priority"
    batch[3]["surprise"] = 1
    del batch[3]["priority"]
    with pytest.raises(herald.ValidationError, match=r"notifications\[3\]\.surprise: unknown field"):
        engine.send_many(batch)
    assert engine.wait_idle(5)
    assert sandbox.messages() == []  # nothing of a rejected batch was accepted


def test_send_many_accepts_everything_once(engine: Engine, sandbox: Sandbox) -> None:
    batch = [{"type": "news", "recipient": f"u{i}", "priority": "bulk"} for i in range(300)]
    receipts = engine.send_many(batch, chunk=128)
    assert len({r.id for r in receipts}) == 300
    assert engine.wait_idle(20)
    assert len(sandbox.messages("primary")) == 300
    assert all(engine.status(r.id).state == "completed" for r in receipts[:20])


def test_send_many_reads_field_names_made_at_run_time_and_none_as_absent(engine: Engine, sandbox: Sandbox) -> None:
    # Names joined at run time are equal to the field names without being the same objects, and a
    # str subclass is a name too; None stands for a field not given.
    class Name(str):
        pass

    made = {"".join(["ty", "pe"]): "news", "".join(["reci", "pient"]): {"id": "u1"},
            Name("priority"): "bulk", "idempotency_key": None, "send_at": None, "tenant": None}
    receipts = engine.send_many([made, {"type": "news", "recipient": "u2", "ordering_key": None}])
    assert engine.wait_idle(20)
    first = engine.status(receipts[0].id)
    assert (first.recipient_id, first.priority, first.state) == ("u1", "bulk", "completed")
    assert engine.status(receipts[1].id).recipient_id == "u2"
    with pytest.raises(herald.ValidationError, match=r"notifications\[0\]\.typ: unknown field"):
        engine.send_many([{"".join(["ty", "p"]): "news", "recipient": "u3"}])


def test_delay_accepts_timedelta_datetime_and_epoch(engine: Engine) -> None:
    soon = datetime.now(timezone.utc) + timedelta(seconds=30)
    a = engine.send("otp", "u1", {"code": "1"}, send_at=timedelta(seconds=30))
    b = engine.send("otp", "u2", {"code": "1"}, send_at=soon)
    c = engine.send("otp", "u3", {"code": "1"}, send_at=soon.timestamp())
    for r in (a, b, c):
        status = engine.status(r.id)
        assert status.send_at == pytest.approx(soon.timestamp(), abs=2)
    assert engine.cancel(a.id) is True
    assert engine.status(a.id).state == "cancelled"
    assert engine.cancel(a.id) is False


def test_asyncio_twins(engine: Engine) -> None:
    async def main() -> str:
        receipt = await engine.asend("otp", "u1", {"code": "7"}, priority="high")
        status = await engine.await_(receipt.id, timeout=10)
        trace = await engine.atrace(receipt.id)
        assert trace[0].event == "received"
        return status.state

    assert asyncio.run(main()) == "completed"


def test_status_of_unknown_id_is_none_and_trace_raises(engine: Engine) -> None:
    assert engine.status(123) is None
    with pytest.raises(herald.NotFound):
        engine.trace(123)
    with pytest.raises(herald.NotFound):
        engine.retry(123)


def test_closed_engine_refuses_work(engine: Engine) -> None:
    engine.close()
    assert engine.closed
    with pytest.raises(herald.EngineClosed):
        engine.send("otp", "u1", {"code": "1"})
    engine.close()  # idempotent


def test_engine_dropped_without_close_stops_cleanly(make_engine, sandbox: Sandbox, tmp_path) -> None:
    engine = Engine(tmp_path / "dropped", rules=make_engine().rules, providers=[sandbox.provider("primary")])
    rid = engine.send("solo", "u1").id
    data_dir = engine.data_dir
    del engine
    gc.collect()
    # The store is closed and reusable: a new engine finishes whatever was left.
    with Engine(data_dir, rules=herald.RuleSet({"solo": lambda n: herald.Plan("sms", ["primary"])}),
                providers=[sandbox.provider("primary")]) as again:
        assert again.wait(rid, timeout=10).state == "completed"


def test_rules_see_the_notification(make_engine, sandbox: Sandbox) -> None:
    seen = []

    def rule(n):
        seen.append((n.type, n.recipient_id, n.recipient, n.data, n.priority, n.idempotency_key))
        return herald.Plan("sms", ["primary"], "hi {name}")

    engine = make_engine(rules=herald.RuleSet({"hello": rule}))
    r = engine.send("hello", {"id": "u9", "locale": "fr"}, {"name": "Zoé"}, priority="high", idempotency_key="k1")
    assert engine.wait(r.id).state == "completed"
    assert seen == [("hello", "u9", {"id": "u9", "locale": "fr"}, {"name": "Zoé"}, "high", "k1")]
    assert sandbox.messages()[0]["body"]["text"] == "hi Zoé"


def test_bad_provider_configuration_fails_at_start(tmp_path) -> None:
    with pytest.raises(herald.ConfigError, match=r"providers\.sms\.kind"):
        Engine(tmp_path, providers=[{"name": "sms", "kind": "pigeon", "url": "http://127.0.0.1:1"}])
    with pytest.raises(herald.ConfigError, match=r"providers\.sms\.url"):
        Engine(tmp_path, providers={"sms": {"kind": "sandbox", "url": "localhost"}})
    with pytest.raises(herald.ConfigError, match=r"providers\.sms\.colour: unknown field"):
        Engine(tmp_path, providers={"sms": {"kind": "sandbox", "url": "http://x", "colour": "red"}})
    with pytest.raises(herald.ConfigError, match="durability"):
        Engine(tmp_path, durability="maybe")  # type: ignore[arg-type]


def test_providers_from_a_toml_file(tmp_path, sandbox: Sandbox) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(f'[providers.primary]\nkind = "sandbox"\nurl = "{sandbox.url}"\nconcurrency = 4\n')
    rules = herald.RuleSet({"solo": lambda n: herald.Plan("sms", ["primary"])})
    with Engine(tmp_path / "d", rules=rules, providers=config) as engine:
        assert engine.wait(engine.send("solo", "u1").id).state == "completed"


def test_fsync_durability_works(make_engine, tmp_path) -> None:
    engine = make_engine(durability="fsync", data_dir=tmp_path / "fsync")
    assert engine.wait(engine.send("otp", "u1", {"code": "1"}).id).state == "completed"
