"""herald.kinds' Literal types hold exactly the words the C++ core uses.

States, priorities and error classes the core lists itself (``_core.states()``,
``_core.priorities()``, ``_core.error_classes()``, from its enums); the HTTP API's document
(openapi.json) names the same states and priorities. Event kinds, receipt states and
suppression reasons are plain strings in the core today, written where they happen: they are held
to a real run that provokes every one it can (one engine, the sandbox, receipts over loopback) and
to the tables of docs/delivery-log.md. The rows the run answers are checked against the public
dataclasses' field names and types too (mypy holds the stub's rows to the same dataclasses).
"""

from __future__ import annotations

import json
import re
import types
import typing
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import herald
from herald import Engine, Plan, RuleSet, Sandbox, Step, _core, kinds
from support import wait_for

DOCS = Path(__file__).resolve().parent.parent / "docs" / "delivery-log.md"

# What the run below cannot provoke without a crash or a full disk, and where that is tested.
NOT_PROVOKED = {
    "in_doubt": "a crash during an attempt (test_crash_recovery.py)",
    "reconciled": "settling an in-doubt attempt after a crash (test_crash_recovery.py)",
    "receipt": "a progress receipt (queued, sent): the sandbox's own API sends only final ones",
    "store_degraded": "a disk that refuses writes (test_disk_full.py)",
    "store_recovered": "the same disk taking writes again (test_disk_full.py)",
    "alert_firing": "an alert rule's condition holding for its for_ (test_alerts.py)",
    "alert_resolved": "the same condition clear for its clear_for (test_alerts.py)",
    "circuit_opened": "a provider's circuit breaker (test_circuit.py: flaky's is off here)",
    "circuit_half_open": "a provider's circuit breaker (test_circuit.py)",
    "circuit_closed": "a provider's circuit breaker (test_circuit.py)",
}


def doc_table(heading: str) -> set[str]:
    """The `words` in the first column of the table under `### heading` in docs/delivery-log.md."""
    text = DOCS.read_text("utf-8")
    section = text.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    words: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            words |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    assert words, f"no table under '### {heading}' in {DOCS}"
    return words


@dataclass
class Run:
    """What one engine wrote and answered."""

    trace_kinds: set[str]
    log_lines: list[dict[str, Any]]
    statuses: list[dict[str, Any]]
    events: list[dict[str, Any]]
    suppressions: list[dict[str, Any]]


def _broken(n: herald.Notification) -> Plan:
    raise RuntimeError("this rule always fails")


_deferred: set[int] = set()


def _defer_once(n: herald.Notification) -> Plan:
    if n.id in _deferred:
        return Plan("email", ["box"], "hi")
    _deferred.add(n.id)
    return Plan.defer(0.05)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    data_dir = tmp_path_factory.mktemp("kinds") / "data"
    rules = RuleSet({
        "note": lambda n: Plan("email", ["box"], "{text|hi}"),
        "text": lambda n: Plan("sms", ["box"], "{text|hi}"),
        "quiet": lambda n: Plan("email", ["quiet"], "hi"),
        "flaky": lambda n: Plan("email", ["flaky", "box"], "hi"),
        "dead": lambda n: Plan("email", ["flaky"], "hi"),
        "broken": _broken,
        # fails on its first step, succeeds on the second
        "fallback": lambda n: Plan.cascade(Step("sms", ["flaky"], text="hi"), Step("email", ["box"], text="hi")),
        # succeeds at once when read: the step after it is cancelled
        "read": lambda n: Plan.cascade(Step("email", ["box"], text="hi", success="read"),
                                       Step("sms", ["box"], text="hi", after="1h")),
        "skip": lambda n: Plan.skip("the rule says no"),
        "later": _defer_once,
    })
    with Sandbox() as sandbox:
        # flaky fails every attempt: its circuit breaker is off, or it would open and hold "dead" back.
        flaky = sandbox.provider("flaky", max_attempts=2, circuit_consecutive_failures=0, circuit_failure_rate=0)
        providers = [sandbox.provider("box"), sandbox.provider("quiet"), flaky]
        sandbox.set_callbacks("box", enabled=True, delay_ms=10)
        # No receipt, and the status API says "accepted" for a day: five lookups, then unconfirmed.
        sandbox.set_callbacks("quiet", enabled=False, delay_ms=86_400_000)
        sandbox.set_faults("flaky", error_rate=1.0, error_status=503)
        engine = Engine(data_dir, rules=rules, providers=providers, receipts="127.0.0.1:0", retry_base=0.3,
                        retry_max=0.6, reconcile_after=0.2, reconcile_interval=0.1, close_timeout=3.0)
        try:
            ids = exercise(engine)
            statuses = [engine._core.status(i) for i in ids]
            events = [e for i in ids for e in engine._core.trace(i)]
            suppressions = engine._core.suppressions(100)
        finally:
            engine.close()  # writes the receipt_rejected tally
        lines = [json.loads(line) for seg in sorted((data_dir / "log").glob("events-*.jsonl"))
                 for line in seg.read_text("utf-8").splitlines()]
        yield Run({e["event"] for e in events}, lines, [s for s in statuses if s is not None], events, suppressions)


