"""Each adapter against the sandbox speaking that provider's API, asserted on the sandbox's side.

Only the provider's ``url`` points at the sandbox; everything else is the real configuration."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herald import Engine, Plan, RuleSet, Sandbox
from provider_keys import private_key_pem, service_account
from support import wait_for

TWILIO_SID = "AC00000000000000000000000000000001"
TWILIO_TOKEN = "twilio-test-token"
SENDGRID_KEY = "SG.test-key"


def service_messages(sandbox: Sandbox, service: str) -> list[dict[str, Any]]:
    return [m for m in sandbox.messages() if m.get("service", m.get("provider")) == service]


def rules() -> RuleSet:
    return RuleSet(
        {
            "otp": lambda n: Plan("sms", ["sms"], "Your code is {code}"),
            "welcome": lambda n: Plan("email", ["mail"], "Hello {name|there}"),
            "digest": lambda n: Plan("email", ["mail"], "Hello {name|there}, {count} new", batch=True),
            "android": lambda n: Plan("push", ["fcm"], "{text}"),
            "ios": lambda n: Plan("push", ["apns"], "{text}"),
            "alert": lambda n: Plan("chat", ["slack"], "{text}"),
            "hook": lambda n: Plan("webhook", ["hook"], "{text}"),
        }
    )


@pytest.fixture
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture
def providers(sandbox: Sandbox, keys_dir: Path) -> list[dict[str, Any]]:
    return [
        {"name": "sms", "kind": "twilio", "url": sandbox.url, "cost_per_message": 0.0079,
         "settings": {"account_sid": TWILIO_SID, "from": "+15550100"}, "secrets": {"auth_token": TWILIO_TOKEN}},
        {"name": "mail", "kind": "sendgrid", "url": sandbox.url,
         "settings": {"from": "noreply@herald.test", "subject": "From herald"},
         "secrets": {"api_key": SENDGRID_KEY, "verification_key": sandbox.keys()["sendgrid_verification_key"]}},
        {"name": "fcm", "kind": "fcm", "url": sandbox.url,
         "secrets": {"service_account": service_account(keys_dir)}},
        {"name": "apns", "kind": "apns", "url": sandbox.url,
         "settings": {"key_id": "KEY1234567", "team_id": "TEAM123456", "topic": "test.herald.app", "http2": "off"},
         "secrets": {"private_key": private_key_pem("ec", keys_dir)}},
        {"name": "slack", "kind": "slack", "max_attempts": 10,
         "secrets": {"webhook_url": f"{sandbox.url}/services/T000/B000/XXXX"}},
        {"name": "hook", "kind": "webhook", "url": f"{sandbox.url}/hooks/orders",
         "secrets": {"signing_secret": "hook-secret"}},
    ]


@pytest.fixture
def engine(tmp_path: Path, providers: list[dict[str, Any]]) -> Iterator[Engine]:
    with Engine(tmp_path / "data", rules=rules(), providers=providers, receipts="127.0.0.1:0",
                retry_base=0.05, retry_max=1.5, close_timeout=3.0) as e:
        yield e


def receipt_of(engine: Engine, id: int, timeout: float = 10.0) -> str:
    def final() -> str | None:
        engine.flush()
        status = engine.status(id)
        return status.receipt if status and status.receipt else None
    return str(wait_for(final, timeout, f"a receipt for {id}"))


# -- Twilio ---------------------------------------------------------------------------------------


def test_twilio_request_shape_and_delivered_receipt(engine: Engine, sandbox: Sandbox) -> None:
    r = engine.send("otp", {"id": "u1", "phone": "+15551230001"}, {"code": "4242"})
    status = engine.wait(r.id)
    assert status.state == "completed"
    assert status.provider_message_id.startswith("SM")
    assert status.cost == pytest.approx(0.0079)
    [m] = service_messages(sandbox, "twilio")
    body = dict(urllib.parse.parse_qsl(m["body"]))
    assert body["To"] == "+15551230001" and body["From"] == "+15550100"
    assert body["Body"] == "Your code is 4242"
    assert body["StatusCallback"] == f"{engine.receipts_url}/sms?hid={r.id}"
    assert TWILIO_TOKEN not in repr(m), "the auth token leaked into the sandbox's records"
    assert receipt_of(engine, r.id) == "delivered"
    kinds = [e.event for e in engine.trace(r.id)]
    assert kinds.index("completed") < kinds.index("delivered")


def test_twilio_stop_reply_records_the_opt_out_and_suppresses_later_sends(engine: Engine, sandbox: Sandbox) -> None:
    first = engine.send("otp", {"id": "u2", "phone": "+15005550004"}, {"code": "1"})
    assert engine.wait(first.id).state == "suppressed"
    [s] = engine.suppressions()
    assert (s.channel, s.address, s.reason) == ("sms", "+15005550004", "opted_out")
    assert "21610" in s.detail
    before = len(service_messages(sandbox, "twilio"))
    again = engine.send("otp", {"id": "u2", "phone": "+15005550004"}, {"code": "2"})
    status = engine.wait(again.id)
    assert status.state == "suppressed" and status.attempts == 0
    assert len(service_messages(sandbox, "twilio")) == before, "an opted-out number was sent to"
    assert engine.unsuppress("sms", "+15005550004")
    assert engine.suppressions() == []


def test_twilio_invalid_number_is_dead_lettered_and_unusable(engine: Engine) -> None:
    r = engine.send("otp", {"id": "u3", "phone": "+15005550001"}, {"code": "1"})
    status = engine.wait(r.id)
    assert status.state == "dead_lettered"
    assert "21211" in status.last_error
    assert [(s.address, s.reason) for s in engine.suppressions()] == [("+15005550001", "unusable")]


def test_twilio_undelivered_receipt(engine: Engine) -> None:
    r = engine.send("otp", {"id": "u4", "phone": "+15005550006"}, {"code": "1"})
    assert engine.wait(r.id).state == "completed"
    assert receipt_of(engine, r.id) == "failed"
    assert any("30003" in (e.detail or "") for e in engine.trace(r.id) if e.event == "delivery_failed")


# -- SendGrid ---------------------------------------------------------------------------------------


@pytest.fixture
def mail_events(engine: Engine, sandbox: Sandbox) -> None:
    """Points SendGrid's Event Webhook at the engine, as a SendGrid account setting would."""
    sandbox.set_callbacks("sendgrid", url=f"{engine.receipts_url}/mail", delay_ms=20)


