"""``herald serve``: one engine with an HTTP API, for many worker processes (see :class:`herald.Client`).

Configuration, in the same TOML file as the providers::

    [serve]
    listen = "127.0.0.1:8788"          # --listen overrides; port 0 picks a free one
    data_dir = "herald-data"           # relative to the file's folder
    rules = "routing_rules"            # relative to the file's folder
    receipts = "127.0.0.1:8787"        # the providers' receipt endpoint keeps its own port
    public_url = ""                    # where providers reach it, when that differs
    max_body_bytes = 1048576           # larger request bodies get 413
    workers = 8                        # threads making engine calls
    rules_check_interval = 1.0         # seconds between looks at the rules directory (0: never)
    alert_interval = 5.0               # seconds between evaluations of the alert rules (0.01..3600)

    [[serve.shadow]]                   # 10% of otp via sms-candidate instead of sms-primary
    type = "otp"
    provider = "sms-primary"
    candidate = "sms-candidate"
    percent = 10

    [serve.api_keys]                   # name = secret, read as provider secrets are
    web = { env = "HERALD_API_KEY" }
    jobs = { file = "/run/secrets/herald_jobs_key" }

An edited file in the rules directory takes effect without a restart; one that fails to load
keeps the previous rules and is logged with its file and line (see :mod:`herald.live_rules`).

Only SHA-256 hashes of the keys are kept. Every ``/v1`` request needs ``Authorization: Bearer
<key>`` (none: 401, a wrong one: 403). ``GET /health``, ``GET /ready``, ``GET /metrics``
(Prometheus) and ``GET /openapi.json`` need none.

SIGTERM (or SIGINT) stops intake (503 with Retry-After), lets engine calls in progress finish,
closes the engine (attempts in flight finish or are recorded, everything is committed) and exits 0.

Log records (logger ``herald``: the engine's and serve's own) go to stderr as JSON lines (see
:mod:`herald.logs`); stdout says where it listens, for people and scripts.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import sys
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from herald._checks import config_error
from herald.logs import log_json_lines, logger
from herald.providers import resolve_secret
from herald.shadow import Shadow, shadows_from_config

__all__ = ["ServeConfig", "add_serve_command", "load_config", "main", "serve"]


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """What ``[serve]`` says, secrets already reduced to hashes."""

    host: str
    port: int
    data_dir: Path
    rules: Path | None
    providers: Path
    key_sha256_hex: tuple[str, ...]
    receipts: str | None = None
    public_url: str | None = None
    max_body_bytes: int = 1 << 20
    workers: int = 8
    rules_check_interval: float | None = 1.0
    alert_interval: float = 5.0
    shadow: tuple[Shadow, ...] = ()


_KNOWN = {"listen", "data_dir", "rules", "receipts", "public_url", "max_body_bytes", "workers", "api_keys",
          "rules_check_interval", "alert_interval", "shadow"}


def _split_listen(where: str, listen: Any) -> tuple[str, int]:
    if not isinstance(listen, str) or ":" not in listen:
        raise config_error(where, 'must be "host:port"')
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65_535:
        raise config_error(where, f'must be "host:port" with a port from 0 to 65535 (got {listen!r})')
    return host.strip("[]"), int(port)


def _int(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise config_error(where, f"must be an integer from {low} to {high}")
    return value


def _seconds(where: str, value: Any, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
        raise config_error(where, f"must be a number of seconds from 0 to {high:g}")
    return float(value)


def _interval(where: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise config_error(where, f"must be a number of seconds from {low:g} to {high:g} (got {value!r})")
    return float(value)


def load_config(path: str | Path, *, listen: str | None = None) -> ServeConfig:
    """Reads ``[serve]`` from a TOML file; raises :class:`herald.ConfigError` naming the field."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise config_error("config", f"file {str(path)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise config_error("config", f"{path}: {exc}") from None
    table = document.get("serve", {})
    if not isinstance(table, Mapping):
        raise config_error("serve", "must be a table")
    for key in table:
        if key not in _KNOWN:
            raise config_error(f"serve.{key}", "unknown field")
    base = path.parent
    host, port = _split_listen("serve.listen" if listen is None else "--listen", listen or table.get("listen", "127.0.0.1:8788"))
    keys = table.get("api_keys", {})
    if not isinstance(keys, Mapping) or not keys:
        raise config_error("serve.api_keys", "must be a table naming at least one key (name = secret)")
    hashes = []
    for name, source in keys.items():
        secret = resolve_secret(f"serve.api_keys.{name}", source)
        hashes.append(hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest())
    rules = table.get("rules")
    text_fields = {k: table.get(k) for k in ("data_dir", "rules", "receipts", "public_url")}
    for k, v in text_fields.items():
        if v is not None and not isinstance(v, str):
            raise config_error(f"serve.{k}", "must be a string")
    return ServeConfig(
        host=host,
        port=port,
        data_dir=base / table.get("data_dir", "herald-data"),
        rules=None if rules is None else base / rules,
        providers=path,
        key_sha256_hex=tuple(hashes),
        receipts=table.get("receipts"),
        public_url=table.get("public_url"),
        max_body_bytes=_int("serve.max_body_bytes", table.get("max_body_bytes", 1 << 20), 1, 1 << 30),
        workers=_int("serve.workers", table.get("workers", 8), 1, 256),
        rules_check_interval=_seconds("serve.rules_check_interval", table.get("rules_check_interval", 1.0), 3600),
        # The engine's own bounds (Engine(alert_interval=...)), checked here to name serve's field.
        alert_interval=_interval("serve.alert_interval", table.get("alert_interval", 5.0), 0.01, 3600),
        shadow=shadows_from_config(table.get("shadow"), "serve.shadow"),
    )


def openapi_document() -> str:
    """The API's OpenAPI description (served at ``GET /openapi.json``), shipped in the package."""
    return resources.files("herald").joinpath("openapi.json").read_text(encoding="utf-8")


def serve(config: ServeConfig, *, stop: threading.Event | None = None, announce: bool = True) -> int:
    """Runs the engine and its API until ``stop`` is set (by default: SIGTERM or SIGINT); returns 0
    once intake is stopped, the engine closed and everything committed."""
    from herald import _core
    from herald.engine import Engine

    stop = stop or threading.Event()
    signals: list[str] = []
    if threading.current_thread() is threading.main_thread():
        def on_signal(number: int, _frame: Any) -> None:
            signals.append(signal.Signals(number).name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
    engine = Engine(config.data_dir, rules=config.rules, providers=config.providers, receipts=config.receipts,
                    public_url=config.public_url, rules_check_interval=config.rules_check_interval,
                    alert_interval=config.alert_interval, shadow=config.shadow)
    try:
        api = _core.ApiServer(engine._core, config.host, config.port, list(config.key_sha256_hex),
                              config.max_body_bytes, config.workers, openapi_document())
        url = api.url
        try:
            logger.info("serve started", extra={"herald": {
                "url": api.url, "receipts_url": engine.receipts_url, "data_dir": str(config.data_dir),
                "rules": str(config.rules or ""), "config": str(config.providers), "workers": str(config.workers),
                "max_body_bytes": str(config.max_body_bytes), "api_keys": str(len(config.key_sha256_hex)),
                "alert_interval": str(config.alert_interval)}})
            if announce:
                print(f"herald serve listening on {api.url}", flush=True)
                if engine.receipts_url:
                    print(f"herald receipts on {engine.receipts_url}", flush=True)
            stop.wait()
            logger.info("serve draining: intake stopped, calls in progress finish",
                        extra={"herald": {"signal": signals[0] if signals else ""}})
            # Order matters: no engine call may run once the engine closes.
            api.drain()
            engine.close()
        finally:
            api.stop()
    finally:
        engine.close()
    logger.info("serve stopped", extra={"herald": {"url": url}})
    if announce:
        print("herald serve stopped", flush=True)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    log_json_lines()
    try:
        return serve(load_config(args.config, listen=args.listen))
    except Exception as exc:
        logger.error("serve could not run", extra={"herald": {"error": f"{type(exc).__name__}: {exc}"}})
        raise


def add_serve_command(subparsers: Any) -> None:
    """Adds ``serve`` to the ``herald`` command's subparsers."""
    p = subparsers.add_parser("serve", help="run one engine with an HTTP API for many worker processes")
    p.add_argument("--config", default="herald.toml", help="TOML file with [serve] and [providers] (default ./herald.toml)")
    p.add_argument("--listen", default=None, help="host:port for the API (overrides serve.listen; port 0 = any)")
    p.set_defaults(func=_cmd_serve)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m herald.serve --config herald.toml``, until the ``herald`` command carries it."""
    parser = argparse.ArgumentParser(prog="herald serve")
    sub = parser.add_subparsers(dest="command")
    add_serve_command(sub)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    from herald.errors import HeraldError

    try:
        return int(args.func(args))
    except HeraldError as exc:
        print(f"herald: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
