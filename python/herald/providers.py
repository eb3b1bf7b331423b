"""Provider configuration: a list of dicts, a {name: settings} mapping, or a TOML file.

TOML form::

    [providers.sms-primary]
    kind = "sandbox"
    url = "http://127.0.0.1:8025"
    concurrency = 64

The core validates every field and raises :class:`herald.ConfigError` naming the provider and field.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from herald.errors import ConfigError

__all__ = ["ProviderSpec", "load_providers"]

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


def load_providers(spec: ProviderSpec) -> list[dict[str, Any]]:
    """Normalises any accepted form into a list of provider dicts for the core."""
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
