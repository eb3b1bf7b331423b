"""GET /metrics and Engine.metrics(): the Prometheus text format, read by prometheus_client's parser."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from herald import Engine, Sandbox


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample as (name, labels) -> value; the parser raises on anything outside the format."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_final_states_attempts_and_latency(make_engine: Callable[..., Engine], sandbox: Sandbox) -> None:
    engine = make_engine()
    # The primary refuses every request for good: each OTP fails over to the backup.
    sandbox.set_faults("primary", error_rate=1.0, error_status=400)
    ids = [engine.send("otp", {"id": f"u{i}", "phone": f"+1555010{i}"}, {"code": "1"}, priority="critical").id
           for i in range(5)]
    bulk = [engine.send("news", {"id": f"n{i}", "email": f"n{i}@example.test"}, priority="bulk").id for i in range(3)]
    for id in ids + bulk:
        engine.wait(id, timeout=20)
    families = {f.name: f for f in text_string_to_metric_families(engine.metrics())}
    samples = _samples(engine.metrics())

    assert families["herald_notifications_final"].type == "counter"
    assert _value(samples, "herald_notifications_final_total", type="otp", priority="critical", state="completed") == 5
    # news has only the refusing primary: dead-lettered.
    assert _value(samples, "herald_notifications_final_total", type="news", priority="bulk", state="dead_lettered") == 3
    assert _value(samples, "herald_attempts_total", provider="primary", outcome="permanent") == 8
    assert _value(samples, "herald_attempts_total", provider="backup", outcome="accepted") == 5
    assert _value(samples, "herald_failovers_total") >= 5
    assert _value(samples, "herald_notifications_received_total") == 8

    assert families["herald_accept_latency_seconds"].type == "histogram"
    assert _value(samples, "herald_accept_latency_seconds_count", priority="critical") == 5
    assert _value(samples, "herald_accept_latency_seconds_count", priority="bulk") == 0  # none accepted
    assert _value(samples, "herald_accept_latency_seconds_bucket", priority="critical", le="+Inf") == 5
    assert _value(samples, "herald_accept_latency_seconds_sum", priority="critical") > 0
    # Buckets are cumulative: never decreasing with le.
    buckets = sorted(((float(dict(labels)["le"]), v) for (name, labels), v in samples.items()
                      if name == "herald_provider_request_seconds_bucket" and ("provider", "backup") in labels))
    assert [v for _, v in buckets] == sorted(v for _, v in buckets) and buckets[-1][1] == 5
    assert _value(samples, "herald_provider_request_seconds_count", provider="primary") == 8

    for lane in ("critical", "high", "normal", "bulk"):
        assert _value(samples, "herald_queue_depth", lane=lane, where="lane") == 0
        assert ("herald_queue_depth", frozenset({("lane", lane), ("where", "provider")})) in samples
    assert _value(samples, "herald_active") == 0 and _value(samples, "herald_in_flight") == 0
    assert _value(samples, "herald_store_degraded") == 0


def test_metrics_gauges_show_a_held_back_queue(make_engine: Callable[..., Engine]) -> None:
    import time

    engine = make_engine()
    for i in range(4):
        engine.send("solo", {"id": f"s{i}", "phone": "+15550100"}, send_at=time.time() + 3600)
    samples = _samples(engine.metrics())
    assert _value(samples, "herald_scheduled") == 4
    assert _value(samples, "herald_active") == 4
