"""The `herald` command: demo, sandbox, send, retry, cancel, status, trace, dead-letters,
suppressions, compare, prune, log (tail, export).

status, trace, dead-letters, suppressions and compare read the folder without an engine (herald.open_readonly):
they never send, need no provider secrets and work while an engine runs. send, retry and cancel
change state: they open an engine on the folder (with its rules and providers), so they fail with
one StoreError line while another engine owns it.

The global options (--data-dir, --rules, --providers) go before or after the subcommand."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _engine(args: argparse.Namespace):  # noqa: ANN202 - imported lazily for a fast --help
    from herald.engine import Engine

    return Engine(args.data_dir, rules=args.rules, providers=args.providers)


def _cmd_demo(args: argparse.Namespace) -> int:
    from herald.demo import run_demo

    keep = None
    if args.keep:
        keep = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: keep.set())
    try:
        run_demo(args.data_dir, bulk=args.bulk, otps=args.otps, progress=not args.no_progress, keep=keep)
    except KeyboardInterrupt:
        if keep is None:
            raise
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


class _UsageError(Exception):
    """A bad argument found after parsing (bad JSON): one line, exit status 2."""


def _json_arg(option: str, text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _UsageError(f"{option}: not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from None


def _cmd_send(args: argparse.Namespace) -> int:
    data = _json_arg("--data", args.data) if args.data else None
    recipient = _json_arg("RECIPIENT", args.recipient) if args.recipient.startswith("{") else args.recipient
    with _engine(args) as engine:
        receipt = engine.send(args.type, recipient, data, priority=args.priority, idempotency_key=args.idempotency_key)
        print(json.dumps({"id": receipt.id, "state": receipt.state, "duplicate": receipt.duplicate}))
        if args.wait:
            status = engine.wait(receipt.id, timeout=args.wait)
            print(json.dumps({"id": status.id, "state": status.state, "last_error": status.last_error}))
    return 0


def _cmd_retry(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        engine.retry(args.id)
        status = engine.status(args.id)
        print(json.dumps({"id": args.id, "state": None if status is None else status.state}))
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        if engine.cancel(args.id):
            print(json.dumps({"id": args.id, "state": "cancelled"}))
            return 0
        status = engine.status(args.id)
        state = None if status is None else status.state
        print(f"herald: notification {args.id} not cancelled: it is {state} (final, or an attempt is in flight)",
              file=sys.stderr)
        return 1


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


def _since_arg(text: str | None) -> object:
    """--since of compare: a duration back from now (90s, 15m, 1h, 2d), epoch seconds, or an ISO
    8601 time (no zone = UTC). Parsed here: pandas is not needed to compare providers."""
    from datetime import datetime, timedelta, timezone

    if text is None:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if m:
        return timedelta(seconds=float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86_400}[m.group(2)])
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _UsageError(f"--since: not a duration (90s, 15m, 1h, 2d), epoch seconds or ISO 8601 time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _cmd_compare(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from herald.shadow import compare_providers, format_comparison

    try:
        figures = compare_providers(args.data_dir, args.providers, since=_since_arg(args.since), type=args.type)
    except FileNotFoundError as exc:
        raise _UsageError(str(exc)) from None
    if args.json:
        print(json.dumps({name: asdict(f) for name, f in figures.items()}, indent=2))
    else:
        print(format_comparison(figures))
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from herald.retention import Retention, prune

    days = 86_400
    limits = Retention(max_age=args.max_age_days * days, max_db_bytes=args.max_db_mb << 20,
                       log_max_age=args.log_max_age_days * days, log_max_bytes=args.log_max_mb << 20)
    print(json.dumps(prune(args.data_dir, limits)))
    return 0


_SEGMENT_NAME = re.compile(r"events-(\d+)\.jsonl$")


def _segments(log: Path) -> list[Path]:
    """The segment files of ``log``, oldest first (by the sequence number in the name)."""
    found = [(int(m.group(1)), entry.path) for entry in os.scandir(log) if (m := _SEGMENT_NAME.fullmatch(entry.name))]
    return [Path(p) for _, p in sorted(found)]


def _log_dir(args: argparse.Namespace) -> Path:
    from herald.analysis import log_dir_of

    log = log_dir_of(args.data_dir)
    if not log.is_dir():
        raise _UsageError(f"no delivery log at {log} (give the data directory with --data-dir)")
    return log


def _last_lines(path: Path, n: int, end: int | None = None) -> list[bytes]:
    """The last ``n`` whole lines of ``path`` before ``end`` (default: its size), read from the end."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END) if end is None else end
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= n:
            step = min(pos, 1 << 16)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    complete = data[: data.rfind(b"\n") + 1]  # a line still being written is not shown
    lines = complete.splitlines(keepends=True)
    if pos > 0:
        lines = lines[1:]  # the first may be the tail of a longer line
    return lines[-n:] if n else []


