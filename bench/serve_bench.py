"""Scenarios for ``herald serve``: the engine behind HTTP, driven through :class:`herald.Client`.

The server is ``python -m herald serve`` in its own process, as users run it, with the same rules
and providers as the in-process engine it is compared with (one TOML file, one rules folder);
durable SQLite in the scenario's temporary directory, the sandbox on loopback in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KEY = "bench-serve-key-0123456789"
RULES = """
from herald import Plan, rule


@rule("campaign")
def campaign(n):
    return Plan("email", ["email"], "{headline|News}")


@rule("otp")
def otp(n):
    return Plan("sms", ["sms"], "Your code is {code}")
"""


def _config(tmp: Path, sandbox, data_dir: Path) -> Path:
    """One TOML file for both: [serve] for the server, [providers] for it and the in-process engine."""
    rules = tmp / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "bench_rules.py").write_text(RULES)
    config = tmp / "herald.toml"
    config.write_text(textwrap.dedent(f"""
        [serve]
        listen = "127.0.0.1:0"
        data_dir = "{data_dir}"
        rules = "rules"
        workers = 8

        [serve.api_keys]
        bench = {{ env = "HERALD_BENCH_KEY" }}

        [providers.email]
        kind = "sandbox"
        url = "{sandbox.url}"
        concurrency = 128

        [providers.sms]
        kind = "sandbox"
        url = "{sandbox.url}"
        concurrency = 32
    """))
    return config


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class _Served:
    url: str
    pid: int


@contextmanager
def _serve(tmp: Path, sandbox, name: str) -> Iterator[_Served]:
    """Runs ``herald serve`` on a fresh data folder; yields where; stops it with SIGTERM (exit 0)."""
    config = _config(tmp, sandbox, tmp / name)
    log = tmp / f"{name}.stderr"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "herald", "serve", "--config", str(config)], cwd=tmp,
                                   env={**os.environ, "HERALD_BENCH_KEY": KEY}, stdout=subprocess.PIPE,
                                   stderr=stderr, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("herald serve listening on "):
            raise RuntimeError(f"herald serve did not start: {line!r} {log.read_text()}")
        yield _Served(line.split()[-1], process.pid)
        process.send_signal(signal.SIGTERM)
        if process.wait(timeout=120) != 0:
            raise RuntimeError(f"herald serve exited {process.returncode}: {log.read_text()}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


def _wait_accepted(sandbox, total: int, timeout: float) -> None:
    """Until the sandbox has accepted `total` messages (its own count, polled)."""
    deadline = time.monotonic() + timeout
    while sandbox.stats()["accepted"] < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sandbox accepted {sandbox.stats()['accepted']} of {total}")
        time.sleep(0.005)


def _percentiles(prefix: str, samples_ns: list[int], seconds: float) -> dict:
    samples = sorted(samples_ns)
    return {
        f"{prefix}_p50_ms": round(samples[len(samples) // 2] / 1e6, 3),
        f"{prefix}_p99_ms": round(samples[int(len(samples) * 0.99)] / 1e6, 3),
        f"{prefix}_per_s": round(len(samples) / seconds),
    }


def _timed_sends(send, n: int) -> tuple[list[int], float]:
    for i in range(200):  # warm-up: connections, caches, the first group commits
        send(f"w{i}")
    samples = []
    t0 = time.perf_counter()
    for i in range(n):
        s = time.perf_counter_ns()
        send(f"u{i}")
        samples.append(time.perf_counter_ns() - s)
    return samples, time.perf_counter() - t0


def scenario_serve_send(tmp: Path) -> dict:
    """send() one at a time from one thread, N=5000: through herald serve (Client.send, HTTP
    keep-alive) and, for comparison, on an in-process Engine with the same rules and providers."""
    from herald import Engine, Sandbox
    from herald.client import Client

    n = 5000
    figures: dict = {}
    with Sandbox() as sandbox:
        with _serve(tmp, sandbox, "serve-send") as served, Client(served.url, api_key=KEY) as client:
            samples, seconds = _timed_sends(
                lambda r: client.send("otp", r, {"code": "123456"}, priority="critical"), n)
            figures.update(_percentiles("serve_send", samples, seconds))
            _wait_accepted(sandbox, n + 200, 300)
        sandbox.clear()
        config = _config(tmp, sandbox, tmp / "unused")
        with Engine(tmp / "engine-send", rules=tmp / "rules", providers=config) as engine:
            samples, seconds = _timed_sends(
                lambda r: engine.send("otp", r, {"code": "123456"}, priority="critical"), n)
            figures.update(_percentiles("engine_send", samples, seconds))
            engine.wait_idle(300)
    figures["serve_send_p50_vs_engine"] = round(figures["serve_send_p50_ms"] / figures["engine_send_p50_ms"], 1)
    return figures


def _campaign(n: int, prefix: str, send_at: float | None = None) -> list[dict]:
    items = [{"type": "campaign", "recipient": {"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.test"},
              "data": {"headline": "Autumn sale"}, "priority": "bulk"} for i in range(n)]
    if send_at is not None:
        for item in items:
            item["send_at"] = send_at
    return items


def scenario_serve_send_many(tmp: Path) -> dict:
    """Intake rate of Client.send_many in requests of 100 notifications (one thread), delivery held
    back by send_at as in send_many; the in-process Engine.send_many in chunks of 100 alongside."""
    from herald import Engine, Sandbox
    from herald.client import Client

    total, batch = 50_000, 100
    send_at = time.time() + 3600
    figures: dict = {}
    with Sandbox() as sandbox:
        with _serve(tmp, sandbox, "serve-many") as served, Client(served.url, api_key=KEY) as client:
            client.send_many(_campaign(1000, "w", send_at), chunk=batch)  # warm-up
            items = _campaign(total, "c", send_at)
            t0 = time.perf_counter()
            receipts = client.send_many(items, chunk=batch)
            seconds = time.perf_counter() - t0
            assert len({r.id for r in receipts}) == total
        figures["serve_send_many_per_s"] = round(total / seconds)
        config = _config(tmp, sandbox, tmp / "unused")
        with Engine(tmp / "engine-many", rules=tmp / "rules", providers=config) as engine:
            engine.send_many(_campaign(1000, "w", send_at), chunk=batch)
            items = _campaign(total, "c", send_at)
            t0 = time.perf_counter()
            engine.send_many(items, chunk=batch)
            seconds = time.perf_counter() - t0
        figures["engine_send_many_100_per_s"] = round(total / seconds)
    return figures


def scenario_serve_e2e(tmp: Path) -> dict:
    """8 client threads, each with its own Client, send 20,000 notifications one at a time through
    herald serve: rate from the first send to the sandbox having accepted every one; and the CPU
    time per notification of the server and of this process (clients, under one GIL, and sandbox)."""
    from herald import Sandbox
    from herald.client import Client

    threads, total = 8, 20_000
    per_thread = total // threads
    with Sandbox() as sandbox:
        with _serve(tmp, sandbox, "serve-e2e") as served:
            clients = [Client(served.url, api_key=KEY) for _ in range(threads)]
            for c in clients:  # warm-up: connections open, rules loaded
                c.send("campaign", {"id": "warm", "email": "warm@example.test"}, {"headline": "hi"})
            _wait_accepted(sandbox, threads, 60)
            sandbox.clear()
            go = threading.Barrier(threads + 1)
            errors: list[BaseException] = []

            def worker(t: int) -> None:
                go.wait()
                try:
                    for i in range(per_thread):
                        clients[t].send("campaign", {"id": f"t{t}-{i}", "email": f"t{t}-{i}@example.test"},
                                        {"headline": "Autumn sale"}, priority="bulk")
                except BaseException as exc:
                    errors.append(exc)

            workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
            for w in workers:
                w.start()
            go.wait()
            t0 = time.perf_counter()
            cpu0, own0 = _cpu_seconds(served.pid), time.process_time()
            for w in workers:
                w.join()
            intake = time.perf_counter() - t0
            if errors:
                raise errors[0]
            _wait_accepted(sandbox, total, 600)
            seconds = time.perf_counter() - t0
            server_cpu, client_cpu = _cpu_seconds(served.pid) - cpu0, time.process_time() - own0
            for c in clients:
                c.close()
        assert sandbox.stats()["accepted"] == total, sandbox.stats()
    return {
        "serve_e2e_per_s": round(total / seconds),
        "serve_e2e_intake_per_s": round(total / intake),
        # CPU per notification: the server process, and this one (8 Client threads and the sandbox).
        "serve_e2e_server_cpu_us": round(server_cpu / total * 1e6),
        "serve_e2e_clients_cpu_us": round(client_cpu / total * 1e6),
    }


SCENARIOS = {
    "serve_send": scenario_serve_send,
    "serve_send_many": scenario_serve_send_many,
    "serve_e2e": scenario_serve_e2e,
}
