"""Shadow routing (a share of a type's traffic through a candidate provider) and the side-by-side
comparison of providers read from the store."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

import herald
from herald import Engine, Plan, RuleSet, Sandbox, Shadow
from herald.shadow import compare_providers, format_comparison, shadow_providers, shadows_from_config, takes

from support import wait_for


def ids(n: int, start_ms: int = 1_795_000_000_000) -> list[int]:
    """Ids as the engine makes them: (intake ms << 16) + a counter, many per millisecond."""
    return [((start_ms + i // 7) << 16) + i % 7 for i in range(n)]


@pytest.mark.parametrize("percent", [1, 10, 33.3, 50, 90])
def test_the_split_is_within_two_points_of_the_share_over_10000_notifications(percent: float) -> None:
    shadow = Shadow("otp", "sms-primary", "sms-candidate", percent)
    taken = sum(takes(shadow, i) for i in ids(10_000))
    assert abs(taken / 10_000 * 100 - percent) <= 2, taken


def test_the_choice_is_the_same_for_the_same_notification_and_independent_across_shadows() -> None:
    a = Shadow("otp", "sms-primary", "sms-candidate", 50)
    again = Shadow("otp", "sms-primary", "sms-candidate", 50)  # after a restart: equal settings
    other = Shadow("news", "email-primary", "email-candidate", 50)
    sample = ids(2000)
    assert [takes(a, i) for i in sample] == [takes(again, i) for i in sample]
    both = sum(takes(a, i) and takes(other, i) for i in sample)
    assert 400 <= both <= 600  # ~25%: the two splits are not the same half
    assert not any(takes(Shadow("otp", "a", "b", 0), i) for i in sample)
    assert all(takes(Shadow("otp", "a", "b", 100), i) for i in sample)


def test_the_candidate_takes_the_providers_place_in_the_chain() -> None:
    assert shadow_providers(("p", "backup"), "p", "c") == ("c", "backup")
    assert shadow_providers(("backup", "p"), "p", "c") == ("backup", "c")
    assert shadow_providers(("p", "c"), "p", "c") == ("c", "p")  # already a fallback: swapped, none lost
    assert shadow_providers(("other",), "p", "c") == ("other",)


def test_shadows_are_checked_naming_the_field(make_engine) -> None:
    with pytest.raises(herald.ConfigError, match=r"Shadow\.percent: must be a number from 0 to 100"):
        Shadow("otp", "primary", "backup", 101)
    with pytest.raises(herald.ConfigError, match=r"Shadow\.candidate: must differ"):
        Shadow("otp", "primary", "primary", 5)
    with pytest.raises(herald.ConfigError) as err:
        shadows_from_config([{"type": "otp", "provider": "primary", "candidate": "backup", "percent": "10"}])
    assert err.value.field == "shadow[0].percent"
    with pytest.raises(herald.ConfigError) as err:
        shadows_from_config([{"type": "otp", "provider": "primary", "candidate": "backup"}])
    assert err.value.field == "shadow[0].percent"
    with pytest.raises(herald.ConfigError) as err:
        make_engine(shadow=[Shadow("otp", "primary", "nowhere", 5)])
    assert err.value.field == "shadow[0].candidate" and "'nowhere' is not a configured provider" in str(err.value)


def test_a_shadowed_plan_goes_to_the_candidate_and_its_routed_event_says_so(make_engine, sandbox: Sandbox) -> None:
    shadow = Shadow("otp", "primary", "backup", 50)
    engine = make_engine(shadow=[shadow], rules=RuleSet({
        "otp": lambda n: Plan("sms", ["primary"], "code {code}"),
        "solo": lambda n: Plan("sms", ["primary"], "solo")}))
    receipts = [engine.send("otp", "u1", {"code": i}) for i in range(40)]
    solo = [engine.send("solo", "u1") for _ in range(10)]
    assert engine.wait_idle(20)
    for r in receipts:
        want = "backup" if takes(shadow, r.id) else "primary"
        assert engine.status(r.id).provider == want
        routed = next(e for e in engine.trace(r.id) if e.event == "routed")
        assert routed.detail == f"sms via {want}"
    assert {engine.status(r.id).provider for r in solo} == {"primary"}  # another type: untouched


def test_serve_reads_shadows_from_its_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from herald.serve import load_config

    monkeypatch.setenv("HERALD_SHADOW_TEST_KEY", "shadow-test-key-0123456789")
    (tmp_path / "herald.toml").write_text(
        '[serve]\nrules_check_interval = 0.5\n[serve.api_keys]\nt = { env = "HERALD_SHADOW_TEST_KEY" }\n'
        '[[serve.shadow]]\ntype = "otp"\nprovider = "a"\ncandidate = "b"\npercent = 10\n', encoding="utf-8")
    config = load_config(tmp_path / "herald.toml")
    assert config.shadow == (Shadow("otp", "a", "b", 10),) and config.rules_check_interval == 0.5
    (tmp_path / "herald.toml").write_text(
        '[serve]\n[serve.api_keys]\nt = { env = "HERALD_SHADOW_TEST_KEY" }\n'
        '[[serve.shadow]]\ntype = "otp"\nprovider = "a"\ncandidate = "b"\npercent = 10\nshare = 3\n', encoding="utf-8")
    with pytest.raises(herald.ConfigError) as err:
        load_config(tmp_path / "herald.toml")
    assert err.value.field == "serve.shadow[0].share"


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def test_shadow_traffic_end_to_end_and_the_comparison_matches_the_traces(tmp_path: Path, sandbox: Sandbox) -> None:
    """300 notifications, 30% shadowed to a candidate that fails a fifth of its requests (the
    notification then retries and fails over to the backup); every fifth recipient's number is
    undeliverable (a failed receipt). compare_providers' figures must equal those counted from
    each notification's trace and status."""
    sandbox.set_faults("sms-candidate", error_rate=0.2, error_status=503)
    shadow = Shadow("otp", "sms-primary", "sms-candidate", 30)
    providers = [sandbox.provider("sms-primary", cost_per_message=0.0075, max_attempts=1),
                 sandbox.provider("sms-candidate", cost_per_message=0.005, max_attempts=1),
                 sandbox.provider("sms-backup", cost_per_message=0.01)]
    rules = RuleSet({"otp": lambda n: Plan("sms", ["sms-primary", "sms-backup"], "code {code}")})
    started = time.time()
    with Engine(tmp_path / "data", rules=rules, providers=providers, receipts="127.0.0.1:0", shadow=[shadow],
                retry_base=0.01, retry_max=0.05) as engine:
        sent = engine.send_many([
            {"type": "otp", "recipient": {"id": f"u{i}", "phone": "+15005550006" if i % 5 == 0 else f"+1555010{i:04d}"},
             "data": {"code": i}} for i in range(300)])
        assert engine.wait_idle(60)
        statuses = {r.id: engine.status(r.id) for r in sent}
        assert all(s.state == "completed" for s in statuses.values())
        wait_for(lambda: all((s := engine.status(i)) and s.receipt for i in statuses), timeout=20,
                 what="a receipt for every notification")
        statuses = {i: engine.status(i) for i in statuses}
        figures = engine.compare_providers(["sms-primary", "sms-candidate", "sms-backup"], since=started - 1)
        traces = {i: engine.trace(i) for i in statuses}

    shadowed = {i for i in statuses if takes(shadow, i)}
    assert 0.2 <= len(shadowed) / 300 <= 0.4
    assert {m["provider"] for m in sandbox.messages()} >= {"sms-primary", "sms-candidate"}
    for i, trace in traces.items():
        first = "sms-candidate" if i in shadowed else "sms-primary"
        assert next(e for e in trace if e.event == "sending").provider == first

    for name, f in figures.items():
        answers = [e for t in traces.values() for e in t if e.provider == name and e.event in ("accepted", "attempt_failed")]
        accepted = [e.latency_ms for e in answers if e.event == "accepted"]
        done = [s for s in statuses.values() if s.provider == name]
        assert (f.attempts, f.accepted, f.completed) == (len(answers), len(accepted), len(done)), name
        assert f.acceptance_rate == pytest.approx(len(accepted) / len(answers))
        assert f.latency_p50_ms == pytest.approx(nearest_rank(accepted, 50))
        assert f.latency_p99_ms == pytest.approx(nearest_rank(accepted, 99))
        assert f.delivered == sum(s.receipt == "delivered" for s in done)
        assert f.failed == sum(s.receipt == "failed" for s in done)
        assert f.delivered + f.failed == f.completed and f.bounced == 0
        assert f.cost == pytest.approx(sum(s.cost for s in done))
    primary, candidate = figures["sms-primary"], figures["sms-candidate"]
    assert primary.acceptance_rate == 1.0 and primary.attempts == 300 - len(shadowed)
    assert candidate.attempts == len(shadowed) and 0.6 <= candidate.acceptance_rate <= 0.95
    assert figures["sms-backup"].completed == candidate.attempts - candidate.accepted  # the candidate's failures
    assert primary.cost == pytest.approx(primary.completed * 0.0075)
    # Every fifth recipient is undeliverable, wherever it went.
    assert (primary.failed + candidate.failed + figures["sms-backup"].failed) == 60
    table = format_comparison(figures)
    assert table.splitlines()[0].split() == ["sms-primary", "sms-candidate", "sms-backup"]