def exercise(engine: Engine) -> list[int]:
    """Provokes every word it can; returns the ids it sent. Waits on observable state only."""
    def email(user: str, address: str) -> dict[str, str]:
        return {"id": user, "email": address}

    def receipt_of(id: int, want: str, timeout: float = 10.0) -> None:
        wait_for(lambda: engine.status(id).receipt == want, timeout, what=f"receipt {want} of {id}")

    ids = {}
    for name, address in [("ok", "ok@example.com"), ("open", "open@example.com"), ("bounce", "bounce@example.com"),
                          ("soft", "soft-bounce@example.com"), ("unsub", "unsubscribe@example.com")]:
        ids[name] = engine.send("note", email(name, address)).id
    ids["sms"] = engine.send("text", {"id": "sms", "phone": "+15005550006"}).id  # undelivered
    ids["quiet"] = engine.send("quiet", email("quiet", "ok@example.com")).id
    ids["flaky"] = engine.send("flaky", email("flaky", "ok@example.com")).id  # fails, retries, fails over
    ids["dead"] = engine.send("dead", email("dead", "ok@example.com")).id
    ids["broken"] = engine.send("broken", email("broken", "ok@example.com")).id  # routing_error
    # Fails once, then its retry comes due after it expired.
    ids["expired"] = engine.send("dead", email("expired", "ok@example.com"), expires_at=timedelta(seconds=0.1)).id
    first = engine.send("note", email("dup", "ok@example.com"), idempotency_key="once")
    assert engine.send("note", email("dup", "ok@example.com"), idempotency_key="once").duplicate
    ids["dup"] = first.id
    ids["later"] = engine.send("note", email("later", "ok@example.com"), send_at=timedelta(hours=1)).id
    assert engine.cancel(ids["later"])

    ids["fallback"] = engine.send("fallback", {"id": "fb", "email": "ok@example.com", "phone": "+15550001"}).id
    ids["read"] = engine.send("read", email("read", "ok@example.com")).id
    ids["skip"] = engine.send("skip", email("skip", "ok@example.com")).id
    ids["deferred"] = engine.send("later", email("later2", "ok@example.com")).id
    wait_for(lambda: "accepted" in [e.event for e in engine.trace(ids["read"])], what="the read step accepted")
    engine.acknowledge(ids["read"], channel="email")
    for key in ("fallback", "read", "skip", "deferred"):
        assert engine.wait(ids[key]).state == ("skipped" if key == "skip" else "completed")

    assert engine.wait(ids["dead"]).state == "dead_lettered"
    engine.retry(ids["dead"])
    assert engine.wait(ids["expired"]).state == "expired"
    for key in ("ok", "open", "bounce", "soft", "unsub", "sms", "quiet", "flaky", "broken", "dup"):
        engine.wait(ids[key])
    receipt_of(ids["ok"], "delivered")
    receipt_of(ids["open"], "opened")
    receipt_of(ids["bounce"], "bounced")
    receipt_of(ids["soft"], "delivered")
    receipt_of(ids["sms"], "failed")
    receipt_of(ids["quiet"], "unconfirmed", timeout=30.0)  # lookups 0.2 s apart, then 0.4, 0.8, 1.6
    wait_for(lambda: {s.reason for s in engine.suppressions()} == {"unusable", "opted_out"}, what="both suppressions")
    # The bounced address is unusable now: a second message to it is suppressed.
    ids["suppressed"] = engine.send("note", email("again", "bounce@example.com")).id
    assert engine.wait(ids["suppressed"]).state == "suppressed"
    assert engine.wait(ids["dead"]).state == "dead_lettered"  # after its retry
    # A receipt without a signature is refused and counted (written to the log at close).
    request = urllib.request.Request(f"{engine.receipts_url}/box", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    refused.value.close()
    assert refused.value.code == 401
    engine.flush()
    return list(ids.values())


# -- event kinds ------------------------------------------------------------------------------------


def test_event_kinds_are_the_documented_ones() -> None:
    assert kinds.EVENT_KINDS == doc_table("Events")


def test_every_event_kind_the_core_writes_is_typed(run: Run) -> None:
    logged = {line["event"] for line in run.log_lines}
    assert run.trace_kinds <= logged, "a trace row that the delivery log does not have"
    assert logged - kinds.EVENT_KINDS == set(), "kinds the core wrote that herald.kinds.EventKind lacks"
    assert kinds.EVENT_KINDS - logged == set(NOT_PROVOKED), "kinds the run should have provoked"
    # Once the core has an EventKind enum and lists its words, they must be these, in this order.
    if hasattr(_core, "event_kinds"):
        assert list(_core.event_kinds()) == list(typing.get_args(kinds.EventKind))


# -- states, priorities, error classes: listed by the core ---------------------------------------------


def test_states_are_the_cores() -> None:
    assert _core.states() == list(typing.get_args(kinds.State))
    assert kinds.FINAL_STATES < kinds.STATES


def test_priorities_are_the_cores() -> None:
    assert _core.priorities() == list(typing.get_args(kinds.Priority))


def test_the_http_apis_enums_are_the_same_words() -> None:
    schemas = json.loads((Path(herald.__file__).with_name("openapi.json")).read_text("utf-8"))["components"]["schemas"]
    assert schemas["State"]["enum"] == list(typing.get_args(kinds.State))
    assert schemas["Priority"]["enum"] == list(typing.get_args(kinds.Priority))


def test_error_classes_are_the_cores_and_the_documented_ones() -> None:
    assert _core.error_classes() == list(typing.get_args(kinds.ErrorClass))
    assert kinds.ERROR_CLASSES == doc_table("Error classes")


def test_durabilities_are_the_ones_the_core_accepts(tmp_path: Path) -> None:
    for mode in typing.get_args(kinds.Durability):
        with Engine(tmp_path / mode, rules=RuleSet({}), providers=[], durability=mode):
            pass
    with pytest.raises(herald.ConfigError, match="must be 'process' or 'fsync'") as error:
        Engine(tmp_path / "other", rules=RuleSet({}), providers=[], durability="other")
    assert set(re.findall(r"'(\w+)'", str(error.value))) - {"other"} == kinds.DURABILITIES


def test_the_run_uses_only_typed_words(run: Run) -> None:
    assert {s["state"] for s in run.statuses} <= kinds.STATES
    assert {line["priority"] for line in run.log_lines} <= kinds.PRIORITIES
    classes = {line["error_class"] for line in run.log_lines if "error_class" in line}
    assert classes <= kinds.ERROR_CLASSES
    assert {"provider_error", "routing_error", "expired", "cancelled", "suppressed"} <= classes


# -- receipts and suppressions ----------------------------------------------------------------------


def test_receipt_states_are_the_ones_the_core_records(run: Run) -> None:
    assert {s["receipt"] for s in run.statuses if s["receipt"] is not None} == kinds.RECEIPT_STATES


def test_suppression_reasons_are_the_ones_the_core_records(run: Run) -> None:
    assert {s["reason"] for s in run.suppressions} == kinds.SUPPRESSION_REASONS


# -- the rows against the public types --------------------------------------------------------------


def fits(value: object, hint: object) -> bool:
    """Whether a value from a row is of the (simple) type a dataclass field declares."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    assert isinstance(hint, type), f"a field type this test cannot check: {hint}"
    return isinstance(value, hint)


@pytest.mark.parametrize("which", ["statuses", "events", "suppressions"])
def test_rows_are_what_the_public_types_declare(run: Run, which: str) -> None:
    cls = {"statuses": herald.Status, "events": herald.Event, "suppressions": herald.Suppression}[which]
    rows: list[dict[str, Any]] = getattr(run, which)
    assert rows
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for row in rows:
        assert list(row) == names, f"{cls.__name__}: fields {names}, the core's row {list(row)}"
        wrong = {k: v for k, v in row.items() if not fits(v, hints[k])}
        assert not wrong, f"{cls.__name__}: values that are not of the declared type: {wrong}"
