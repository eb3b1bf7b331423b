"""Where rules come from (an inline @rule, rules=__name__, a catch-all) and failing fast at intake:
a type no rule routes, an engine with no rules, a plan naming a provider that is not configured."""

from __future__ import annotations

import logging
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

import herald
from herald import Plan, RuleSet, Sandbox

APP = '''
import herald
from herald import Plan, rule


@rule("welcome")
def welcome(n):
    return Plan("email", ["mail"], "Hello {{name}}")


with herald.Engine("data", providers=[{{"name": "mail", "kind": "sandbox", "url": {url!r}}}]{rules}) as engine:
    status = engine.wait(engine.send("welcome", {{"id": "u1", "email": "u1@example.test"}}, {{"name": "Ada"}}).id)
    print(status.state, status.last_error)
'''


@pytest.mark.parametrize("rules", ["", ", rules=__name__"], ids=["registered-at-import", "rules=__name__"])
def test_an_inline_rule_in_the_apps_own_module_routes(rules: str, tmp_path: Path, sandbox: Sandbox) -> None:
    (tmp_path / "app.py").write_text(APP.format(url=sandbox.url, rules=rules), encoding="utf-8")
    result = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["completed", "None"]
    assert len(sandbox.messages("mail")) == 1


def test_a_module_name_that_is_neither_directory_nor_module_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a directory nor an imported module"):
        RuleSet.load(str(tmp_path / "nope"))


def test_send_of_a_type_without_rule_raises_naming_the_field(make_engine) -> None:
    engine = make_engine()
    with pytest.raises(herald.ValidationError) as err:
        engine.send("nobody-handles-this", "u1")
    assert err.value.field == "type"
    assert "no rule routes type 'nobody-handles-this'" in str(err.value)
    items = [{"type": "otp", "recipient": "u1"}] * 3 + [{"type": "typo", "recipient": "u1"}]
    with pytest.raises(herald.ValidationError) as err:
        engine.send_many(items, chunk=2)
    assert err.value.field == "notifications[3].type"


def test_a_catch_all_rule_routes_every_other_type(make_engine, sandbox: Sandbox) -> None:
    engine = make_engine(rules=RuleSet({"*": lambda n: Plan("sms", ["primary"], "{text|hi}")}))
    receipts = engine.send_many([{"type": f"t{i}", "recipient": {"id": "u", "phone": "+15550100"}} for i in range(3)])
    assert [engine.wait(r.id).state for r in receipts] == ["completed"] * 3


def test_an_engine_without_rules_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)  # no ./routing_rules
    monkeypatch.setattr(herald.rules, "_registered", {})
    with caplog.at_level(logging.WARNING, logger="herald"), herald.Engine(tmp_path / "d") as engine:
        with pytest.raises(herald.ValidationError):
            engine.send("anything", "u1")
    [record] = [r for r in caplog.records if r.name == "herald"]
    assert "started with no rules" in record.getMessage()