@pytest.mark.usefixtures("mail_events")
def test_sendgrid_request_shape_and_delivery(engine: Engine, sandbox: Sandbox) -> None:
    r = engine.send("welcome", {"id": "u5", "email": "ada@example.com"}, {"name": "Ada"})
    status = engine.wait(r.id)
    assert status.state == "completed" and status.provider_message_id
    [m] = service_messages(sandbox, "sendgrid")
    assert m["to"] == "ada@example.com"
    assert m["subject"] == "From herald"
    assert str(m["custom_args"]["herald_id"]) == str(r.id)
    assert receipt_of(engine, r.id) == "delivered"


@pytest.mark.usefixtures("mail_events")
def test_sendgrid_hard_bounce_makes_the_address_unusable(engine: Engine, sandbox: Sandbox) -> None:
    r = engine.send("welcome", {"id": "u6", "email": "bounce@example.com"}, {"name": "B"})
    assert engine.wait(r.id).state == "completed"
    assert receipt_of(engine, r.id) == "bounced"
    wait_for(lambda: engine.suppressions(), what="the suppression")
    [s] = engine.suppressions()
    assert (s.channel, s.address, s.reason) == ("email", "bounce@example.com", "unusable")
    sent = len(service_messages(sandbox, "sendgrid"))
    again = engine.send("welcome", {"id": "u6", "email": "bounce@example.com"}, {"name": "B"})
    status = engine.wait(again.id)
    assert status.state == "suppressed" and "unusable" in status.last_error
    assert len(service_messages(sandbox, "sendgrid")) == sent