def _cmd_log_tail(args: argparse.Namespace) -> int:
    log = _log_dir(args)
    out = sys.stdout.buffer
    segments = _segments(log)
    # Where the newest segment's whole lines end now: the lines shown end there, following starts there.
    current = segments[-1] if segments else None
    offset = _end_of_whole_lines(current) if current is not None else 0
    lines: list[bytes] = []
    for path in reversed(segments):
        if len(lines) >= args.lines:
            break
        lines = _last_lines(path, args.lines - len(lines), offset if path == current else None) + lines
    out.writelines(lines)
    out.flush()
    if not args.follow:
        return 0
    pending = b""
    # Interrupt ends following even when started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            grew = False
            if current is not None:
                try:
                    with current.open("rb") as f:
                        f.seek(offset)
                        data = f.read()
                except FileNotFoundError:
                    data = b""
                if data:
                    grew = True
                    offset += len(data)
                    data = pending + data
                    cut = data.rfind(b"\n") + 1
                    out.write(data[:cut])
                    out.flush()
                    pending = data[cut:]
            if not grew:
                newer = [p for p in _segments(log) if current is None or _seq_of(p) > _seq_of(current)]
                if newer:
                    current, offset, pending = newer[0], 0, b""
                    continue
                time.sleep(args.interval)
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


def _end_of_whole_lines(path: Path) -> int:
    """Where the last whole line of ``path`` ends: following starts there."""
    try:
        with path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            pos = end
            while pos > 0:
                step = min(pos, 1 << 16)
                pos -= step
                f.seek(pos)
                cut = f.read(step).rfind(b"\n")
                if cut >= 0:
                    return pos + cut + 1
    except FileNotFoundError:
        pass
    return 0


def _seq_of(path: Path) -> int:
    m = _SEGMENT_NAME.fullmatch(path.name)
    return int(m.group(1)) if m else -1


def _time_arg(option: str, text: str | None):  # noqa: ANN202 - pandas is imported lazily
    if text is None:
        return None
    from herald.analysis import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise _UsageError(f"{option}: {exc}") from None


def _cmd_log_export(args: argparse.Namespace) -> int:
    since = _time_arg("--since", args.since)
    until = _time_arg("--until", args.until)
    if until is not None and until <= since:
        raise _UsageError(f"--until ({until.isoformat()}) is not after --since ({since.isoformat()})")
    fmt = args.format or ("jsonl" if args.output.endswith((".jsonl", ".json")) else "parquet")
    log = _log_dir(args)
    from herald import analysis

    try:
        if fmt == "parquet":
            events = analysis.load_events(log, since, until)
            analysis.to_parquet(events, args.output)
            count = len(events)
        else:
            count = _export_jsonl(log, since, until, args.output)
    except analysis.LogVersionError as exc:
        raise _UsageError(str(exc)) from None
    window = f"[{since.isoformat()}, {until.isoformat() if until is not None else 'now'})"
    print(f"herald log export: {count} events in {window} to {args.output} ({fmt})", file=sys.stderr)
    return 0


_TS_US = re.compile(rb'"ts_us":\s*(\d+)')


def _export_jsonl(log: Path, since, until, output: str) -> int:  # noqa: ANN001
    """The lines of the window as they are in the log (whatever their version), in log order."""
    from herald.analysis import open_segments

    lo = since.value // 1000
    hi = None if until is None else until.value // 1000
    count = 0
    with open_segments(log, since, until) as segments, open(output, "wb") as out:
        for s in segments:
            data = s.file.read()
            data = data[: data.rfind(b"\n") + 1]
            for line in data.splitlines(keepends=True):
                m = _TS_US.search(line)
                if m is None:
                    continue
                ts = int(m.group(1))
                if ts >= lo and (hi is None or ts < hi):
                    out.write(line)
                    count += 1
    return count


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a count of lines: {text!r}")
    return value


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--data-dir, --rules, --providers: on the main parser with their defaults, and on every
    subcommand with no default (argparse.SUPPRESS), so that given after the subcommand they win
    and absent they leave the main parser's value alone."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--data-dir", default=default("herald-data"),
                        help="the embedded store's directory (default ./herald-data)")
    parser.add_argument("--rules", default=default(None),
                        help="rules directory or module name (default ./routing_rules, else the @rule functions imported)")
    parser.add_argument("--providers", default=default(None), help="providers TOML file (default ./herald.toml)")


