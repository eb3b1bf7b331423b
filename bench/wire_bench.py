"""Close to the wire: herald against the physical limit of this machine.

The same job every run: a POST with keep-alive to an external sink (nginx from Debian, started
here on loopback with its own configuration) that answers 202. The ceiling is plain libcurl multi
on one thread (`_core._raw_curl_rate`); herald's run is the whole job: `send_many` with an
idempotency key each, one Python rule call each, the durable SQLite store, the webhook adapter.
Runs alternate (raw, herald, raw, herald, ...), each in a fresh process, and the figures are
medians with min-max. CPU is read per thread from /proc (schedstat: nanoseconds on a CPU) and for
nginx's processes, and divided by the notifications of the run.

A probe runs beside them: the same POSTs, with the webhook's header lines, written and read by
Boost.Beast on one thread (`_core._raw_beast_rate`), for what a client without libcurl would cost.

Also the intake: `send()` one at a time from one Python thread (rate, p50, p99) and from 8
threads together, delivery held back by `send_at` so only the intake is measured.

    python bench/wire_bench.py              # prints the figures as JSON
    python bench/wire_bench.py --n 20000 --reps 3
    python bench/wire_bench.py --baseline /tmp/herald-before   # before/after, runs alternating
    python bench/wire_bench.py --baseline curl   # this build, plain http:// on libcurl vs on Beast
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent

# What the webhook adapter POSTs for one notification is about this size; the raw client sends
# a body of the same length so both put the same bytes on the wire.
RAW_BODY = json.dumps({
    "id": "1234567890", "type": "campaign", "channel": "email", "priority": "bulk",
    "to": {"id": "c12345", "email": "c12345@example.test"}, "text": "Autumn sale",
    "data": {"headline": "Autumn sale"},
})

NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log crit;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_buffer_size 64k;
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{
      default_type application/json;
      return 202 '{{"id":"sink-1","status":"queued"}}';
    }}
  }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NginxSink:
    """nginx on a loopback port with its own configuration and folder; stopped on exit."""

    def __init__(self, workers: int = 1):
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(self.binary):
            raise SystemExit("nginx is not installed: apt-get install nginx-light (make bench does)")
        self.workers = workers
        self.dir = Path(tempfile.mkdtemp(prefix="herald-sink-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "NginxSink":
        conf = self.dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(workers=self.workers, dir=self.dir, port=self.port))
        self.proc = subprocess.Popen([self.binary, "-c", str(conf), "-p", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"nginx exited: {self.proc.stderr.read().decode(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise SystemExit("nginx did not start listening within 10 s")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def cpu_ns(self) -> int:
        """CPU spent by nginx's master and workers so far."""
        total = 0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            total += _schedstat_ns(f"/proc/{pid}/schedstat")
        return total


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _schedstat_ns(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _by_thread_name(read: Callable[[str], int]) -> dict[str, int]:
    """``read(task_dir)`` for each thread of this process, summed by thread name (the
    interpreter's own threads as "python"); a thread that ends meanwhile is skipped."""
    out: dict[str, int] = {}
    for tid in os.listdir("/proc/self/task"):
        task = f"/proc/self/task/{tid}"
        try:
            with open(f"{task}/comm") as f:
                name = f.read().strip()
            value = read(task)
        except (OSError, StopIteration, ValueError):
            continue
        if name.startswith("python") or name == "MainThread":
            name = "python"
        out[name] = out.get(name, 0) + value
    return out


def _voluntary_switches(task: str) -> int:
    with open(f"{task}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))


def thread_cpu_ns() -> dict[str, int]:
    """CPU of each thread of this process so far, by thread name (/proc schedstat)."""
    return _by_thread_name(lambda task: _schedstat_ns(f"{task}/schedstat"))


def thread_switches() -> dict[str, int]:
    """Voluntary context switches of each thread so far (a thread that sleeps and is woken), by name."""
    return _by_thread_name(_voluntary_switches)


def _per_thread_us(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    out = {}
    for name, ns in after.items():
        spent = ns - before.get(name, 0)
        if spent > 0:
            out[name] = round(spent / 1000 / n, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# ---- one run each, in a fresh process ------------------------------------------------------

def child_raw(url: str, n: int, in_flight: int) -> dict:
    from herald import _core

    _core._raw_curl_rate(url, RAW_BODY, min(n, 2000), in_flight)  # warm-up: connections open
    r = _core._raw_curl_rate(url, RAW_BODY, n, in_flight)
    assert r["ok"] == n, r
    return {"per_s": r["per_s"], "cpu_us": r["cpu_s"] * 1e6 / n}


def child_beast(url: str, n: int, in_flight: int) -> dict:
    """The same POSTs as herald's webhook (its header lines) by Boost.Beast: what a client without
    libcurl costs per request here (a probe, not the ceiling the ratio is taken against)."""
    from urllib.parse import urlsplit

    from herald import _core

    u = urlsplit(url)
    args = (u.hostname, u.port, u.path or "/", RAW_BODY)
    _core._raw_beast_rate(*args, min(n, 2000), in_flight)  # warm-up
    r = _core._raw_beast_rate(*args, n, in_flight)
    assert r["ok"] == n, r
    return {"per_s": r["per_s"], "cpu_us": r["cpu_s"] * 1e6 / n}


def _engine(data_dir: Path, url: str, in_flight: int, **options):
    from herald import Engine, Plan, RuleSet

    rules = RuleSet({"campaign": lambda n: Plan("email", ["hook"], "{headline|News}")})
    providers = [{"name": "hook", "kind": "webhook", "url": url, "concurrency": in_flight}]
    return Engine(data_dir, rules=rules, providers=providers, **options)


def _items(n: int, prefix: str, send_at: float | None = None) -> list[dict]:
    items = []
    for i in range(n):
        item = {"type": "campaign", "recipient": {"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.test"},
                "data": {"headline": "Autumn sale"}, "priority": "bulk", "idempotency_key": f"{prefix}-{i}"}
        if send_at is not None:
            item["send_at"] = send_at
        items.append(item)
    return items


def child_herald(url: str, n: int, in_flight: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="herald-wire-") as tmp, _engine(Path(tmp), url, in_flight) as engine:
        engine.send_many(_items(min(n, 2000), "w"))  # warm-up: connections open, statements prepared
        assert engine.wait_idle(120)
        items = _items(n, "c")
        before, switches_before = thread_cpu_ns(), thread_switches()
        t0 = time.perf_counter()
        engine.send_many(items)
        assert engine.wait_idle(600)
        seconds = time.perf_counter() - t0
        after, switches_after = thread_cpu_ns(), thread_switches()
        stats = engine.stats()
        assert stats["accepted"] == n + min(n, 2000), stats
    per_thread = _per_thread_us(before, after, n)
    switches = {t: round((switches_after[t] - switches_before.get(t, 0)) / n, 3) for t in switches_after
                if switches_after[t] > switches_before.get(t, 0)}
    return {"per_s": n / seconds, "cpu_us": round(sum(per_thread.values()), 1), "per_thread_us": per_thread,
            "sleeps_per_notification": switches}


def child_send_one(url: str, n: int) -> dict:
    """send() one at a time from one thread; delivery held back so only the intake is measured."""
    later = time.time() + 3600
    with tempfile.TemporaryDirectory(prefix="herald-send-") as tmp, _engine(Path(tmp), url, 8) as engine:
        for i in range(500):
            engine.send("campaign", f"w{i}", {"headline": "x"}, send_at=later, idempotency_key=f"w{i}")
        samples = []
        before = thread_cpu_ns()
        t0 = time.perf_counter()
        for i in range(n):
            s = time.perf_counter_ns()
            engine.send("campaign", f"u{i}", {"headline": "Autumn sale"}, send_at=later, idempotency_key=f"k{i}")
            samples.append(time.perf_counter_ns() - s)
        seconds = time.perf_counter() - t0
        after = thread_cpu_ns()
    samples.sort()
    return {"per_s": n / seconds, "p50_us": samples[len(samples) // 2] / 1000,
            "p99_us": samples[int(len(samples) * 0.99)] / 1000,
            "per_thread_us": _per_thread_us(before, after, n)}


def child_send_threads(url: str, n: int, threads: int) -> dict:
    later = time.time() + 3600
    each = n // threads
    with tempfile.TemporaryDirectory(prefix="herald-send-") as tmp, _engine(Path(tmp), url, 8) as engine:
        for i in range(500):
            engine.send("campaign", f"w{i}", {"headline": "x"}, send_at=later)
        go = threading.Barrier(threads + 1)

        def caller(t: int) -> None:
            go.wait()
            for i in range(each):
                engine.send("campaign", f"u{t}-{i}", {"headline": "Autumn sale"}, send_at=later,
                            idempotency_key=f"k{t}-{i}")

        workers = [threading.Thread(target=caller, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        before = thread_cpu_ns()
        go.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        seconds = time.perf_counter() - t0
        after = thread_cpu_ns()
    return {"per_s": each * threads / seconds, "per_thread_us": _per_thread_us(before, after, each * threads)}


def _child(kind: str, url: str, n: int, in_flight: int, sink: NginxSink | None = None,
           package: str | None = None) -> dict:
    """One run in a fresh interpreter; adds nginx's CPU per notification when a sink is given.
    `package`: a folder holding another build's `herald` package, imported instead of this one;
    "curl": this build with HERALD_HTTP_CLIENT=curl."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--url", url, "--n", str(n),
           "--in-flight", str(in_flight)]
    env = dict(os.environ)
    if package == "curl":  # this build with libcurl for plain http:// too (before the Beast client)
        env["HERALD_HTTP_CLIENT"] = "curl"
    elif package:
        env["PYTHONPATH"] = package
    before = sink.cpu_ns() if sink else 0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if sink:
        result["nginx_cpu_us"] = round((sink.cpu_ns() - before) / 1000 / n, 2)  # includes warm-up
    return result


def _summary(values: list[float], digits: int = 1) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def measure(n: int = 20_000, reps: int = 3, in_flight: int = 128, workers: int = 1,
            sends: int = 20_000, baseline: str | None = None) -> dict:
    """The figures; with `baseline` (a folder holding another build's `herald` package) each of its
    runs alternates with this build's, in the same conditions, and its figures come back under
    "baseline" (this machine's speed drifts by a third from minute to minute: compare within a run)."""
    raw_runs, herald_runs, base_runs, beast_runs = [], [], [], []
    send_one, send_eight, base_one, base_eight = [], [], [], []
    with NginxSink(workers) as sink:
        for _ in range(reps):
            raw_runs.append(_child("raw", sink.url, n, in_flight, sink))
            beast_runs.append(_child("beast", sink.url, n, in_flight, sink))
            herald_runs.append(_child("herald", sink.url, n, in_flight, sink))
            line = f"  raw {raw_runs[-1]['per_s']:,.0f}/s ({raw_runs[-1]['cpu_us']:.1f} CPU-µs)  " \
                   f"beast {beast_runs[-1]['per_s']:,.0f}/s ({beast_runs[-1]['cpu_us']:.1f})  " \
                   f"herald {herald_runs[-1]['per_s']:,.0f}/s ({herald_runs[-1]['cpu_us']} CPU-µs)"
            if baseline:
                base_runs.append(_child("herald", sink.url, n, in_flight, sink, baseline))
                line += f"  baseline {base_runs[-1]['per_s']:,.0f}/s ({base_runs[-1]['cpu_us']} CPU-µs)"
            print(line, file=sys.stderr)
        for _ in range(reps):
            send_one.append(_child("send_one", sink.url, sends, in_flight))
            send_eight.append(_child("send_8", sink.url, sends * 2, in_flight))
            if baseline:
                base_one.append(_child("send_one", sink.url, sends, in_flight, None, baseline))
                base_eight.append(_child("send_8", sink.url, sends * 2, in_flight, None, baseline))
    out = _figures(n, reps, in_flight, workers, raw_runs, herald_runs, send_one, send_eight)
    out["raw_beast_per_s"] = _summary([r["per_s"] for r in beast_runs])
    out["raw_beast_cpu_us"] = _summary([r["cpu_us"] for r in beast_runs])
    out["nginx_cpu_us_beast"] = _summary([r["nginx_cpu_us"] for r in beast_runs])
    if baseline:
        out["baseline"] = _figures(n, reps, in_flight, workers, raw_runs, base_runs, base_one, base_eight)
        out["baseline"]["package"] = baseline
    return out


def _figures(n: int, reps: int, in_flight: int, workers: int, raw_runs: list[dict], herald_runs: list[dict],
             send_one: list[dict], send_eight: list[dict]) -> dict:
    raw_rates = [r["per_s"] for r in raw_runs]
    herald_rates = [r["per_s"] for r in herald_runs]
    ratios = [h / r for h, r in zip(herald_rates, raw_rates)]
    threads = sorted({t for r in herald_runs for t in r["per_thread_us"]})
    median_run = sorted(herald_runs, key=lambda r: r["per_s"])[len(herald_runs) // 2]
    return {
        "n": n, "reps": reps, "in_flight": in_flight, "nginx_workers": workers,
        "raw_curl_per_s": _summary(raw_rates),
        "raw_curl_cpu_us": _summary([r["cpu_us"] for r in raw_runs]),
        "herald_per_s": _summary(herald_rates),
        "herald_vs_raw": _summary(ratios, 3),
        "herald_cpu_us": _summary([r["cpu_us"] for r in herald_runs]),
        "herald_cpu_us_by_thread": {t: round(statistics.median(r["per_thread_us"].get(t, 0) for r in herald_runs), 2)
                                    for t in threads},
        "nginx_cpu_us_raw": _summary([r["nginx_cpu_us"] for r in raw_runs]),
        "nginx_cpu_us_herald": _summary([r["nginx_cpu_us"] for r in herald_runs]),
        "herald_median_run": median_run,
        "send_one_per_s": _summary([r["per_s"] for r in send_one]),
        "send_one_p50_us": _summary([r["p50_us"] for r in send_one]),
        "send_one_p99_us": _summary([r["p99_us"] for r in send_one]),
        "send_one_cpu_us_by_thread": send_one[len(send_one) // 2]["per_thread_us"],
        "send_8_threads_per_s": _summary([r["per_s"] for r in send_eight]),
        "send_8_cpu_us_by_thread": send_eight[len(send_eight) // 2]["per_thread_us"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--in-flight", type=int, default=128)
    ap.add_argument("--workers", type=int, default=1, help="nginx worker processes")
    ap.add_argument("--baseline", help="a folder holding another build's herald package: its runs alternate with "
                                       "this build's (before/after figures in the same conditions); 'curl': this "
                                       "build with HERALD_HTTP_CLIENT=curl")
    ap.add_argument("--child", choices=["raw", "beast", "herald", "send_one", "send_8"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "raw":
            out = child_raw(args.url, args.n, args.in_flight)
        elif args.child == "beast":
            out = child_beast(args.url, args.n, args.in_flight)
        elif args.child == "herald":
            out = child_herald(args.url, args.n, args.in_flight)
        elif args.child == "send_one":
            out = child_send_one(args.url, args.n)
        else:
            out = child_send_threads(args.url, args.n, 8)
        print(json.dumps(out))
        return 0
    print(json.dumps(measure(args.n, args.reps, args.in_flight, args.workers, baseline=args.baseline), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
