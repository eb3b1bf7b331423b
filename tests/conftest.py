"""Shared fixtures: a real sandbox server on loopback and engines on real SQLite files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from herald import Engine, Sandbox
from support import default_rules


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def make_engine(tmp_path: Path, sandbox: Sandbox) -> Iterator[Callable[..., Engine]]:
    """Builds engines on tmp_path with 'primary' and 'backup' sandbox providers; closes them after."""
    engines: list[Engine] = []

    def factory(**overrides: Any) -> Engine:
        options: dict[str, Any] = {
            "rules": default_rules(),
            "providers": [
                sandbox.provider("primary", concurrency=overrides.pop("primary_concurrency", 16), max_attempts=2),
                sandbox.provider("backup", concurrency=16, max_attempts=2),
            ],
            "retry_base": 0.02,
            "retry_max": 0.2,
            "close_timeout": 3.0,
        }
        options.update(overrides)
        data_dir = options.pop("data_dir", tmp_path / "data")
        engine = Engine(data_dir, **options)
        engines.append(engine)
        return engine

    yield factory
    for e in engines:
        e.close()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()
