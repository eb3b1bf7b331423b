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
raises :class:`herald.ConfigError` naming the provider and field.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from herald.errors import ConfigError

__all__ = ["ProviderSpec", "load_providers", "resolve_secret"]

ProviderSpec = Mapping[str, Any] | Iterable[Mapping[str, Any]] | str | Path | None


def _from_mapping(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, settings in table.items():
        if not isinstance(settings, Mapping):
            raise ConfigError(f"providers.{name}: must be a table of settings")
        entry = dict(settings)
        if "name" in entry and entry["name"] != name:
            raise ConfigError(f"providers.{name}.name: differs from the table's name")
        entry["name"] = name
        out.append(entry)
    return out


def resolve_secret(where: str, source: Any) -> str:
    """The value of one secret given as ``{"env": NAME}``, ``{"file": PATH}`` or a plain string."""
    if isinstance(source, str):
        return source
    if not isinstance(source, Mapping) or len(source) != 1 or not ({"env", "file"} & set(source)):
        raise ConfigError(f"{where}: must be {{env = \"NAME\"}}, {{file = \"PATH\"}} or a string")
    if "env" in source:
        name = source["env"]
        value = os.environ.get(str(name))
        if not value:
            raise ConfigError(f"{where}: environment variable {name} is not set or empty")
        return value
    path = Path(str(source["file"]))
    try:
        value = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read file {str(path)!r}: {exc.strerror}") from None
    value = value.removesuffix("\n")
    if not value:
        raise ConfigError(f"{where}: file {str(path)!r} is empty")
    return value


def _resolve(entry: dict[str, Any], where: str) -> dict[str, Any]:
    secrets = entry.get("secrets")
    if secrets is None:
        return entry
    if not isinstance(secrets, Mapping):
        raise ConfigError(f"{where}.secrets: must be a table")
    entry["secrets"] = {str(k): resolve_secret(f"{where}.secrets.{k}", v) for k, v in secrets.items()}
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
            raise ConfigError(f"providers: file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"providers: {path}: {exc}") from None
        table = document.get("providers", {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"providers: {path}: [providers] must be a table")
        return _from_mapping(table)
    if isinstance(spec, Mapping):
        return _from_mapping(spec)
    out = []
    for i, entry in enumerate(spec):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"providers[{i}]: must be a dict")
        out.append(dict(entry))
    return out