def _parser() -> argparse.ArgumentParser:
    from herald import __version__

    parser = argparse.ArgumentParser(prog="herald", description="herald: a self-hosted notification engine")
    parser.add_argument("--version", action="version", version=f"herald {__version__}",
                        help="print the version and exit")
    _global_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, defaults=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common])

    p = command("demo", "run the sandbox and an engine under a mixed workload")
    p.add_argument("--bulk", type=int, default=100_000, help="campaign size (default 100000)")
    p.add_argument("--otps", type=int, default=300, help="critical OTPs sent during the campaign (default 300)")
    p.add_argument("--no-progress", action="store_true", help="do not print progress lines")
    p.add_argument("--keep", action="store_true",
                   help="keep the sandbox running afterwards (its URL printed) to browse the demo's messages; Ctrl-C stops it")
    p.set_defaults(func=_cmd_demo)

    p = command("sandbox", "run the provider sandbox until interrupted")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8025, help="port to listen on (default 8025, 0 any free port)")
    p.add_argument("--threads", type=int, default=1, help="server threads (default 1)")
    p.add_argument("--signing-secret", default="sandbox-secret", help="signs herald JSON receipts")
    p.add_argument("--h2c-port", type=int, default=-1, help="also serve HTTP/2 cleartext here (-1 off, 0 any)")
    p.set_defaults(func=_cmd_sandbox)

    p = command("send", "send one notification")
    p.add_argument("type", help="the notification type (a rule must route it)")
    p.add_argument("recipient", help="a user id, or a JSON object with an id and addresses")
    p.add_argument("--data", help="JSON object of template variables")
    p.add_argument("--priority", default="normal", choices=["critical", "high", "normal", "bulk"],
                   help="queue priority (default normal)")
    p.add_argument("--idempotency-key", help="a repeat of this key returns the first notification")
    p.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for a final state")
    p.set_defaults(func=_cmd_send)

    p = command("retry", "re-queue a dead-lettered notification (opens an engine on the folder)")
    p.add_argument("id", type=int, help="the notification's id")
    p.set_defaults(func=_cmd_retry)

    p = command("cancel", "cancel a notification not yet sent (opens an engine on the folder)")
    p.add_argument("id", type=int, help="the notification's id")
    p.set_defaults(func=_cmd_cancel)

    p = command("status", "show one notification's state")
    p.add_argument("id", type=int, help="the notification's id")
    p.set_defaults(func=_cmd_status)

    p = command("trace", "show every decision about one notification")
    p.add_argument("id", type=int, help="the notification's id")
    p.set_defaults(func=_cmd_trace)

    p = command("dead-letters", "list dead-lettered notifications")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.set_defaults(func=_cmd_dead_letters)

    p = command("suppressions", "list addresses herald will not send to again")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    p.set_defaults(func=_cmd_suppressions)

    p = command("compare", "providers side by side: attempts, acceptance, latency p50/p99, receipts, cost "
                           "(reads the folder; e.g. a shadow candidate against the usual provider)")
    p.add_argument("providers", nargs="+", help="provider names")
    p.add_argument("--since", help="notifications taken in since: a duration back from now (90s, 15m, 1h, 2d), "
                                   "epoch seconds or an ISO 8601 time (default: everything kept)")
    p.add_argument("--type", help="only notifications of this type")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_compare)

    p = command("prune", "delete final notifications, events and log segments past the retention limits "
                         "(run it where no engine uses the folder; an engine prunes by itself)")
    p.add_argument("--max-age-days", type=float, default=7, help="final notifications older than this go (default 7)")
    p.add_argument("--max-db-mb", type=int, default=2048, help="then the oldest until the database fits (default 2048)")
    p.add_argument("--log-max-age-days", type=float, default=7, help="log segments older than this go (default 7)")
    p.add_argument("--log-max-mb", type=int, default=1024, help="then the oldest until the log fits (default 1024)")
    p.set_defaults(func=_cmd_prune)

    p = command("log", "read the delivery log (<data-dir>/log/events-*.jsonl): tail it or export a time window")
    log_sub = p.add_subparsers(dest="log_command", required=True, metavar="LOG_COMMAND")
    p = log_sub.add_parser("tail", parents=[common], help="print the last lines of the delivery log",
                           description="print the last lines of the delivery log; --follow keeps printing "
                                       "new ones (across new segments) until Ctrl-C")
    p.add_argument("-n", "--lines", type=_count, default=10, help="how many lines (default 10)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until interrupted")
    p.add_argument("--interval", type=float, default=0.25, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_log_tail)
    p = log_sub.add_parser(
        "export", parents=[common], help="write the events of a time window to Parquet or JSON Lines",
        description="write the events with since <= time < until to a file. Every segment that overlaps the "
                    "window is opened before any is read, so the export is complete even while retention "
                    "deletes old segments (an unlinked file stays readable through an open descriptor). "
                    "jsonl copies the lines as they are (version 0 and 1 alike); parquet writes the typed "
                    "columns of herald.analysis.load_events.")
    p.add_argument("--since", required=True,
                   help="start: an ISO 8601 time (2026-11-29T08:00:00Z; no zone = UTC), epoch seconds, "
                        "or a duration back from now (90s, 15m, 1h, 2d)")
    p.add_argument("--until", help="end, excluded (same forms; default now and on)")
    p.add_argument("--format", choices=["parquet", "jsonl"],
                   help="output format (default from --output's suffix: .jsonl is jsonl, else parquet)")
    p.add_argument("--output", "-o", required=True, help="the file to write")
    p.set_defaults(func=_cmd_log_export)
    from herald.serve import add_serve_command

    add_serve_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from herald.errors import HeraldError

    try:
        return int(args.func(args))
    except _UsageError as exc:
        print(f"herald {args.command}: {exc}", file=sys.stderr)
        return 2
    except HeraldError as exc:
        print(f"herald: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
