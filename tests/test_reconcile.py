"""Deliveries stuck without a final receipt are settled through the provider's status API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from herald import Engine, Plan, RuleSet, Sandbox
from support import wait_for

SID = "AC00000000000000000000000000000003"


@pytest.fixture
def engine(tmp_path: Path, sandbox: Sandbox) -> Iterator[Engine]:
    rules = RuleSet({"otp": lambda n: Plan("sms", ["sms"], "code {code}"),
                     "note": lambda n: Plan("email", ["box"], "{text}")})
    providers = [
        {"name": "sms", "kind": "twilio", "url": sandbox.url,
         "settings": {"account_sid": SID, "from": "+15550100"}, "secrets": {"auth_token": "t0ken"}},
        sandbox.provider("box"),
    ]
    # The receipts are lost on the way: only a status query can tell what happened.
    sandbox.set_callbacks("twilio", enabled=False, delay_ms=10)
    sandbox.set_callbacks("box", enabled=False, delay_ms=10)
    with Engine(tmp_path / "data", rules=rules, providers=providers, receipts="127.0.0.1:0",
                reconcile_after=0.2, reconcile_interval=0.1) as e:
        yield e


def wait_receipt(engine: Engine, id: int, timeout: float = 10.0) -> str:
    def receipt() -> str | None:
        engine.flush()
        status = engine.status(id)
        return status.receipt if status is not None else None

    return wait_for(receipt, timeout, what=f"a receipt for {id}")


@pytest.mark.parametrize(
    ("kind", "recipient", "expected"),
    [
        ("otp", {"id": "u1", "phone": "+15551230042"}, "delivered"),
        ("otp", {"id": "u2", "phone": "+15005550006"}, "failed"),
        ("note", {"id": "u3", "email": "ok@example.com"}, "delivered"),
        ("note", {"id": "u4", "email": "bounce@example.com"}, "bounced"),
    ],
    ids=["twilio-delivered", "twilio-undelivered", "sandbox-delivered", "sandbox-bounced"],
)
def test_stuck_delivery_is_reconciled_by_a_status_query(
    engine: Engine, kind: str, recipient: dict[str, str], expected: str
) -> None:
    r = engine.send(kind, recipient, {"code": "1", "text": "hi"})
    assert engine.wait(r.id).state == "completed"
    assert wait_receipt(engine, r.id) == expected
    events = engine.trace(r.id)
    assert any("status query" in (e.detail or "") for e in events), [str(e) for e in events]
    assert engine.stats()["reconciled"] >= 1
    if expected == "bounced":
        assert [s.address for s in engine.suppressions()] == ["bounce@example.com"]
