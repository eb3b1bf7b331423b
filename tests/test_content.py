"""A step's content end to end: every field rendered from the notification's data and carried to
the provider, and a template variable with neither a value nor a default ending the step with a
named reason instead of a blank message. A real engine on SQLite, the sandbox over HTTP."""

from __future__ import annotations

from typing import Any

from herald import Engine, Plan, RuleSet, Sandbox, Step
from provider_keys import private_key_pem, service_account

RECIPIENT = {"id": "u1", "phone": "+15550001", "email": "u1@example.com", "push_token": "tok-1"}
MISSING = "template: missing variable 'code'"


def content_engine(tmp_path: Any, sandbox: Sandbox, rules: dict[str, Any]) -> Engine:
    providers = [sandbox.provider(name, concurrency=8, max_attempts=1) for name in ("sms-a", "email-a", "push-a")]
    return Engine(tmp_path / "data", rules=RuleSet(rules), providers=providers, retry_base=0.02, retry_max=0.2,
                  close_timeout=3.0)


def test_a_missing_variable_dead_letters_with_the_reason_and_sends_nothing(tmp_path, sandbox: Sandbox) -> None:
    rules = {"otp": lambda n: Plan("sms", ["sms-a"], "Your code is {code}")}
    with content_engine(tmp_path, sandbox, rules) as engine:
        r = engine.send("otp", RECIPIENT, {"name": "Ada"})
        status = engine.wait(r.id, timeout=10)
        assert status.state == "dead_lettered"
        assert status.last_error == MISSING
        trace = engine.trace(r.id)
        assert trace[-1].event == "dead_lettered" and trace[-1].detail == MISSING
        assert "sending" not in [e.event for e in trace]
        assert [d.id for d in engine.dead_letters()] == [r.id]
        # The same rule with the variable given sends as before.
        ok = engine.send("otp", RECIPIENT, {"code": "123"})
        assert engine.wait(ok.id, timeout=10).state == "completed"
        assert [m["body"]["text"] for m in sandbox.messages()] == ["Your code is 123"]


def test_a_missing_variable_in_another_field_ends_the_step_too(tmp_path, sandbox: Sandbox) -> None:
    rules = {"mail": lambda n: Plan("email", ["email-a"], "Hello", subject="Order {order}", html="<p>{code}</p>")}
    with content_engine(tmp_path, sandbox, rules) as engine:
        r = engine.send("mail", RECIPIENT, {"order": "A-1"})
        status = engine.wait(r.id, timeout=10)
        assert status.state == "dead_lettered" and status.last_error == MISSING
        assert sandbox.messages() == []


def test_a_step_whose_template_misses_a_variable_falls_back_to_the_next(tmp_path, sandbox: Sandbox) -> None:
    def plan(n: Any) -> Plan:
        return Plan.cascade(
            Step("sms", ["sms-a"], text="Your code is {code}"),
            Step("email", ["email-a"], subject="Sign-in for {name}", text="Hello {name}, use the app to sign in"),
        )

    with content_engine(tmp_path, sandbox, {"signin": plan}) as engine:
        r = engine.send("signin", RECIPIENT, {"name": "Ada"})
        status = engine.wait(r.id, timeout=10)
        assert status.state == "completed" and status.channel == "email"
        trace = engine.trace(r.id)
        failed = [e for e in trace if e.event == "step_failed"]
        assert [(e.step, e.detail) for e in failed] == [(0, MISSING)]
        started = [e for e in trace if e.event == "step_started"]
        assert "step 0 failed" in started[1].detail
        bodies = [m["body"] for m in sandbox.messages()]
        assert [b["channel"] for b in bodies] == ["email"]
        assert bodies[0]["subject"] == "Sign-in for Ada" and bodies[0]["text"] == "Hello Ada, use the app to sign in"


