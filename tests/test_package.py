"""Packaging promises: stubs for every public _core name, __all__ everywhere, py.typed."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import herald
from herald import _core


def _stub_names() -> dict[str, set[str]]:
    stub = Path(herald.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    out: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)} | {
                n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            }
        elif isinstance(node, ast.FunctionDef):
            out[node.name] = set()
    return out


def test_every_public_core_name_has_a_stub() -> None:
    stubs = _stub_names()
    public = {name for name in dir(_core) if not name.startswith("_")}
    missing = public - set(stubs)
    assert not missing, f"herald._core names without a stub in _core.pyi: {sorted(missing)}"
    for cls_name in ("Engine", "Sandbox", "Notification", "Receipt"):
        cls = getattr(_core, cls_name)
        members = {m for m in vars(cls) if not m.startswith("_")}
        assert members <= stubs[cls_name], f"{cls_name}: unstubbed {sorted(members - stubs[cls_name])}"


def test_every_module_declares_all() -> None:
    public = [info for info in pkgutil.iter_modules(herald.__path__) if not info.name.startswith("_")]
    assert len(public) > 3, [info.name for info in public]  # the loop below checks something
    for info in public:
        module = importlib.import_module(f"herald.{info.name}")
        assert hasattr(module, "__all__"), f"herald.{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"herald.{info.name}.__all__ names missing {name}"


def test_package_is_typed() -> None:
    assert Path(herald.__file__).with_name("py.typed").exists()


def test_errors_share_one_base() -> None:
    for name in ("ValidationError", "IdempotencyConflict", "NotFound", "InvalidState", "ConfigError",
                 "StoreError", "EngineClosed"):
        assert issubclass(getattr(herald, name), herald.HeraldError)


def test_the_distribution_name_is_free_on_pypi_and_the_import_name_is_herald() -> None:
    # "herald" on PyPI belongs to an unrelated project (issue 8).
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text("utf-8"))
    assert pyproject["project"]["name"] == "herald-engine"
    assert pyproject["tool"]["scikit-build"]["wheel"]["packages"] == ["python/herald"]
    assert pyproject["project"]["scripts"] == {"herald": "herald.cli:main"}


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_sqlite_memory_statistics_are_off_when_herald_is_imported_first() -> None:
    # Every SQLite allocation took a process-wide mutex for them (herald::Store says why).
    assert _python("import herald._core as c; print(c._sqlite_memory_stats_off())") == "True"


def test_an_engine_works_when_sqlite_was_initialised_before_herald(tmp_path: Path) -> None:
    # SQLite then refuses the setting: the statistics stay on, and nothing else changes.
    code = f"""
import sqlite3
sqlite3.connect(":memory:").execute("select 1")
import herald
from herald import Engine, Plan, RuleSet
print(herald._core._sqlite_memory_stats_off())
rules = RuleSet({{"note": lambda n: Plan("email", ["p"], "hello")}})
with Engine({str(tmp_path)!r}, rules=rules, providers=[{{"name": "p", "kind": "webhook", "url": "http://127.0.0.1:9/x"}}]) as e:
    r = e.send(type="note", recipient={{"id": "u1", "email": "u1@example.test"}}, send_at=4102444800)
    print(e.status(r.id).state)
"""
    assert _python(code).split() == ["False", "queued"]
