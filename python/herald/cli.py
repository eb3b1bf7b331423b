"""The `herald` command: demo, sandbox, send, status, trace, dead-letters, suppressions, prune.

status, trace, dead-letters and suppressions read the folder without an engine (herald.open_readonly):
they never send, need no provider secrets and work while an engine runs."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence

__all__ = ["main"]


def _engine(args: argparse.Namespace):  # noqa: ANN202 - imported lazily for a fast --help
    from herald.engine import Engine

    return Engine(args.data_dir, rules=args.rules, providers=args.providers)


def _cmd_demo(args: argparse.Namespace) -> int:
    from herald.demo import run_demo

    run_demo(args.data_dir, bulk=args.bulk, otps=args.otps, progress=not args.no_progress)
    return 0


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from herald.sandbox import Sandbox

    with Sandbox(
        args.host, args.port, threads=args.threads, signing_secret=args.signing_secret, h2c_port=args.h2c_port
    ) as sandbox:
        print(f"herald sandbox listening on {sandbox.url}  (messages: {sandbox.url}/)", flush=True)
        if sandbox.h2c_url:
            print(f"herald sandbox h2c (HTTP/2 cleartext) on {sandbox.h2c_url}", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    data = json.loads(args.data) if args.data else None
    recipient = json.loads(args.recipient) if args.recipient.startswith("{") else args.recipient
    with _engine(args) as engine:
        receipt = engine.send(args.type, recipient, data, priority=args.priority, idempotency_key=args.idempotency_key)
        print(json.dumps({"id": receipt.id, "state": receipt.state, "duplicate": receipt.duplicate}))
        if args.wait:
            status = engine.wait(receipt.id, timeout=args.wait)
            print(json.dumps({"id": status.id, "state": status.state, "last_error": status.last_error}))
    return 0


def _reader(args: argparse.Namespace):  # noqa: ANN202 - imported lazily for a fast --help
    """Reads the folder without an engine: no lock, no dispatch, no provider secrets."""
    from herald.readonly import open_readonly

    return open_readonly(args.data_dir)


def _cmd_status(args: argparse.Namespace) -> int:
    with _reader(args) as engine:
        status = engine.status(args.id)
        if status is None:
            print(f"notification {args.id} not found", file=sys.stderr)
            return 1
        from dataclasses import asdict

        print(json.dumps(asdict(status), indent=2))
    return 0


def _cmd_trace(args: argparse.Namespace) -> int:
    with _reader(args) as engine:
        status = engine.status(args.id)
        if status is None:
            print(f"notification {args.id} not found", file=sys.stderr)
            return 1
        print(f"notification {status.id}: {status.type} to {status.recipient_id}, {status.priority}, now {status.state}")
        for event in engine.trace(args.id):
            print("  " + str(event))
    return 0


def _cmd_dead_letters(args: argparse.Namespace) -> int:
    with _reader(args) as engine:
        for s in engine.dead_letters(args.limit):
            print(f"{s.id}  {s.type:<16} {s.recipient_id:<20} {s.last_error}")
    return 0


def _cmd_suppressions(args: argparse.Namespace) -> int:
    with _reader(args) as engine:
        for x in engine.suppressions(args.limit):
            print(f"{x.channel:<8} {x.address:<32} {x.reason:<10} {x.provider:<12} {x.detail}")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from herald.retention import Retention, prune

    days = 86_400
    limits = Retention(max_age=args.max_age_days * days, max_db_bytes=args.max_db_mb << 20,
                       log_max_age=args.log_max_age_days * days, log_max_bytes=args.log_max_mb << 20)
    print(json.dumps(prune(args.data_dir, limits)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herald", description="herald: a self-hosted notification engine")
    parser.add_argument("--data-dir", default="herald-data", help="the embedded store's directory (default ./herald-data)")
    parser.add_argument("--rules", default=None, help="rules directory (default ./routing_rules)")
    parser.add_argument("--providers", default=None, help="providers TOML file (default ./herald.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the sandbox and an engine under a mixed workload")
    p.add_argument("--bulk", type=int, default=100_000, help="campaign size (default 100000)")
    p.add_argument("--otps", type=int, default=300, help="critical OTPs sent during the campaign")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("sandbox", help="run the provider sandbox until interrupted")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8025)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--signing-secret", default="sandbox-secret", help="signs herald JSON receipts")
    p.add_argument("--h2c-port", type=int, default=-1, help="also serve HTTP/2 cleartext here (-1 off, 0 any)")
    p.set_defaults(func=_cmd_sandbox)

    p = sub.add_parser("send", help="send one notification")
    p.add_argument("type")
    p.add_argument("recipient", help="a user id, or a JSON object with an id and addresses")
    p.add_argument("--data", help="JSON object of template variables")
    p.add_argument("--priority", default="normal", choices=["critical", "high", "normal", "bulk"])
    p.add_argument("--idempotency-key")
    p.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for a final state")
    p.set_defaults(func=_cmd_send)

    p = sub.add_parser("status", help="show one notification's state")
    p.add_argument("id", type=int)
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("trace", help="show every decision about one notification")
    p.add_argument("id", type=int)
    p.set_defaults(func=_cmd_trace)

    p = sub.add_parser("dead-letters", help="list dead-lettered notifications")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=_cmd_dead_letters)

    p = sub.add_parser("suppressions", help="list addresses herald will not send to again")
    p.add_argument("--limit", type=int, default=1000)
    p.set_defaults(func=_cmd_suppressions)

    p = sub.add_parser("prune", help="delete final notifications, events and log segments past the retention limits "
                                     "(run it where no engine uses the folder; an engine prunes by itself)")
    p.add_argument("--max-age-days", type=float, default=7, help="final notifications older than this go (default 7)")
    p.add_argument("--max-db-mb", type=int, default=2048, help="then the oldest until the database fits (default 2048)")
    p.add_argument("--log-max-age-days", type=float, default=7, help="log segments older than this go (default 7)")
    p.add_argument("--log-max-mb", type=int, default=1024, help="then the oldest until the log fits (default 1024)")
    p.set_defaults(func=_cmd_prune)

    args = parser.parse_args(argv)
    from herald.errors import HeraldError

    try:
        return int(args.func(args))
    except HeraldError as exc:
        print(f"herald: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