def test_an_unknown_provider_is_logged_once_per_rule_and_provider(make_engine,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    def typo(n):
        return Plan("sms", ["primry"])

    engine = make_engine(rules=RuleSet({"typo": typo}))
    with caplog.at_level(logging.WARNING, logger="herald"):
        receipts = engine.send_many([{"type": "typo", "recipient": "u1"}] * 5)
        assert engine.wait_idle(10)
    assert {engine.status(r.id).state for r in receipts} == {"dead_lettered"}
    warnings = [r.getMessage() for r in caplog.records if r.name == "herald"]
    assert len(warnings) == 1, warnings
    assert "typo" in warnings[0] and "'primry'" in warnings[0] and "not configured" in warnings[0]


def test_a_plain_plan_made_again_shares_its_checked_form_and_bad_ones_are_still_refused() -> None:
    first = Plan("email", ["hook"], "{headline|News}")
    again = Plan("email", ("hook",), "{headline|News}")
    assert again._wire is first._wire  # checked once, then looked up
    assert Plan("email", ["hook"], "other")._wire is not first._wire
    with pytest.raises(herald.ValidationError, match=r"Plan\.providers"):
        Plan("email", ["hook", 1], "{headline|News}")
    with pytest.raises(herald.ValidationError, match=r"Plan\.providers"):
        Plan("email", [["hook"]], "{headline|News}")  # unhashable: not looked up, refused by the checks
    with pytest.raises(herald.ValidationError, match=r"Plan\.channel"):
        Plan("fax", ["hook"], "{headline|News}")


def test_a_plan_shows_what_it_was_made_from_and_cannot_be_changed() -> None:
    from datetime import datetime, timedelta, timezone

    plain = Plan("email", ["hook"], "{headline|News}")
    assert plain.skip_reason is None and plain.defer_until is None
    assert [(s.channel, s.providers, s.text) for s in plain.steps] == [("email", ("hook",), "{headline|News}")]
    assert plain.steps is plain.steps  # made once, when first asked for
    skip = Plan.skip("quiet hours")
    assert (skip.skip_reason, skip.defer_until, skip.steps) == ("quiet hours", None, ())
    assert repr(skip) == "Plan.skip('quiet hours')"
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    for until in (at, timedelta(minutes=5), 90.0):
        later = Plan.defer(until)
        assert (later.skip_reason, later.defer_until, later.steps) == (None, until, ())
        assert later == Plan.defer(until) and repr(later) == f"Plan.defer({until!r})"
    for plan in (plain, skip, later):
        for name in ("skip_reason", "defer_until", "_wire", "_steps", "anything"):
            with pytest.raises(AttributeError):
                setattr(plan, name, None)


def test_a_plan_checked_by_one_engine_is_checked_again_by_another() -> None:
    rules = RuleSet({"t": lambda n: Plan("email", ["hook"], "hi")})

    class N:
        type = "t"

    assert isinstance(rules.router(["hook"])([N()])[0], Plan)
    refused = rules.router(["other"])([N(), N()])
    assert len(refused) == 2
    assert all(isinstance(r, str) and r.endswith("plan.providers: unknown provider 'hook'") for r in refused)


def test_a_rule_gets_the_providers_health_by_its_second_parameter() -> None:
    from herald.health import takes_providers

    class Rules:
        def by_name(self, n, providers=None): ...
        def plain(self, n): ...

        def __call__(self, n, providers): ...

    def two(n, providers): ...
    def named_with_default(n, providers=None): ...
    def any_name(n, health): ...

    assert takes_providers(two) and takes_providers(named_with_default) and takes_providers(any_name)
    assert takes_providers(Rules().by_name) and not takes_providers(Rules().plain)
    assert takes_providers(Rules())  # a callable object, through its signature
    assert not takes_providers(lambda n: None)
    # The idiom for binding a loop variable: the default stays, the providers are not passed.
    batch = True
    assert not takes_providers(lambda n, b=batch: None)


def test_a_rule_binding_a_loop_variable_by_default_argument_routes(make_engine, sandbox: Sandbox) -> None:
    rules = {}
    for kind, template in (("a", "first"), ("b", "second")):
        rules[kind] = lambda n, t=template: Plan("sms", ["primary"], t)
    engine = make_engine(rules=RuleSet(rules))
    ids = [engine.send(kind, "u1").id for kind in ("a", "b")]
    assert all(engine.wait(i, timeout=20).state == "completed" for i in ids)
    assert sorted(m["text"] for m in sandbox.messages()) == ["first", "second"]


def test_notifications_a_rule_keeps_stay_readable_after_they_are_delivered(make_engine, sandbox: Sandbox) -> None:
    # A rule sees the engine's own notification during its call (no copy); one it keeps, or a
    # batch list it keeps, must still read the same fields once the engine has forgotten them.
    kept: list = []
    kept_batches: list = []

    class Keeping(RuleSet):
        def route_batch(self, batch, providers=None):
            kept_batches.append(batch)
            kept.append(batch[0])
            return [Plan("sms", ["primary"], "{text}") for _ in batch]

    engine = make_engine(rules=Keeping({}), route_batch=7)
    sent = [{"type": f"t{i}", "recipient": {"id": f"u{i}", "phone": "+15550100"}, "data": {"text": f"m{i}"},
             "idempotency_key": f"k{i}", "priority": "high"} for i in range(120)]
    receipts = engine.send_many(sent)
    assert all(engine.wait(r.id).state == "completed" for r in receipts)
    later = engine.send_many([{"type": "t", "recipient": {"id": "x", "phone": "+15550100"},
                               "data": {"text": "x" * 500}} for _ in range(120)])  # reuses the freed memory
    assert all(engine.wait(r.id).state == "completed" for r in later)
    by_id = {r.id: (i, item) for i, (r, item) in enumerate(zip(receipts, sent))}
    seen = [n for n in [*kept, *(n for batch in kept_batches for n in batch)] if n.id in by_id]
    assert len({n.id for n in seen}) == 120 and len(seen) > 120
    for n in seen:
        i, item = by_id[n.id]
        assert (n.type, n.recipient_id, n.recipient, n.data) == (item["type"], f"u{i}", item["recipient"], item["data"])
        assert (n.idempotency_key, n.priority, n.ordering_key) == (f"k{i}", "high", None)
        assert repr(n) == f"<Notification {n.id} t{i} to u{i}>"


def test_plans_answered_again_and_again_route_each_notification_by_its_own(make_engine, sandbox: Sandbox) -> None:
    # Equal plain plans share one wire form, converted once per engine: many distinct ones, some
    # made once and some again, a skip and a shared Plan object must each still route their own.
    shared = Plan("sms", ["primary"], "shared {i}")

    def rule(n):
        i = n.data["i"]
        if i % 7 == 0:
            return Plan.skip(f"quiet {i % 3}")
        if i % 5 == 0:
            return shared
        return Plan("sms", ["primary", "backup"] if i % 2 else ["primary"], f"text {i % 40} {{i}}")

    engine = make_engine(rules=RuleSet({"t": rule}), route_batch=16)
    receipts = engine.send_many([{"type": "t", "recipient": {"id": f"u{i}", "phone": "+15550100"}, "data": {"i": i}}
                                 for i in range(400)])
    states = [engine.wait(r.id) for r in receipts]
    for i, st in enumerate(states):
        if i % 7 == 0:
            assert (st.state, st.last_error) == ("skipped", f"skipped by the rule: quiet {i % 3}")
        else:
            assert st.state == "completed", (i, st)
    texts = sorted(m["text"] for m in sandbox.messages())
    expected = sorted(f"shared {i}" if i % 5 == 0 else f"text {i % 40} {i}" for i in range(400) if i % 7)
    assert texts == expected


def test_a_weak_reference_a_rule_keeps_never_shows_another_notification(make_engine, sandbox: Sandbox) -> None:
    # The engine reuses the objects rules see from batch to batch when no one holds them; one a
    # rule holds only weakly is not reused: it dies, as it would with no reuse at all.
    refs: list = []

    def rule(n):
        refs.append((weakref.ref(n), n.id, n.recipient_id))
        return Plan("sms", ["primary"], "hi")

    engine = make_engine(rules=RuleSet({"t": rule}), route_batch=5)
    for round_ in range(3):
        receipts = engine.send_many([{"type": "t", "recipient": {"id": f"r{round_}-{i}", "phone": "+15550100"}}
                                     for i in range(40)])
        assert all(engine.wait(r.id).state == "completed" for r in receipts)
    assert len(refs) == 120
    for ref, id_, recipient_id in refs:
        n = ref()
        assert n is None or (n.id, n.recipient_id) == (id_, recipient_id)
