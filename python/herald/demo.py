"""`herald demo`: the sandbox and an engine on the embedded store, under a mixed workload.

OTPs at critical priority go out while a 100,000-recipient bulk campaign runs, with provider
faults injected by the sandbox (errors, 429s with Retry-After, latency, a short outage). Ends with
a summary: sent, failed, retried, dead-lettered, and p50/p99 enqueue-to-accepted per priority.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from herald.engine import Engine
from herald.latency import accepted_latencies, percentile
from herald.plan import Plan
from herald.rules import RuleSet
from herald.sandbox import Sandbox

__all__ = ["demo_rules", "run_demo"]


def demo_rules() -> RuleSet:
    """The demo's rules: ./routing_rules when it has them, else the same rules built in."""
    if Path("routing_rules").is_dir():
        rules = RuleSet.load("routing_rules")
        if "otp" in rules and "campaign" in rules:
            return rules
    return RuleSet(
        {
            "otp": lambda n: Plan("sms", ["sms-primary", "sms-backup"], "Your code is {code}."),
            "campaign": lambda n: Plan("email", ["email-primary", "email-backup"], "{headline|News from us}"),
        }
    )


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + "]"


def run_demo(
    data_dir: str | Path = "herald-data",
    *,
    bulk: int = 100_000,
    otps: int = 300,
    out: TextIO = sys.stdout,
    progress: bool = True,
    keep: threading.Event | None = None,
) -> dict[str, Any]:
    """Runs the demo and prints its summary. With ``keep``, the sandbox stays up afterwards (its URL
    printed) until ``keep`` is set, so the demo's traffic can be browsed on the sandbox's page."""
    run = uuid.uuid4().hex[:8]
    sandbox = Sandbox()
    try:
        sandbox.set_faults("sms-primary", error_rate=0.05, rate_limit_rate=0.03, retry_after_s=1, latency_ms=3)
        sandbox.set_faults("email-primary", error_rate=0.01, error_code="recipient_invalid", error_status=400,
                           latency_ms=1)
        providers = [
            sandbox.provider("sms-primary", concurrency=32),
            sandbox.provider("sms-backup", concurrency=16),
            sandbox.provider("email-primary", concurrency=128),
            sandbox.provider("email-backup", concurrency=64),
        ]
        with Engine(data_dir, rules=demo_rules(), providers=providers, retry_base=0.05, retry_max=2.0) as engine:
            print(f"herald demo {run}: {bulk:,} bulk emails and {otps} critical OTPs, store {engine.data_dir}/herald.db",
                  file=out)
            before = engine.stats()
            campaign = [
                {"type": "campaign", "recipient": {"id": f"user-{i}", "email": f"user-{i}@example.test"},
                 "data": {"headline": "Autumn sale", "body": "Up to 30% off"}, "priority": "bulk",
                 "idempotency_key": f"{run}-campaign-{i}"}
                for i in range(bulk)
            ]
            ids: set[int] = set()
            ids_lock = threading.Lock()

            def blast() -> None:
                for start in range(0, len(campaign), 10_000):
                    receipts = engine.send_many(campaign[start : start + 10_000])
                    with ids_lock:
                        ids.update(r.id for r in receipts)

            started = time.perf_counter()
            blaster = threading.Thread(target=blast, name="campaign")
            blaster.start()
            # A short outage of the primary email provider while the campaign runs: retries, then failover.
            sandbox.set_faults("email-primary", error_rate=0.01, error_code="recipient_invalid", error_status=400,
                               latency_ms=1, outage_for_ms=1500)
            for i in range(otps):
                r = engine.send("otp", {"id": f"user-{i}", "phone": f"+1555{i:07d}"}, {"code": f"{i:06d}"},
                                priority="critical", idempotency_key=f"{run}-otp-{i}", expires_at=300.0 + time.time())
                with ids_lock:
                    ids.add(r.id)
                time.sleep(0.005)
            blaster.join()
            total = bulk + otps
            while True:
                s = engine.stats()
                done = (s["accepted"] - before["accepted"]) + (s["dead_lettered"] - before["dead_lettered"]) + (
                    s["expired"] - before["expired"])
                if progress:
                    rate = done / max(1e-9, time.perf_counter() - started)
                    print(f"\r{_bar(done, total)} {done:>7,}/{total:,}  {rate:>8,.0f}/s", end="", file=out, flush=True)
                if s["active"] == 0:
                    break
                engine.wait_idle(0.2)
            engine.wait_idle(60)
            elapsed = time.perf_counter() - started
            if progress:
                print(file=out)
            after = engine.stats()
            delta = {k: after[k] - before.get(k, 0) for k in after if k not in ("active", "in_flight")}
            latencies = accepted_latencies(engine.data_dir / "log", ids)
        summary: dict[str, Any] = {
            "notifications": total,
            "seconds": round(elapsed, 2),
            "per_s": round(total / elapsed),
            "sent": delta["accepted"],
            "failed": delta["dead_lettered"] + delta["expired"],
            "retried": delta["retries"],
            "failed_over": delta["failovers"],
            "dead_lettered": delta["dead_lettered"],
            "sandbox_accepted": sandbox.stats()["accepted"],
            "latency_ms": {
                p: {"p50": round(percentile(v, 50), 1), "p99": round(percentile(v, 99), 1), "count": len(v)}
                for p, v in sorted(latencies.items())
            },
        }
        print(f"done in {summary['seconds']} s ({summary['per_s']:,}/s)", file=out)
        print(f"  sent {summary['sent']:,}   failed {summary['failed']:,}   retried {summary['retried']:,}   "
              f"failed over {summary['failed_over']:,}   dead-lettered {summary['dead_lettered']:,}", file=out)
        for priority, fig in summary["latency_ms"].items():
            print(f"  {priority:<8} enqueue->accepted p50 {fig['p50']:>8.1f} ms   p99 {fig['p99']:>8.1f} ms   ({fig['count']:,})",
                  file=out)
        print("  why did one fail?  herald trace <id>   (dead letters: herald dead-letters)", file=out)
        if keep is not None:
            print(f"sandbox kept running: browse the demo's messages at {sandbox.url}/  (Ctrl-C to stop)",
                  file=out, flush=True)
            keep.wait()
    finally:
        sandbox.stop()
    return summary
