"""Provider configuration: a list of dicts, a {name: settings} mapping, or a TOML file.

TOML form::

    [providers.sms-primary]
    kind = "twilio"
    url = "http://127.0.0.1:8025"        # omit for the real service; point at the sandbox to test
    concurrency = 64
    rate_per_s = 50
    cost_per_message = 0.0079
    settings = { account_sid = "AC123", from = "+15550100" }
    secrets = { auth_token = { env = "TWILIO_AUTH_TOKEN" } }

A secret is read from an environment variable (``{ env = "NAME" }``) or a file
(``{ file = "/run/secrets/x" }``, trailing newline dropped); a plain string is accepted from Python
dicts. Secret values never appear in errors or logs. The core validates every other field and
raises :class:`herald.ConfigError` naming the provider and field (``.field``), e.g.
``providers.sms.concurrency``. Numbers (ints, never bools): ``concurrency`` 1..10000,
``max_attempts`` 0..100 (0 = the engine's retry policy), ``timeout_ms`` 1..600000, ``rate_per_s``
0..1e7 (0 = unlimited), ``cost_per_message`` finite and 0 or more; the circuit breaker's (docs/providers.md)
``circuit_failure_rate`` 0..1, ``circuit_min_attempts`` 1..1000000, ``circuit_window_ms``
1000..3600000, ``circuit_consecutive_failures`` 0..1000000, ``circuit_cooldown_ms`` 1..3600000,
``circuit_probes`` 1..1000. Every text must be valid UTF-8.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from herald._checks import config_error

__all__ = ["ProviderSpec", "load_providers", "resolve_secret"]

ProviderSpec = Mapping[str, Any] | Iterable[Mapping[str, Any]] | str | Path | None


def _from_mapping(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, settings in table.items():
        if not isinstance(settings, Mapping):
            raise config_error(f"providers.{name}", "must be a table of settings")
        entry = dict(settings)
        if "name" in entry and entry["name"] != name:
            raise config_error(f"providers.{name}.name", "differs from the table's name")
        entry["name"] = name
        out.append(entry)
    return out


def resolve_secret(where: str, source: Any) -> str:
    """The value of one secret given as ``{"env": NAME}``, ``{"file": PATH}`` or a plain string."""
    if isinstance(source, str):
        return source
    if not isinstance(source, Mapping) or len(source) != 1 or not ({"env", "file"} & set(source)):
        raise config_error(where, 'must be {env = "NAME"}, {file = "PATH"} or a string')
    if "env" in source:
        name = source["env"]
        if not isinstance(name, str) or not name or "\0" in name or "=" in name:
            raise config_error(f"{where}.env", "must be the name of an environment variable")
        try:
            value = os.environ.get(name)
        except UnicodeError:  # a lone surrogate the OS encoding cannot carry
            value = None
        if not value:
            raise config_error(where, f"environment variable {name!r} is not set or empty")
        return value
    path = source["file"]
    if not isinstance(path, (str, os.PathLike)) or "\0" in str(path):
        raise config_error(f"{where}.file", "must be a path without NUL characters")
    try:
        value = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise config_error(where, f"file {str(path)!r} is not UTF-8 text") from None
    except (OSError, ValueError) as exc:
        raise config_error(where, f"cannot read file {str(path)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    value = value.removesuffix("\n")
    if not value:
        raise config_error(where, f"file {str(path)!r} is empty")
    return value


def _resolve(entry: dict[str, Any], where: str) -> dict[str, Any]:
    secrets = entry.get("secrets")
    if secrets is None:
        return entry
    if not isinstance(secrets, Mapping):
        raise config_error(f"{where}.secrets", "must be a table")
    # Keys stay as given: the core refuses any that is not text, naming it.
    entry["secrets"] = {k: resolve_secret(f"{where}.secrets.{k}", v) for k, v in secrets.items()}
    return entry


def load_providers(spec: ProviderSpec) -> list[dict[str, Any]]:
    """Normalises any accepted form into a list of provider dicts for the core, secrets resolved."""
    return [_resolve(entry, f"providers.{entry.get('name', '?')}") for entry in _load(spec)]


def _load(spec: ProviderSpec) -> list[dict[str, Any]]:
    if spec is None:
        default = Path("herald.toml")
        return load_providers(default) if default.is_file() else []
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise config_error("providers", f"file {str(path)!r} does not exist") from None
        except UnicodeDecodeError:
            raise config_error("providers", f"file {str(path)!r} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise config_error("providers", f"{path}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise config_error("providers", f"cannot read file {str(path)!r}: {exc}") from None
        table = document.get("providers", {})
        if not isinstance(table, Mapping):
            raise config_error("providers", f"{path}: [providers] must be a table")
        return _from_mapping(table)
    if isinstance(spec, Mapping):
        return _from_mapping(spec)
    if isinstance(spec, (bytes, bytearray)) or not isinstance(spec, Iterable):
        raise config_error("providers", "must be a list of dicts, a {name: settings} mapping or a TOML path")
    out = []
    for i, entry in enumerate(spec):
        if not isinstance(entry, Mapping):
            raise config_error(f"providers[{i}]", "must be a dict")
        out.append(dict(entry))
    return out
