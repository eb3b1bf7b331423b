"""herald's benchmarks. Prints one line per figure and writes bench/results/latest.json.

Each scenario runs in a fresh process (clean RSS, no warm caches from another scenario), against
the sandbox on loopback and a durable SQLite store in a temporary directory.

    python bench/run.py                 # every scenario
    python bench/run.py --only e2e      # one scenario

The close-to-the-wire comparison (herald and plain libcurl against an nginx sink) is in
wire_bench.py; the herald serve scenarios (serve_send, serve_send_many, serve_e2e) are in serve_bench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import serve_bench
import wire_bench

RESULTS = Path(__file__).with_name("results")


def _rules():
    from herald import Plan, RuleSet

    return RuleSet(
        {
            "campaign": lambda n: Plan("email", ["email"], "{headline|News}"),
            "otp": lambda n: Plan("sms", ["sms"], "Your code is {code}"),
        }
    )


def _engine(data_dir: Path, sandbox, **options):
    from herald import Engine

    providers = [sandbox.provider("email", concurrency=128), sandbox.provider("sms", concurrency=32)]
    return Engine(data_dir, rules=_rules(), providers=providers, **options)


def _campaign(n: int, prefix: str = "c", send_at: float | None = None) -> list[dict]:
    """Bulk notifications; with `send_at` they stay queued (held back) instead of being delivered."""
    items = [
        {"type": "campaign", "recipient": {"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.test"},
         "data": {"headline": "Autumn sale"}, "priority": "bulk"}
        for i in range(n)
    ]
    if send_at is not None:
        for item in items:
            item["send_at"] = send_at
    return items


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def scenario_e2e(tmp: Path) -> dict:
    """Notifications/s from send_many to every one accepted: one rule call each, durable store."""
    from herald import Sandbox, _core

    total = 100_000
    with Sandbox() as sandbox:
        raw = _core._raw_http_rate(sandbox.url + "/v1/raw/messages", total, 128)
        sandbox.clear()
        items = _campaign(total)
        with _engine(tmp / "e2e", sandbox) as engine:
            t0 = time.perf_counter()
            engine.send_many(items)
            assert engine.wait_idle(600)
            seconds = time.perf_counter() - t0
            stats = engine.stats()
        assert sandbox.stats()["accepted"] == total, sandbox.stats()
    e2e = total / seconds
    return {
        "e2e_per_s": round(e2e),
        "raw_http_per_s": round(raw["per_s"]),
        "e2e_vs_raw_http_ratio": round(e2e / raw["per_s"], 3),
        "e2e_attempts": stats["attempts"],
    }


def scenario_cascade(tmp: Path) -> dict:
    """Two-step plans whose first step always fails (SMS refused by both providers, then email),
    end to end, against one-step plans in the same process and sandbox; and the delivery
    machine's transitions per second without I/O."""
    from herald import Engine, Plan, RuleSet, Sandbox, Step, _core

    total = 20_000
    rules = RuleSet({
        "one": lambda n: Plan("email", ["email"], "{headline|News}"),
        "two": lambda n: Plan.cascade(Step("sms", ["sms"], text="{headline|News}"),
                                      Step("email", ["email"], text="{headline|News}")),
    })
    figures: dict[str, float] = {}
    with Sandbox() as sandbox:
        sandbox.set_faults("sms", error_rate=1.0, error_status=400)
        providers = [sandbox.provider("email", concurrency=128), sandbox.provider("sms", concurrency=128)]
        for kind in ("one", "two"):
            items = [{"type": kind, "recipient": {"id": f"u{i}", "email": f"u{i}@example.test", "phone": "+15550001"},
                      "data": {"headline": "Autumn sale"}} for i in range(total)]
            with Engine(tmp / kind, rules=rules, providers=providers) as engine:
                t0 = time.perf_counter()
                engine.send_many(items)
                assert engine.wait_idle(600)
                figures[f"{kind}_step_e2e_per_s"] = total / (time.perf_counter() - t0)
                assert engine.stats()["dead_lettered"] == 0, engine.stats()
    machine = _core._machine_rate(1_000_000)
    return {
        "one_step_e2e_per_s": round(figures["one_step_e2e_per_s"]),
        "two_step_cascade_e2e_per_s": round(figures["two_step_e2e_per_s"]),
        "machine_one_step_transitions_per_s": round(machine["one_step_transitions_per_s"]),
        "machine_cascade_transitions_per_s": round(machine["cascade_transitions_per_s"]),
    }