@pytest.mark.usefixtures("mail_events")
def test_sendgrid_unsubscribe_and_open(engine: Engine) -> None:
    opened = engine.send("welcome", {"id": "u7", "email": "open@example.com"}, {})
    gone = engine.send("welcome", {"id": "u8", "email": "unsubscribe@example.com"}, {})
    wait_for(lambda: engine.status(opened.id).receipt == "opened", what="the open")
    # SendGrid's events arrive as processed, delivered, open; each is applied, in that order (a
    # receipt only moves forward, so the status shows the last).
    events = [(e.event, e.detail) for e in engine.trace(opened.id)]
    after = events[[kind for kind, _ in events].index("completed") + 1:]
    assert after == [("receipt", "processed"), ("delivered", "delivered"), ("opened", "open")], after
    wait_for(lambda: any(s.reason == "opted_out" for s in engine.suppressions()), what="the opt-out")
    assert "opted_out" in [e.event for e in engine.trace(gone.id)]


def test_sendgrid_batches_personalizations_when_the_plan_allows(engine: Engine, sandbox: Sandbox) -> None:
    items = [{"type": "digest", "recipient": {"id": f"d{i}", "email": f"user{i}@example.com"},
              "data": {"name": f"N{i}", "count": i}, "priority": "bulk"} for i in range(2500)]
    receipts = engine.send_many(items)
    assert engine.wait_idle(60)
    assert all(engine.status(r.id).state == "completed" for r in receipts[:50])
    records = service_messages(sandbox, "sendgrid")
    assert len(records) == 2500
    requests = {m["x_message_id"] for m in records}
    assert len(requests) <= 10, f"{len(requests)} requests for 2500 emails: not batched"
    assert all(len([m for m in records if m["x_message_id"] == x]) <= 1000 for x in requests)
    by_to = {m["to"]: m for m in records}
    assert by_to["user7@example.com"]["text"] == "Hello N7, 7 new"
    assert engine.stats()["batched_requests"] >= 3


# -- FCM and APNs ---------------------------------------------------------------------------------------


def test_fcm_mints_a_token_and_sends(engine: Engine, sandbox: Sandbox) -> None:
    r = engine.send("android", {"id": "u9", "fcm_token": "tok-abc"}, {"text": "hi"})
    status = engine.wait(r.id)
    assert status.state == "completed"
    assert status.provider_message_id.startswith("projects/herald-test/messages/")
    [m] = service_messages(sandbox, "fcm")
    assert m["body"]["message"]["token"] == "tok-abc"
    assert m["body"]["message"]["notification"]["body"] == "hi"


def test_fcm_unregistered_token_is_unusable(engine: Engine) -> None:
    r = engine.send("android", {"id": "u10", "fcm_token": "unregistered-1"}, {"text": "hi"})
    status = engine.wait(r.id)
    assert status.state == "dead_lettered" and "UNREGISTERED" in status.last_error
    assert [(s.channel, s.address) for s in engine.suppressions()] == [("push", "unregistered-1")]


def test_apns_sends_with_a_provider_token(engine: Engine, sandbox: Sandbox) -> None:
    token = "a1" * 32
    r = engine.send("ios", {"id": "u11", "apns_token": token}, {"text": "hello"}, priority="high")
    status = engine.wait(r.id)
    assert status.state == "completed" and status.provider_message_id
    [m] = service_messages(sandbox, "apns")
    assert m["headers"]["apns-topic"] == "test.herald.app"
    assert m["headers"]["apns-priority"] == "10"
    assert m["body"]["aps"]["alert"]["body"] == "hello"


def test_apns_unregistered_token_is_unusable(engine: Engine) -> None:
    r = engine.send("ios", {"id": "u12", "apns_token": "dead" + "0" * 60}, {"text": "x"})
    assert engine.wait(r.id).state == "dead_lettered"
    assert engine.suppressions()[0].address == "dead" + "0" * 60


# -- Slack and webhooks ------------------------------------------------------------------------------------


