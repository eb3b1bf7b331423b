"""The delivery log's lines follow docs/delivery-log.md, schema version 1."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from herald import Engine, Sandbox


def _lines(data_dir: Path) -> list[dict]:
    out = []
    for segment in sorted((data_dir / "log").glob("events-*.jsonl")):
        out += [json.loads(line) for line in segment.read_text().splitlines()]
    return out


def test_lines_carry_recipient_channel_error_class_and_cost(make_engine: Callable[..., Engine], sandbox: Sandbox,
                                                           tmp_path: Path) -> None:
    sandbox.set_faults("primary", error_rate=1.0, error_status=503)
    engine = make_engine(providers=[sandbox.provider("primary", max_attempts=1),
                                    sandbox.provider("backup", cost_per_message=0.0075)])
    otp = engine.send("otp", {"id": "u-1", "phone": "+15550100"}, {"code": "1"}, tenant="acme").id
    lost = engine.send("news", {"id": "u-2", "email": "u2@example.test"}).id  # primary only: dead-lettered
    assert engine.wait(otp, timeout=20).state == "completed"
    assert engine.wait(lost, timeout=20).state == "dead_lettered"
    engine.close()
    lines = _lines(tmp_path / "data")
    assert lines and all(line["v"] == 1 for line in lines)
    assert all(isinstance(line["id"], str) and line["id"].isdigit() for line in lines)
    mine = [line for line in lines if line["id"] == str(otp)]
    assert {line["recipient"] for line in mine} == {"u-1"}
    assert {line["tenant"] for line in mine} == {"acme"}
    assert all(line["channel"] == "sms" for line in mine if line["event"] not in ("received", "queued"))
    failed = [line for line in mine if line["event"] == "attempt_failed"]
    assert [(f["provider"], f["error_class"], f["http_status"]) for f in failed] == [("primary", "provider_error", 503)]
    accepted = next(line for line in mine if line["event"] == "accepted")
    assert accepted["provider"] == "backup" and accepted["cost"] == 0.0075 and "error_class" not in accepted
    final = next(line for line in lines if line["id"] == str(lost) and line["event"] == "dead_lettered")
    assert final["error_class"] == "provider_error" and final["channel"] == "email"


def test_accepted_latencies_find_the_ids_a_caller_holds(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    # The log writes ids as strings; the demo and the benchmarks ask with the ints send() returned.
    from herald.latency import accepted_latencies

    engine = make_engine()
    ids = {engine.send("otp", f"u{i}", {"code": "1"}, priority="critical").id for i in range(3)}
    other = engine.send("otp", "u9", {"code": "1"}).id
    assert engine.wait(other, timeout=20).state == "completed"
    assert engine.wait_idle(20)
    engine.close()
    lat = accepted_latencies(tmp_path / "data" / "log", ids)
    assert set(lat) == {"critical"} and len(lat["critical"]) == 3
    assert all(ms >= 0 for ms in lat["critical"])
    assert sum(len(v) for v in accepted_latencies(tmp_path / "data" / "log").values()) == 4