def scenario_send_latency(tmp: Path) -> dict:
    """send() latency, one caller, each call returning once durable (delivery runs meanwhile)."""
    from herald import Sandbox

    with Sandbox() as sandbox, _engine(tmp / "lat", sandbox) as engine:
        for i in range(500):  # warm-up
            engine.send("otp", f"w{i}", {"code": "1"})
        samples = []
        for i in range(10_000):
            t0 = time.perf_counter_ns()
            engine.send("otp", f"u{i}", {"code": "123456"}, priority="critical")
            samples.append((time.perf_counter_ns() - t0) / 1000)
        engine.wait_idle(120)
    samples.sort()
    return {
        "send_p50_us": round(samples[len(samples) // 2], 1),
        "send_p99_us": round(samples[int(len(samples) * 0.99)], 1),
        "send_max_us": round(samples[-1], 1),
    }


def scenario_send_many(tmp: Path) -> dict:
    """Intake rate of send_many (validated, deduplicated, durable), delivery held back by send_at."""
    from herald import Sandbox

    total = 200_000
    items = _campaign(total, send_at=time.time() + 3600)
    with Sandbox() as sandbox, _engine(tmp / "many", sandbox) as engine:
        t0 = time.perf_counter()
        engine.send_many(items, chunk=10_000)
        seconds = time.perf_counter() - t0
    return {"send_many_per_s": round(total / seconds)}


def scenario_otp_under_backlog(tmp: Path) -> dict:
    """Enqueue-to-accepted of critical OTPs sent while 100,000 bulk notifications are queued."""
    from herald import Sandbox
    from herald.latency import accepted_latencies, percentile

    with Sandbox() as sandbox:
        with _engine(tmp / "otp", sandbox) as engine:
            engine.send_many(_campaign(100_000))
            ids = set()
            for i in range(300):
                ids.add(engine.send("otp", f"o{i}", {"code": "1"}, priority="critical").id)
                time.sleep(0.002)
            backlog_left = engine.stats()["active"]
            assert engine.wait_idle(600)
            log_dir = engine.data_dir / "log"
        lat = accepted_latencies(log_dir, ids)["critical"]
    return {
        "otp_p50_ms_under_backlog": round(percentile(lat, 50), 2),
        "otp_p99_ms_under_backlog": round(percentile(lat, 99), 2),
        "otp_backlog_when_last_sent": backlog_left,
    }


def scenario_rss(tmp: Path) -> dict:
    """Resident memory per queued notification (100,000 held by a future send_at)."""
    from herald import Sandbox

    total = 100_000
    items = _campaign(total, send_at=time.time() + 3600)
    with Sandbox() as sandbox, _engine(tmp / "rss", sandbox) as engine:
        engine.send("otp", "warm", {"code": "1"})
        engine.wait_idle(10)
        before = _rss_bytes()
        engine.send_many(items)
        engine.flush()
        after = _rss_bytes()
    del items
    return {
        "rss_bytes_per_queued": round((after - before) / total),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def _keys(tmp: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import provider_keys

    return provider_keys


def scenario_email_batching(tmp: Path) -> dict:
    """SendGrid mail/send: personalizations batched (up to 1,000 a request) against one request each,
    on loopback and with 20 ms added to every answer (an API across a network)."""
    from herald import Engine, Plan, RuleSet, Sandbox

    total = 50_000
    figures = {}
    with Sandbox() as sandbox:
        sandbox.set_callbacks("sendgrid", enabled=False)
        for latency in (0, 20):
            sandbox.set_faults("sendgrid", latency_ms=latency)
            suffix = "" if latency == 0 else f"_{latency}ms"
            for label, batch in (("batched", True), ("single", False)):
                rules = RuleSet({"digest": lambda n, b=batch: Plan("email", ["mail"], "Hello {name}", batch=b)})
                mail = {"name": "mail", "kind": "sendgrid", "url": sandbox.url, "concurrency": 64,
                        "settings": {"from": "news@herald.test", "subject": "Digest"},
                        "secrets": {"api_key": "SG.bench"}}
                items = [{"type": "digest", "recipient": {"id": f"u{i}", "email": f"u{i}@example.test"},
                          "data": {"name": f"N{i}"}, "priority": "bulk"} for i in range(total)]
                sandbox.clear()
                with Engine(tmp / f"{label}{suffix}", rules=rules, providers=[mail]) as engine:
                    t0 = time.perf_counter()
                    engine.send_many(items)
                    assert engine.wait_idle(900)
                    seconds = time.perf_counter() - t0
                    stats = engine.stats()
                assert len(sandbox.messages()) == total
                figures[f"email_{label}{suffix}_per_s"] = round(total / seconds)
                if batch:
                    figures[f"email_batched{suffix}_requests"] = stats["batched_requests"]
            figures[f"email_batching_speedup{suffix}"] = round(
                figures[f"email_batched{suffix}_per_s"] / figures[f"email_single{suffix}_per_s"], 2)
    return figures


def scenario_apns_http2(tmp: Path) -> dict:
    """APNs pushes over one multiplexed HTTP/2 (h2c) connection against HTTP/1.1 keep-alive connections."""
    from herald import Engine, Plan, RuleSet, Sandbox

    total = 30_000
    key = _keys(tmp).private_key_pem("ec", tmp)
    figures = {}
    with Sandbox(h2c_port=0) as sandbox:
        for label, mode, url in (("h2", "prior_knowledge", sandbox.h2c_url), ("h1", "off", sandbox.url)):
            rules = RuleSet({"push": lambda n: Plan("push", ["apns"], "{text}")})
            apns = {"name": "apns", "kind": "apns", "url": url, "concurrency": 100,
                    "settings": {"key_id": "K1", "team_id": "T1", "topic": "bench.app", "http2": mode},
                    "secrets": {"private_key": key}}
            items = [{"type": "push", "recipient": {"id": f"u{i}", "apns_token": f"{i:064x}"},
                      "data": {"text": "hi"}} for i in range(total)]
            sandbox.clear()
            with Engine(tmp / label, rules=rules, providers=[apns]) as engine:
                t0 = time.perf_counter()
                engine.send_many(items)
                assert engine.wait_idle(900)
                seconds = time.perf_counter() - t0
                attempts = engine.stats()["attempts"]
            figures[f"apns_{label}_per_s"] = round(total / seconds)
            # libcurl 7.88 (Debian bookworm) breaks reused h2c connections (curl#10634): retries show it.
            figures[f"apns_{label}_attempts_per_push"] = round(attempts / total, 2)
    figures["apns_h2_over_h1"] = round(figures["apns_h2_per_s"] / figures["apns_h1_per_s"], 2)
    return figures


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _retention_run(tmp: Path, retention: bool) -> dict:
    """1,000,000 notifications end to end in chunks; with retention on, the pruner keeps the disk
    bounded (database live pages 200 MB, log 100 MB, looked at every 2 s)."""
    from herald import Sandbox

    total, chunk = 1_000_000, 50_000
    from herald import Retention

    if retention:
        options = {"retention": Retention(max_db_bytes=200 << 20, log_max_bytes=100 << 20, interval=2.0)}
    else:
        options = {"retention": Retention(interval=0)}
    data_dir = tmp / "retention"
    peak = 0
    with Sandbox() as sandbox:
        with _engine(data_dir, sandbox, **options) as engine:
            t0 = time.perf_counter()
            for start in range(0, total, chunk):
                engine.send_many(_campaign(chunk, prefix=f"r{start}-"))
                if start % (4 * chunk) == 0:
                    peak = max(peak, _du(data_dir))
                sandbox.clear()
            assert engine.wait_idle(1200)
            seconds = time.perf_counter() - t0
            if retention:
                engine.prune()
            stats = engine.stats()
        disk = _du(data_dir)
    key = "retention_on" if retention else "retention_off"
    return {
        f"{key}_1m_per_s": round(total / seconds),
        f"{key}_1m_disk_bytes": disk,
        f"{key}_1m_peak_disk_bytes": max(peak, disk),
        f"{key}_1m_pruned": stats["pruned"],
    }


def scenario_retention_on(tmp: Path) -> dict:
    return _retention_run(tmp, True)


def scenario_retention_off(tmp: Path) -> dict:
    return _retention_run(tmp, False)


def scenario_wire(tmp: Path) -> dict:
    """herald against plain libcurl multi to an nginx sink, alternating, 3 runs each (wire_bench.py)."""
    w = wire_bench.measure(n=20_000, reps=3)
    return {
        "wire_raw_curl_per_s": w["raw_curl_per_s"]["median"],
        "wire_herald_per_s": w["herald_per_s"]["median"],
        "wire_herald_vs_raw": w["herald_vs_raw"]["median"],
        "wire_raw_cpu_us": w["raw_curl_cpu_us"]["median"],
        "wire_raw_beast_per_s": w["raw_beast_per_s"]["median"],
        "wire_raw_beast_cpu_us": w["raw_beast_cpu_us"]["median"],
        "wire_herald_cpu_us": w["herald_cpu_us"]["median"],
        **{f"wire_cpu_us_{t.replace('-', '_')}": v for t, v in w["herald_cpu_us_by_thread"].items()},
        "send_one_thread_per_s": w["send_one_per_s"]["median"],
        "send_one_thread_p99_us": w["send_one_p99_us"]["median"],
        "send_8_threads_per_s": w["send_8_threads_per_s"]["median"],
    }


SCENARIOS = {
    "wire": scenario_wire,
    "e2e": scenario_e2e,
    "cascade": scenario_cascade,
    "send_latency": scenario_send_latency,
    "send_many": scenario_send_many,
    "otp_under_backlog": scenario_otp_under_backlog,
    "rss": scenario_rss,
    "email_batching": scenario_email_batching,
    "apns_http2": scenario_apns_http2,
    "retention_on": scenario_retention_on,
    "retention_off": scenario_retention_off,
    **serve_bench.SCENARIOS,
}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:  # child process: run one, print its JSON
        with tempfile.TemporaryDirectory(prefix="herald-bench-") as tmp:
            print(json.dumps(SCENARIOS[args.scenario](Path(tmp))))
        return 0
    results: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "commit": _commit(),
    }
    for name in args.only or list(SCENARIOS):
        proc = subprocess.run([sys.executable, __file__, "--scenario", name], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            print(f"{name}: FAILED", file=sys.stderr)
            return 1
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        for key, value in figures.items():
            print(f"{key:<32} {value:>14,}" if isinstance(value, (int, float)) else f"{key:<32} {value}", flush=True)
        results.update(figures)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