def test_every_content_field_reaches_the_provider_rendered(tmp_path, sandbox: Sandbox) -> None:
    rules = {
        "order": lambda n: Plan.all(
            Step("email", ["email-a"], text="Order {order.id} shipped", subject="Order {order.id}",
                 html="<p>Order <b>{order.id}</b> for {name|you}</p>"),
            Step("push", ["push-a"], text="Order {order.id} shipped", title="Hi {name|there}",
                 image="https://img.test/{order.id}.png", data={"screen": "orders", "order": "{order.id}"}),
        )
    }
    with content_engine(tmp_path, sandbox, rules) as engine:
        r = engine.send("order", RECIPIENT, {"order": {"id": 42}, "name": "Ada"})
        assert engine.wait(r.id, timeout=10).state == "completed"
        assert engine.wait_idle(10)
        by_channel = {m["body"]["channel"]: m for m in sandbox.messages()}
        mail, push = by_channel["email"], by_channel["push"]
        assert mail["body"]["subject"] == "Order 42"
        assert mail["body"]["html"] == "<p>Order <b>42</b> for Ada</p>"
        assert "title" not in mail["body"] and "payload" not in mail["body"]
        assert push["body"]["title"] == "Hi Ada"
        assert push["body"]["image"] == "https://img.test/42.png"
        assert push["body"]["payload"] == {"screen": "orders", "order": "42"}
        assert "subject" not in push["body"] and "html" not in push["body"]
        # The sandbox lists them with the message.
        assert mail["subject"] == "Order 42" and mail["html"] == "<p>Order <b>42</b> for Ada</p>"
        assert push["title"] == "Hi Ada" and push["payload"] == {"screen": "orders", "order": "42"}


def test_a_sendgrid_batch_carries_html_and_a_member_missing_a_variable_ends_alone(tmp_path, sandbox: Sandbox) -> None:
    def digest(n: Any) -> Plan:
        return Plan("email", ["mail"], "Hello {name}", subject="Digest for {name}",
                    html="<p>Hello <b>{name}</b>, {count} new</p>", batch=True)

    mail = {"name": "mail", "kind": "sendgrid", "url": sandbox.url, "settings": {"from": "noreply@herald.test"},
            "secrets": {"api_key": "SG.test-key"}}
    with Engine(tmp_path / "data", rules=RuleSet({"digest": digest}), providers=[mail], close_timeout=3.0) as engine:
        items = [{"type": "digest", "recipient": {"id": f"d{i}", "email": f"user{i}@example.com"},
                  "data": {"name": f"N{i}", "count": i}, "priority": "bulk"} for i in range(40)]
        del items[7]["data"]["count"]  # only the html needs it
        receipts = engine.send_many(items)
        assert engine.wait_idle(30)
        states = {r.id: engine.status(r.id) for r in receipts}
        bad = receipts[7].id
        assert states[bad].state == "dead_lettered" and states[bad].last_error == "template: missing variable 'count'"
        assert all(s.state == "completed" for i, s in states.items() if i != bad)
        records = {m["to"]: m for m in sandbox.messages() if m.get("service") == "sendgrid"}
        assert len(records) == 39 and "user7@example.com" not in records
        assert records["user3@example.com"]["html"] == "<p>Hello <b>N3</b>, 3 new</p>"
        assert records["user3@example.com"]["text"] == "Hello N3"
        assert records["user3@example.com"]["subject"] == "Digest for N3"


def test_push_content_reaches_fcm_and_apns_as_they_document_it(tmp_path, sandbox: Sandbox) -> None:
    def push(n: Any) -> Plan:
        return Plan.all(*(Step("push", [p], text="Order {order} shipped", title="Hi {name}",
                               image="https://img.test/{order}.png", data={"order": "{order}"})
                          for p in ("fcm", "apns")))

    providers = [
        {"name": "fcm", "kind": "fcm", "url": sandbox.url, "secrets": {"service_account": service_account(tmp_path)}},
        {"name": "apns", "kind": "apns", "url": sandbox.url,
         "settings": {"key_id": "KEY1234567", "team_id": "TEAM123456", "topic": "test.herald.app", "http2": "off"},
         "secrets": {"private_key": private_key_pem("ec", tmp_path)}},
    ]
    recipient = {"id": "u1", "fcm_token": "tok-abc", "apns_token": "ab" * 32}
    with Engine(tmp_path / "data", rules=RuleSet({"push": push}), providers=providers, close_timeout=3.0) as engine:
        r = engine.send("push", recipient, {"order": 42, "name": "Ada"})
        assert engine.wait(r.id, timeout=10).state == "completed"
        assert engine.wait_idle(10)
        by_service = {m["service"]: m for m in sandbox.messages()}
        fcm = by_service["fcm"]["body"]["message"]
        assert fcm["notification"] == {"title": "Hi Ada", "body": "Order 42 shipped", "image": "https://img.test/42.png"}
        assert fcm["data"]["order"] == "42" and fcm["apns"]["payload"]["aps"]["mutable-content"] == 1
        assert by_service["fcm"]["subject"] == "Hi Ada"
        apns = by_service["apns"]["body"]
        assert apns["aps"] == {"alert": {"title": "Hi Ada", "body": "Order 42 shipped"}, "mutable-content": 1}
        assert apns["image"] == "https://img.test/42.png" and apns["order"] == "42"