def test_slack_429_is_retried_after_retry_after(engine: Engine, sandbox: Sandbox) -> None:
    ids = [engine.send("alert", {"id": "ops"}, {"text": f"alert {i}"}).id for i in range(8)]
    assert engine.wait_idle(30)
    assert all(engine.status(i).state == "completed" for i in ids)
    assert any("Retry-After" in (e.detail or "") for i in ids for e in engine.trace(i) if e.event == "retry_scheduled")
    assert len(service_messages(sandbox, "slack")) == 8


def test_webhook_requests_are_signed(engine: Engine, tmp_path: Path, providers: list[dict[str, Any]]) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = {"name": "hook", "kind": "webhook", "url": f"http://127.0.0.1:{server.server_port}/in",
                "secrets": {"signing_secret": "hook-secret"}}
        with Engine(tmp_path / "hook-data", rules=rules(), providers=[hook]) as e:
            r = e.send("hook", {"id": "svc"}, {"text": "order 7 shipped"})
            assert e.wait(r.id).state == "completed"
    finally:
        server.shutdown()
        server.server_close()
    [(headers, body)] = received
    fields = dict(part.split("=", 1) for part in headers["x-herald-signature"].split(","))
    assert abs(int(fields["t"]) - time.time()) < 60
    expected = hmac.new(b"hook-secret", fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"])
    assert json.loads(body)["text"] == "order 7 shipped"


def test_the_sandboxs_records_hold_no_secret(engine: Engine, sandbox: Sandbox, tmp_path: Path) -> None:
    """GET /_sandbox/messages (and its long poll) never carries a credential in full: not in
    request_headers, not in the older headers field (x-* headers: API keys, tokens, signatures)."""
    api_key = "hook-api-key-0123456789abcdef"
    hook = {"name": "hook", "kind": "webhook", "url": f"{sandbox.url}/hooks/orders",
            "headers": {"X-Api-Key": api_key}, "secrets": {"signing_secret": "hook-secret"}}
    ids = [engine.send("otp", {"id": "s1", "phone": "+15551230009"}, {"code": "1"}).id,
           engine.send("welcome", {"id": "s2", "email": "s2@example.com"}, {"name": "Ada"}).id]
    with Engine(tmp_path / "hook-data", rules=rules(), providers=[hook]) as e:
        r = e.send("hook", {"id": "svc"}, {"text": "order 7 shipped"})
        assert e.wait(r.id).state == "completed"
    assert all(engine.wait(i).state == "completed" for i in ids)
    listed = urllib.request.urlopen(f"{sandbox.url}/_sandbox/messages").read().decode()
    polled = urllib.request.urlopen(f"{sandbox.url}/_sandbox/messages?after=0&wait_ms=0").read().decode()
    [recorded] = [m for m in json.loads(listed) if m.get("service") == "hook" or m.get("path") == "/hooks/orders"]
    assert recorded["headers"]["x-api-key"].endswith("(29 chars)")  # there, masked
    signature = recorded["headers"]["x-herald-signature"]
    assert signature.startswith("t=") and signature.endswith("chars)") and ",v1=" not in signature
    basic = base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    for text in (listed, polled):
        for secret in (api_key, "hook-secret", TWILIO_TOKEN, basic, SENDGRID_KEY):
            assert secret not in text, f"a secret in the sandbox's JSON: {secret[:6]}..."


# -- the provider's own words in the delivery log -------------------------------------------------------


def log_lines(engine: Engine) -> list[dict[str, Any]]:
    """Every line of the engine's delivery log (the engine is closed first: it writes on close)."""
    log = engine.data_dir / "log"
    engine.close()
    return [json.loads(line) for seg in sorted(log.glob("events-*.jsonl"))
            for line in seg.read_text("utf-8").splitlines()]


def test_each_providers_own_error_code_is_on_the_failed_attempt(engine: Engine) -> None:
    sent = {
        "21211": engine.send("otp", {"id": "c1", "phone": "+15005550001"}, {"code": "1"}),
        "UNREGISTERED": engine.send("android", {"id": "c2", "fcm_token": "unregistered-2"}, {"text": "hi"}),
        "BadDeviceToken": engine.send("ios", {"id": "c3", "apns_token": "not-hex"}, {"text": "x"}),
        "Unregistered": engine.send("ios", {"id": "c4", "apns_token": "dead" + "0" * 60}, {"text": "x"}),
        "Does not contain a valid address.": engine.send("welcome", {"id": "c5", "email": "nobody"}, {"name": "N"}),
    }
    for r in sent.values():
        assert engine.wait(r.id).state == "dead_lettered"
    failed = {line["id"]: line for line in log_lines(engine) if line["event"] == "attempt_failed"}
    for code, r in sent.items():
        assert failed[str(r.id)].get("provider_code") == code, failed[str(r.id)]
    assert failed[str(sent["21211"].id)]["error_class"] == "recipient_invalid"


def test_an_accepted_sms_records_its_segments(engine: Engine) -> None:
    # Each text follows "Your code is " (13 GSM-7 characters): 17, 213 and 313 septets; 84 UCS-2
    # units; 13 + 2 × 81 = 175 septets (the euro sign is an extension character).
    texts = {"1234": 1, "x" * 200: 2, "x" * 300: 3, "ж" * 71: 2, "€" * 81: 2}
    ids = {engine.send("otp", {"id": f"s{i}", "phone": "+15551230030"}, {"code": t}).id: n
           for i, (t, n) in enumerate(texts.items())}
    for i in ids:
        assert engine.wait(i).state == "completed"
    accepted = {line["id"]: line for line in log_lines(engine) if line["event"] == "accepted"}
    assert {int(k): v["segments"] for k, v in accepted.items()} == ids
    assert all(v["cost"] == pytest.approx(0.0079) for v in accepted.values())  # cost stays per message


# -- faults in the provider's own dialect ---------------------------------------------------------------


def test_an_injected_twilio_error_code_is_read_like_the_real_one(engine: Engine, sandbox: Sandbox) -> None:
    sandbox.set_faults("twilio", error_rate=1.0, error_status=400, error_code="21211")
    r = engine.send("otp", {"id": "u20", "phone": "+15551230020"}, {"code": "1"})
    status = engine.wait(r.id)
    assert status.state == "dead_lettered" and "21211" in status.last_error


def test_a_twilio_outage_fails_over_to_another_kind(tmp_path: Path, sandbox: Sandbox,
                                                    providers: list[dict[str, Any]]) -> None:
    sandbox.set_faults("twilio", outage_for_ms=60_000)
    rules = RuleSet({"otp": lambda n: Plan("sms", ["sms", "sms-backup"], "code {code}")})
    backup = sandbox.provider("sms-backup")
    with Engine(tmp_path / "failover", rules=rules, providers=[providers[0], backup],
                max_attempts_per_provider=2, retry_base=0.01, retry_max=0.05) as e:
        r = e.send("otp", {"id": "u21", "phone": "+15551230021"}, {"code": "5"})
        status = e.wait(r.id)
        assert status.state == "completed" and status.provider == "sms-backup"
        kinds = [ev.event for ev in e.trace(r.id)]
        assert kinds.count("attempt_failed") == 2 and "failed_over" in kinds
    assert service_messages(sandbox, "twilio") == []
    assert len(sandbox.messages("sms-backup")) == 1


def test_fcm_mints_a_new_token_when_the_old_one_expires_without_a_failed_attempt(engine: Engine, sandbox: Sandbox) -> None:
    request = urllib.request.Request(f"{sandbox.url}/_sandbox/settings/fcm", data=b'{"token_ttl_s": 2}',
                                     headers={"Content-Type": "application/json"}, method="PUT")
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200
    first = engine.send("android", {"id": "u30", "fcm_token": "tok-1"}, {"text": "one"})
    assert engine.wait(first.id).state == "completed"
    time.sleep(2.5)  # the first token has expired by now; the adapter must have minted another
    second = engine.send("android", {"id": "u30", "fcm_token": "tok-1"}, {"text": "two"})
    status = engine.wait(second.id)
    assert status.state == "completed"
    assert status.attempts == 1, [str(e) for e in engine.trace(second.id)]