def test_the_comparison_window_and_type(tmp_path: Path, sandbox: Sandbox) -> None:
    rules = RuleSet({"otp": lambda n: Plan("sms", ["a"], "x"), "news": lambda n: Plan("sms", ["a"], "y")})
    with Engine(tmp_path / "data", rules=rules, providers=[sandbox.provider("a")]) as engine:
        engine.send_many([{"type": "otp", "recipient": "u"}] * 3 + [{"type": "news", "recipient": "u"}] * 2)
        assert engine.wait_idle(20)
        assert engine.compare_providers(["a"])["a"].attempts == 5
        assert engine.compare_providers(["a"], type="news")["a"].attempts == 2
        assert engine.compare_providers(["a"], since=time.time() + 60)["a"].attempts == 0
        empty = engine.compare_providers(["a", "nobody"])["nobody"]
        assert (empty.attempts, empty.acceptance_rate, empty.latency_p50_ms) == (0, None, None)
        with pytest.raises(herald.ConfigError, match="providers"):
            engine.compare_providers([])
    # The same figures from the folder alone, without an engine.
    assert compare_providers(tmp_path / "data", ["a"], type="otp")["a"].completed == 3


def test_herald_compare_prints_the_figures_from_the_folder(tmp_path: Path, sandbox: Sandbox) -> None:
    import json
    import subprocess
    import sys

    rules = RuleSet({"otp": lambda n: Plan("sms", ["a"], "x")})
    with Engine(tmp_path / "data", rules=rules, providers=[sandbox.provider("a", cost_per_message=0.5),
                                                           sandbox.provider("b")],
                shadow=[Shadow("otp", "a", "b", 50)]) as engine:
        engine.send_many([{"type": "otp", "recipient": "u"}] * 20)
        assert engine.wait_idle(20)
        expected = engine.compare_providers(["a", "b"], since=time.time() - 3600)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "herald", "compare", *args, "--data-dir",
                                   str(tmp_path / "data")], capture_output=True, text=True, timeout=60, check=False)

        # Beside the running engine: the folder is read, not locked.
        result = cli("a", "b", "--since", "1h", "--json")
        assert result.returncode == 0, result.stderr
        got = json.loads(result.stdout)
        assert {k: (v["attempts"], v["cost"]) for k, v in got.items()} == {
            k: (v.attempts, v.cost) for k, v in expected.items()}
        assert got["a"]["attempts"] + got["b"]["attempts"] == 20
        table = cli("a", "b", "--type", "otp")
        assert table.returncode == 0 and table.stdout.split("\n")[1].split() == [
            "attempts", str(expected["a"].attempts), str(expected["b"].attempts)]
        bad = cli("a", "--since", "yesterday")
        assert bad.returncode == 2 and "--since: not a duration" in bad.stderr


def test_a_catch_all_shadow_covers_the_types_without_their_own() -> None:
    from types import SimpleNamespace

    rules = RuleSet({"*": lambda n: Plan("sms", ["p", "q"], "x")})
    every = Shadow("*", "p", "c", 100)
    own = Shadow("otp", "q", "d", 100)
    route = rules.router(["p", "q", "c", "d"], [every, own])
    plans = route([SimpleNamespace(type="news", id=1, data={}), SimpleNamespace(type="otp", id=2, data={})])
    assert [p.providers for p in plans] == [("c", "q"), ("p", "d")]  # otp has its own: the catch-all skips it
    none = rules.router(["p", "q", "c"], [Shadow("*", "p", "c", 0)])
    assert none([SimpleNamespace(type="news", id=1, data={})])[0].providers == ("p", "q")
