"""Packaging promises: stubs for every public _core name, __all__ everywhere, py.typed."""

from __future__ import annotations

import ast
import importlib
import pkgutil
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
