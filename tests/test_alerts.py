"""Alert rules: the evaluator's transitions (pure: samples in, transitions out, hysteresis), the
signals it reads from the metrics, and an end-to-end run on a ManualClock where a window of
injected SMS failures at the sandbox makes an alert fire once and resolve once, each time with one
event in the delivery log and one notification delivered to the sandbox's Slack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import herald
from herald import Alert, Engine, ManualClock, Plan, RuleSet, Sandbox
from herald.alerts import AlertEvaluator, Sample, Window, dead_letters, failure_rate, latency_quantile, parse_metrics, spend
from support import wait_for

T0 = 1_800_000_000.0


def attempts(accepted: float, failed: float, channel: str = "sms") -> Sample:
    """A sample with these attempt counters (since start) on one channel."""
    key = lambda outcome: ("herald_channel_attempts_total", frozenset({("channel", channel), ("outcome", outcome)}))
    return {key("accepted"): accepted, key("retryable"): failed}


def feed(ev: AlertEvaluator, rates: list[float], per_step: int = 100, step: float = 10.0) -> list[tuple[float, str]]:
    """Feeds one sample per step in which `per_step` attempts fail at the given rates; returns the
    transitions as (seconds since T0, state)."""
    ok = bad = 0.0
    out = []
    for i, rate in enumerate(rates):
        bad += round(per_step * rate)
        ok += per_step - round(per_step * rate)
        for t in ev.observe(T0 + i * step, attempts(ok, bad)):
            out.append((t.at - T0, t.state))
    return out


def sms_alert(**kw: Any) -> Alert:
    options: dict[str, Any] = {"above": 0.05, "for_": 120, "clear_below": 0.02, "clear_for": 60}
    options.update(kw)
    # over=10 with samples 10 s apart: each step's own rate, so the cases below read plainly.
    return Alert("sms_failures", failure_rate(channel="sms", over=10), **options)


# -- the evaluator -------------------------------------------------------------------------------


def test_fires_only_once_the_condition_held_for_for_() -> None:
    ev = AlertEvaluator([sms_alert()])
    # 0.10 from step 1 (t=10): pending at 10, firing at 130 = 10 + 120, once.
    got = feed(ev, [0.0] + [0.10] * 20)
    assert got == [(130.0, "firing")]
    assert ev.state("sms_failures") == "firing"


def test_a_short_burst_stays_pending_and_falls_back_without_a_transition() -> None:
    ev = AlertEvaluator([sms_alert()])
    got = feed(ev, [0.0] + [0.5] * 11 + [0.0] * 5)  # above for 110 s < 120 s
    assert got == []
    assert ev.state("sms_failures") == "ok"


def test_a_rate_flapping_around_the_threshold_never_fires() -> None:
    ev = AlertEvaluator([sms_alert()])
    assert feed(ev, [0.06, 0.04] * 30) == []


def test_hysteresis_between_the_two_thresholds_keeps_it_firing() -> None:
    ev = AlertEvaluator([sms_alert()])
    rates = [0.2] * 14          # fires at 130
    rates += [0.03] * 20        # below `above` but not below clear_below: still firing
    rates += [0.01] * 5         # clear for 40 s < clear_for
    rates += [0.03]             # not clear again: resolving -> firing, no transition
    rates += [0.0] * 7          # clear from t=400 for 60 s: resolved at 460
    got = feed(ev, rates)
    assert got == [(130.0, "firing"), (460.0, "resolved")]
    assert ev.state("sms_failures") == "ok"


def test_resolving_then_firing_again_needs_the_full_for_again() -> None:
    ev = AlertEvaluator([sms_alert(for_=30, clear_for=30)])
    # pending at 10 (step 0 has no earlier sample to measure from), firing at 40; clear from 50,
    # resolved at 80; pending again at 90, firing at 120.
    got = feed(ev, [0.2] * 5 + [0.0] * 4 + [0.2] * 5)
    assert got == [(40.0, "firing"), (80.0, "resolved"), (120.0, "firing")]


def test_no_attempts_counts_as_clear_and_zero_delays_act_at_once() -> None:
    ev = AlertEvaluator([sms_alert(for_=0, clear_for=0)])
    assert ev.observe(T0, attempts(0, 0)) == []  # the first sample is the base
    assert [t.state for t in ev.observe(T0 + 10, attempts(0, 5))] == ["firing"]
    assert [t.state for t in ev.observe(T0 + 20, attempts(0, 5))] == ["resolved"]  # nothing new in 10 s


def test_min_attempts_ignores_a_window_with_too_few() -> None:
    a = Alert("sms", failure_rate(channel="sms", over=10, min_attempts=20), above=0.05, for_=0)
    ev = AlertEvaluator([a])
    assert ev.observe(T0, attempts(0, 0)) == []
    assert ev.observe(T0 + 10, attempts(0, 10)) == []  # 10 failures of 10, but fewer than 20
    assert [t.state for t in ev.observe(T0 + 20, attempts(10, 30))] == ["firing"]


def test_the_window_measures_from_the_sample_at_its_start() -> None:
    w = Window(60)
    for i in range(10):
        w.add(T0 + 10 * i, attempts(10 * i, 0))
    assert w.increase(60, "herald_channel_attempts_total", channel="sms") == 60
    # Kept: the samples of the last 60 s and the one at its start (T0+30..T0+90). Asked about
    # longer, it measures from the oldest it kept.
    assert len(w.samples) == 7
    assert w.increase(600, "herald_channel_attempts_total") == 60
    with pytest.raises(ValueError, match="time order"):
        w.add(T0, {})


# -- the signals against the core's metrics -------------------------------------------------------------


def histogram(counts: dict[str, int], priority: str = "critical") -> Sample:
    """Cumulative buckets of herald_accept_latency_seconds."""
    out: Sample = {}
    for le, n in counts.items():
        out[("herald_accept_latency_seconds_bucket", frozenset({("priority", priority), ("le", le)}))] = n
    return out


def test_latency_quantile_interpolates_within_its_bucket() -> None:
    q = latency_quantile(0.99, priority="critical", over=300)
    w = Window(300)
    w.add(T0, histogram({"1": 0, "5": 0, "10": 0, "+Inf": 0}))
    w.add(T0 + 60, histogram({"1": 90, "5": 98, "10": 100, "+Inf": 100}))
    # rank 99 lies in (5, 10] holding 2: halfway -> 7.5 s
    assert q.value(w) == pytest.approx(7.5)
    w.add(T0 + 120, histogram({"1": 190, "5": 198, "10": 200, "+Inf": 200}))
    assert q.value(w) == pytest.approx(5.0)  # rank 198 of 200: the top of (1, 5]
    assert latency_quantile(0.5, over=300).value(w) == pytest.approx(1 * 100 / 190)


def test_dead_letters_and_spend_read_their_counters() -> None:
    def sample(dead: int, spent: float) -> Sample:
        return {("herald_notifications_final_total", frozenset({("type", "otp"), ("priority", "normal"),
                                                                ("state", "dead_lettered")})): dead,
                ("herald_notifications_final_total", frozenset({("type", "otp"), ("priority", "normal"),
                                                                ("state", "completed")})): 1000,
                ("herald_spend_total", frozenset({("provider", "sms")})): spent}
    w = Window(300)
    w.add(T0, sample(3, 10.0))
    w.add(T0 + 60, sample(5, 85.0))
    assert dead_letters(over=60).value(w) == 2
    assert spend(100.0).value(w) == pytest.approx(0.85)
    assert spend(100.0, over=60).value(w) == pytest.approx(0.75)


def test_parse_metrics_reads_labels_with_escapes() -> None:
    text = ('# HELP x y\n# TYPE x counter\nx{a="q\\"uote",b="back\\\\slash"} 3\nplain 4.5\n'
            'herald_alert_firing{alert="sms"} 1\n')
    got = parse_metrics(text)
    assert got[("x", frozenset({("a", 'q"uote'), ("b", "back\\slash")}))] == 3
    assert got[("plain", frozenset())] == 4.5
    assert got[("herald_alert_firing", frozenset({("alert", "sms")}))] == 1


def test_bad_alerts_name_the_field() -> None:
    with pytest.raises(herald.ConfigError, match=r"alerts\.x\.clear_below: must not exceed above") as e:
        Alert("x", failure_rate(), above=0.05, clear_below=0.1)
    assert e.value.field == "alerts.x.clear_below"
    with pytest.raises(herald.ConfigError, match=r"alerts\.x\.for_: must be a number of seconds"):
        Alert("x", failure_rate(), above=0.05, for_=-1)
    with pytest.raises(herald.ConfigError, match=r"alerts\.name"):
        Alert("has space", failure_rate(), above=1)
    with pytest.raises(herald.ConfigError, match=r"alerts\.x\.signal"):
        Alert("x", "failure_rate", above=1)  # type: ignore[arg-type]
    with pytest.raises(herald.ConfigError, match="q: must be a number between 0 and 1"):
        latency_quantile(99)
    with pytest.raises(herald.ConfigError, match="alerts.a: two alerts have this name"):
        AlertEvaluator([Alert("a", dead_letters(), above=0), Alert("a", dead_letters(), above=0)])


def test_an_alert_whose_type_no_rule_routes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(herald.ConfigError, match=r"alerts\.dl\.notify: no rule routes type 'herald_alert'"):
        Engine(tmp_path / "d", rules=RuleSet({"otp": lambda n: Plan("sms", ["x"])}), providers=[],
               alerts=[Alert("dl", dead_letters(), above=0)])


def test_alerts_in_a_rules_directory_are_found(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ops.py").write_text(
        "from herald import Alert, Plan, dead_letters, rule\n"
        "@rule('herald_alert')\n"
        "def alerts(n):\n"
        "    return Plan('chat', ['box'], '{text}')\n"
        "DEAD = Alert('dead_letters_growing', dead_letters(over=300), above=0, for_=0)\n", "utf-8")
    with Sandbox() as sandbox, Engine(tmp_path / "d", rules=rules, providers=[sandbox.provider("box")]) as engine:
        assert engine.alert_states() == {"dead_letters_growing": "ok"}
        assert 'herald_alert_firing{alert="dead_letters_growing"} 0' in engine.metrics()


# -- end to end ---------------------------------------------------------------------------------------


def test_an_sms_failure_window_fires_once_and_resolves_once(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    rules = RuleSet({
        "otp": lambda n: Plan("sms", ["sms"], "Your code is {code}"),
        "herald_alert": lambda n: Plan("chat", ["slack"], "{text}"),
    })
    alert = Alert("sms_failures", failure_rate(channel="sms", over=60), above=0.05, for_=120,
                  clear_below=0.02, clear_for=60, recipient={"id": "ops"}, summary="SMS codes are not arriving")
    data_dir = tmp_path / "data"
    with Sandbox() as sandbox:
        # The failure window must reach the alert: the circuit breaker would stop sending to it.
        providers = [sandbox.provider("sms", max_attempts=1, circuit_consecutive_failures=0, circuit_failure_rate=0),
                     {"name": "slack", "kind": "slack", "max_attempts": 3,
                      "secrets": {"webhook_url": f"{sandbox.url}/services/T000/B000/XXXX"}}]
        with Engine(data_dir, rules=rules, providers=providers, clock=clock, alerts=[alert],
                    alert_interval=10) as engine:
            wait_for(lambda: engine.alerts_evaluated_at == clock.now(), what="the first evaluation")
            states: list[tuple[float, str]] = []
            gauges: list[str] = []
            for step in range(50):
                t = step * 10
                if t == 60:
                    sandbox.set_faults("sms", error_rate=0.5, error_status=503)  # the failure window...
                if t == 300:
                    sandbox.clear_faults()                                       # ...ends
                ids = [engine.send("otp", {"id": f"u{step}-{i}", "phone": "+15551230000"}, {"code": str(i)}).id
                       for i in range(5)]
                for i in ids:
                    engine.wait(i)
                clock.advance(10)
                wait_for(lambda: engine.alerts_evaluated_at == clock.now(), what=f"the evaluation at {t + 10} s")
                states.append((t + 10, engine.alert_states()["sms_failures"]))
                gauges.append(next(line for line in engine.metrics().splitlines()
                                   if line.startswith('herald_alert_firing{alert="sms_failures"}')))
            slack = wait_for(lambda: len(m := [x for x in sandbox.messages() if x.get("service") == "slack"]) == 2
                             and m, what="two alert messages at the sandbox's Slack")
            engine.flush()

    # Pending from the first evaluation with failures, firing 120 s later, and not a single
    # flip back and forth in between or after.
    changes = [(t, s) for i, (t, s) in enumerate(states) if i == 0 or states[i - 1][1] != s]
    assert [s for _, s in changes] == ["ok", "pending", "firing", "resolving", "ok"], changes
    fired_at = next(t for t, s in changes if s == "firing")
    pending_at = next(t for t, s in changes if s == "pending")
    assert fired_at - pending_at == 120
    resolved_at = changes[-1][0]
    assert 300 < resolved_at <= 300 + 60 + 60 + 10  # the window empties, then clear for 60 s
    assert {g.split()[-1] for g, (t, s) in zip(gauges, states) if s in ("firing", "resolving")} == {"1"}
    assert gauges[-1].endswith(" 0")

    assert [m["text"].split()[1] for m in slack] == ["FIRING", "RESOLVED"]
    assert "sms_failures" in slack[0]["text"] and "SMS codes are not arriving" in slack[0]["text"]

    lines = [json.loads(line) for seg in sorted((data_dir / "log").glob("events-*.jsonl"))
             for line in seg.read_text("utf-8").splitlines()]
    alerts = [line for line in lines if line["event"].startswith("alert_")]
    assert [(a["event"], a["alert"], a["id"]) for a in alerts] == [
        ("alert_firing", "sms_failures", "0"), ("alert_resolved", "sms_failures", "0")]
    assert alerts[0]["ts_us"] == round((T0 + fired_at) * 1e6)
    assert "failure rate (channel=sms)" in alerts[0]["detail"]
    # The failed attempts carry the sandbox's own error code; the accepted ones their SMS parts.
    failed = [line for line in lines if line["event"] == "attempt_failed"]
    assert failed and all(line["http_status"] == 503 for line in failed)
    assert {line.get("provider_code") for line in failed} == {"injected"}  # herald JSON's error.code
    sms_accepted = [line for line in lines if line["event"] == "accepted" and line.get("channel") == "sms"]
    assert sms_accepted and all(line["segments"] == 1 for line in sms_accepted)
