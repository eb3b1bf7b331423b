"""The stubs in ``python/herald/_core.pyi`` tell the truth about ``herald._core``.

Every function, method, property and class of the extension is compared with its stub. The stub is
read with ``ast``; the runtime signature is the one pybind11 writes at the top of each ``__doc__``
(each numbered line for an overloaded function), read with ``ast`` too, as a ``def``.

Checked exactly:
- the names: everything the module exports is in the stub and everything in the stub exists in the
  module (dunders of a class other than ``__init__`` are left out: ``__repr__`` and the like are
  object's);
- each signature: parameter names and order, which have defaults and the default values (pybind11
  prints ``repr()`` of each), positional-only (``/``) and keyword-only (``*``) parameters,
  overloads one by one and in order; properties are properties and methods are methods;
- exception classes: their bases, and the class attributes they declare.

Types, as strictly as pybind11 allows honestly:
- a parameter the binding takes as ``py::object`` (pybind11 writes ``object``) is converted by hand
  and raises ValidationError or ConfigError naming the field, so its stub type says what the
  binding accepts (``str``, ``float``, ``dict[str, Any]``) and cannot be checked here; likewise a
  return pybind11 writes as ``object`` (a dict or None built by hand);
- everything else must agree: ``int``, ``str``, ``bool``, ``float``, ``None``, ``list``, ``dict``,
  the module's classes, their arguments when pybind11 gives them (``list[Receipt]``), and unions
  with None. pybind11 3 writes ``typing.SupportsInt``/``SupportsFloat`` for C++ int and double
  parameters (it converts anything with ``__index__``/``__float__``): the stub's ``int``/``float``
  stand for those. A ``Literal`` of strings (herald.kinds) stands for ``str``. ``Any`` in the stub
  matches anything: less precise, never false.

The public modules over _core: herald.Client's methods have herald.Engine's signatures (but for
the differences its docstring names), and mypy over python/herald holds every call into _core to
the stub (engine.py passes each option by keyword) and the stub's row dicts to the dataclasses
they are unpacked into. mypy's stubtest is not used: pybind11 functions carry no
``__text_signature__``, so it compares no parameters, and it reports every pybind11 class's
metaclass as a difference.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import herald
from herald import _core, kinds

STUB = Path(herald.__file__).with_name("_core.pyi")
CORE = "herald._core."
# pybind11's names for what the stub writes plainly (see the docstring).
RUNTIME_ALIASES = {
    "typing.SupportsInt": "int",
    "typing.SupportsIndex": "int",
    "typing.SupportsFloat": "float",
    "typing.Any": "Any",
    "typing.Callable": "Callable",
    "collections.abc.Callable": "Callable",
    "collections.abc.Sequence": "list",
    "collections.abc.Mapping": "dict",
    "typing.List": "list",
    "typing.Dict": "dict",
    "List": "list",
    "Dict": "dict",
    "NoneType": "None",
}
UNCHECKED = {"object", "Any"}
LITERAL_ALIASES = {name for name in kinds.__all__ if typing.get_origin(getattr(kinds, name)) is typing.Literal}


# -- both sides as ast --------------------------------------------------------------------------


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text("utf-8"))


def stub_top_level() -> dict[str, list[ast.stmt]]:
    """Top-level names the stub defines (imports are not exports), each with its definitions."""
    out: dict[str, list[ast.stmt]] = {}
    for node in stub_tree().body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            out.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.setdefault(node.target.id, []).append(node)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out.setdefault(t.id, []).append(node)
    return out


def stub_members(cls: ast.ClassDef) -> dict[str, list[ast.stmt]]:
    out: dict[str, list[ast.stmt]] = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            out.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.setdefault(node.target.id, []).append(node)
    return out


def decorators(fn: ast.FunctionDef) -> set[str]:
    return {ast.unparse(d) for d in fn.decorator_list}


def runtime_signatures(name: str, doc: str | None) -> list[ast.FunctionDef]:
    """The signatures pybind11 wrote for `name`, as ast defs (one per overload)."""
    assert doc, f"{name}: no __doc__ (not a pybind11 function?)"
    lines = doc.splitlines()
    if len(lines) > 1 and lines[1].strip() == "Overloaded function.":
        # "1. name(...) -> R" for each overload, separated by blank lines and their own docs.
        sigs = [line.split(". ", 1)[1] for line in lines[2:] if line[:1].isdigit() and ". " in line
                and line.split(". ", 1)[1].startswith(f"{name}(")]
    else:
        sigs = [lines[0]]
    out = []
    for sig in sigs:
        assert sig.startswith(f"{name}("), f"{name}: the doc does not start with a signature: {sig!r}"
        try:
            fn = ast.parse(f"def {sig}: ...").body[0]
        except SyntaxError as exc:
            pytest.fail(f"{name}: pybind11's signature is not Python ({exc}): {sig!r}; "
                        "give the default a py::arg_v description")
        assert isinstance(fn, ast.FunctionDef)
        out.append(fn)
    return out


def property_signature(name: str, prop: property | types.GetSetDescriptorType) -> ast.FunctionDef:
    """A pybind11 property's getter, or a getter written against the C API (a getset descriptor):
    "(self: herald._core.X) -> T" on its doc's first line."""
    doc = (getattr(prop.fget, "__doc__", None) if isinstance(prop, property) else prop.__doc__) or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    assert first.startswith("("), f"{name}: the getter's doc does not start with a signature: {first!r}"
    fn = ast.parse(f"def {name}{first}: ...").body[0]
    assert isinstance(fn, ast.FunctionDef)
    if fn.args.args and fn.args.args[0].arg == "arg0":  # a lambda getter's self, unnamed: callers never name it
        fn.args.args[0].arg = "self"
    return fn


# -- types ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class T:
    """A type reduced to what both sides can say: a name, its arguments, or a union of members."""

    name: str
    args: tuple[T, ...] = ()
    members: frozenset[T] = frozenset()  # a union (name "|")

    def __str__(self) -> str:
        if self.name == "|":
            return " | ".join(sorted(map(str, self.members)))
        return self.name + (f"[{', '.join(map(str, self.args))}]" if self.args else "")


def union(parts: list[T]) -> T:
    flat: set[T] = set()
    for p in parts:
        flat |= p.members if p.name == "|" else {p}
    return next(iter(flat)) if len(flat) == 1 else T("|", members=frozenset(flat))


def reduce_type(node: ast.expr | None, side: str) -> T:
    """The T of an annotation; `side` is "stub" or "runtime" (their spellings differ)."""
    if node is None:
        return T("Any")
    if isinstance(node, ast.Constant) and node.value is None:
        return T("None")
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        return reduce_type(ast.parse(node.value, mode="eval").body, side)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return union([reduce_type(node.left, side), reduce_type(node.right, side)])
    if isinstance(node, ast.List):  # Callable's parameter list
        return T("[]", tuple(reduce_type(e, side) for e in node.elts))
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = ast.unparse(node)
        if side == "runtime":
            name = RUNTIME_ALIASES.get(name, name)
            name = name.removeprefix(CORE)
        elif name in LITERAL_ALIASES:
            return T("str")
        return T(name)
    if isinstance(node, ast.Subscript):
        base = reduce_type(node.value, side).name
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base in ("Literal", "typing.Literal"):
            values = [e.value for e in elts if isinstance(e, ast.Constant)]
            assert values and all(isinstance(v, str) for v in values), f"a Literal that is not of str: {ast.unparse(node)}"
            return T("str")
        if base in ("Optional", "typing.Optional"):
            return union([reduce_type(elts[0], side), T("None")])
        if base in ("Union", "typing.Union"):
            return union([reduce_type(e, side) for e in elts])
        return T(base, tuple(reduce_type(e, side) for e in elts))
    raise AssertionError(f"an annotation this test cannot read: {ast.unparse(node)}")


def type_mismatch(stub: T, runtime: T) -> str | None:
    """Why the stub's type is not the runtime's, or None when it agrees (see the docstring)."""
    if runtime.name in UNCHECKED or stub.name == "Any":
        return None
    if runtime.name == "|" or stub.name == "|":
        s = stub.members if stub.name == "|" else frozenset({stub})
        r = runtime.members if runtime.name == "|" else frozenset({runtime})
        unmatched = [str(x) for x in r if not any(type_mismatch(y, x) is None for y in s)]
        extra = [str(y) for y in s if not any(type_mismatch(y, x) is None for x in r)]
        return f"{stub} vs {runtime}" if unmatched or extra else None
    if stub.name != runtime.name:
        return f"{stub} vs {runtime}"
    if runtime.args and stub.args:
        if len(runtime.args) != len(stub.args):
            return f"{stub} vs {runtime}"
        for a, b in zip(stub.args, runtime.args, strict=True):
            if why := type_mismatch(a, b):
                return f"{stub} vs {runtime} ({why})"
    return None


# -- signatures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "positional-only", "positional", "keyword-only", "*args", "**kwargs"
    default: str | None  # the default's source text, None when it has none
    annotation: ast.expr | None


def params(fn: ast.FunctionDef) -> list[Param]:
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    out = [Param(p.arg, "positional-only" if i < len(a.posonlyargs) else "positional",
                 None if d is None else ast.unparse(d), p.annotation)
           for i, (p, d) in enumerate(zip(positional, defaults, strict=True))]
    if a.vararg:
        out.append(Param(a.vararg.arg, "*args", None, a.vararg.annotation))
    out += [Param(p.arg, "keyword-only", None if d is None else ast.unparse(d), p.annotation)
            for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]
    if a.kwarg:
        out.append(Param(a.kwarg.arg, "**kwargs", None, a.kwarg.annotation))
    return out


def default_value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except ValueError:
        return text


def signature_problems(where: str, stub: ast.FunctionDef, runtime: ast.FunctionDef, method: bool) -> list[str]:
    problems = []
    sp, rp = params(stub), params(runtime)
    if method:  # self: the stub leaves it unannotated, pybind11 names the class
        if not sp or sp[0].name != "self" or not rp or rp[0].name != "self":
            return [f"{where}: the first parameter must be self (stub {[p.name for p in sp]}, "
                    f"runtime {[p.name for p in rp]})"]
        sp, rp = sp[1:], rp[1:]
    if [(p.name, p.kind) for p in sp] != [(p.name, p.kind) for p in rp]:
        return [f"{where}: parameters differ: stub ({', '.join(f'{p.name} [{p.kind}]' for p in sp)}), "
                f"runtime ({', '.join(f'{p.name} [{p.kind}]' for p in rp)})"]
    for s, r in zip(sp, rp, strict=True):
        if (s.default is None) != (r.default is None):
            problems.append(f"{where}({s.name}): default in the stub {s.default}, at runtime {r.default}")
        elif s.default is not None and r.default is not None and s.default != "...":
            if default_value(s.default) != default_value(r.default):
                problems.append(f"{where}({s.name}): default {s.default} in the stub, {r.default} at runtime")
        if why := type_mismatch(reduce_type(s.annotation, "stub"), reduce_type(r.annotation, "runtime")):
            problems.append(f"{where}({s.name}): type {why}")
    if why := type_mismatch(reduce_type(stub.returns, "stub"), reduce_type(runtime.returns, "runtime")):
        problems.append(f"{where}: return type {why}")
    return problems


def function_problems(where: str, name: str, defs: list[ast.stmt], obj: object, method: bool) -> list[str]:
    fns = [d for d in defs if isinstance(d, ast.FunctionDef)]
    if len(fns) != len(defs):
        return [f"{where}: the stub declares it as an attribute, the module has a function"]
    stubs = [f for f in fns if "overload" in decorators(f) or "typing.overload" in decorators(f)] or fns
    runtimes = runtime_signatures(name, getattr(obj, "__doc__", None))
    if len(stubs) != len(runtimes):
        return [f"{where}: {len(stubs)} signature(s) in the stub, {len(runtimes)} at runtime"]
    problems = []
    for i, (s, r) in enumerate(zip(stubs, runtimes, strict=True)):
        label = where if len(stubs) == 1 else f"{where} (overload {i + 1})"
        problems += signature_problems(label, s, r, method)
    return problems


def class_member_names(cls: type) -> set[str]:
    """What a class defines itself: no dunders but __init__, nor pybind11's own interop hook."""
    return {n for n in vars(cls)
            if (n == "__init__" or not (n.startswith("__") and n.endswith("__")))
            and not n.startswith("_pybind11_")}


def class_problems(name: str, node: ast.ClassDef, cls: type) -> list[str]:
    problems = []
    stub_bases = [ast.unparse(b) for b in node.bases]
    runtime_bases = [b.__qualname__ if b.__module__ in ("builtins", "herald._core") else f"{b.__module__}.{b.__qualname__}"
                     for b in cls.__bases__]
    if stub_bases != runtime_bases and not (
            not stub_bases and runtime_bases in (["object"], ["pybind11_builtins.pybind11_object"])):
        problems.append(f"{name}: bases {stub_bases} in the stub, {runtime_bases} at runtime")
    members = stub_members(node)
    runtime_names = class_member_names(cls)
    if type(vars(cls).get("__init__")).__name__ != "instancemethod":
        # No py::init: an exception's inherited one, or pybind11's slot that raises "No constructor
        # defined" (Notification, Receipt). The stub declares none.
        runtime_names.discard("__init__")
    if missing := sorted(runtime_names - set(members)):
        problems.append(f"{name}: not in the stub: {missing}")
    if extra := sorted(set(members) - runtime_names):
        problems.append(f"{name}: in the stub but not at runtime: {extra}")
    for member in sorted(runtime_names & set(members)):
        where = f"{name}.{member}"
        defs = members[member]
        value = vars(cls)[member]
        if isinstance(value, (property, types.GetSetDescriptorType)):
            fn = defs[0]
            if not (isinstance(fn, ast.FunctionDef) and "property" in decorators(fn)):
                problems.append(f"{where}: a property at runtime, not in the stub")
                continue
            problems += signature_problems(where, fn, property_signature(member, value), method=True)
        elif callable(value) and not isinstance(value, type):
            fn = defs[0]
            if isinstance(fn, ast.FunctionDef) and "property" in decorators(fn):
                problems.append(f"{where}: a property in the stub, a method at runtime")
                continue
            problems += function_problems(where, member, defs, value, method=True)
        else:  # a plain class attribute (an exception's .field): the stub's type must admit its value
            ann = defs[0].annotation if isinstance(defs[0], ast.AnnAssign) else None
            if ann is None:
                problems.append(f"{where}: a value at runtime, not an annotated attribute in the stub")
                continue
            t = reduce_type(ann, "stub")
            allowed = t.members if t.name == "|" else frozenset({t})
            seen = T("None") if value is None else T(type(value).__name__)
            if T("Any") not in allowed and seen not in allowed:
                problems.append(f"{where}: the stub says {t}, the runtime value is {value!r}")
    return problems


# -- the tests --------------------------------------------------------------------------------


def runtime_names() -> set[str]:
    return {n for n in vars(_core) if not (n.startswith("__") and n.endswith("__"))}


def stub_only_types() -> set[str]:
    """Private TypedDicts: the stub's names for the dicts the module builds (no runtime object)."""
    return {name for name, defs in stub_top_level().items()
            if name.startswith("_") and isinstance(defs[0], ast.ClassDef)
            and [ast.unparse(b) for b in defs[0].bases] == ["TypedDict"]}


def test_the_stub_and_the_module_export_the_same_names() -> None:
    stub = set(stub_top_level()) - stub_only_types()
    runtime = runtime_names()
    assert not runtime - stub, f"in herald._core but not in _core.pyi: {sorted(runtime - stub)}"
    assert not stub - runtime, f"in _core.pyi but not in herald._core: {sorted(stub - runtime)}"


def core_objects() -> Iterator[tuple[str, object]]:
    for name in sorted(runtime_names()):
        yield name, getattr(_core, name)


@pytest.mark.parametrize(("name", "obj"), list(core_objects()), ids=[n for n, _ in core_objects()])
def test_each_stub_matches_the_runtime(name: str, obj: object) -> None:
    defs = stub_top_level().get(name)
    assert defs, f"{name} has no stub"
    if isinstance(obj, type):
        node = defs[0]
        assert isinstance(node, ast.ClassDef), f"{name}: a class at runtime, not in the stub"
        problems = class_problems(name, node, obj)
    elif callable(obj):
        problems = function_problems(name, name, defs, obj, method=False)
    else:
        problems = [f"{name}: a value in herald._core; stub values are not compared yet"]
    assert not problems, "\n".join(problems)


# -- the test's own reading of pybind11 -------------------------------------------------------------


def test_an_overloaded_doc_is_read_one_signature_per_overload() -> None:
    doc = ("f(*args, **kwargs)\nOverloaded function.\n\n"
           "1. f(self: herald._core.Engine, id: typing.SupportsInt) -> bool\n\nBy id.\n\n"
           "2. f(self: herald._core.Engine, key: str, *, limit: typing.SupportsInt = 10) -> list[herald._core.Receipt]\n")
    one, two = runtime_signatures("f", doc)
    assert [p.name for p in params(one)] == ["self", "id"]
    assert [(p.name, p.kind, p.default) for p in params(two)] == [
        ("self", "positional", None), ("key", "positional", None), ("limit", "keyword-only", "10")]
    assert str(reduce_type(two.returns, "runtime")) == "list[Receipt]"


def test_a_stub_that_lies_is_caught() -> None:
    runtime = runtime_signatures("send", "send(self: herald._core.Engine, fields: dict, n: typing.SupportsInt = 3) -> herald._core.Receipt")[0]
    good = ast.parse("def send(self, fields: dict[str, Any], n: int = 3) -> Receipt: ...").body[0]
    assert isinstance(good, ast.FunctionDef)
    assert signature_problems("send", good, runtime, method=True) == []
    for lie in ("def send(self, notification: dict[str, Any], n: int = 3) -> Receipt: ...",  # renamed
                "def send(self, fields: dict[str, Any], n: int = 4) -> Receipt: ...",  # default
                "def send(self, fields: dict[str, Any], n: int) -> Receipt: ...",  # no default
                "def send(self, fields: dict[str, Any], *, n: int = 3) -> Receipt: ...",  # keyword-only
                "def send(self, fields: list[Any], n: int = 3) -> Receipt: ...",  # type
                "def send(self, fields: dict[str, Any], n: str = 3) -> Receipt: ...",  # type
                "def send(self, fields: dict[str, Any], n: int = 3) -> Receipt | None: ...",  # return
                "def send(self, fields: dict[str, Any]) -> Receipt: ..."):  # arity
        fn = ast.parse(lie).body[0]
        assert isinstance(fn, ast.FunctionDef)
        assert signature_problems("send", fn, runtime, method=True), lie


# -- the public modules against the stub ------------------------------------------------------------


# Where herald.Client differs from herald.Engine on purpose (its module docstring says so).
CLIENT_DIFFERENCES = {
    ("send", "return"): ("Receipt", "RemoteReceipt"),
    ("send_many", "return"): ("list[Receipt]", "list[RemoteReceipt]"),
    ("send_many", "chunk"): ("KEYWORD_ONLY: int = 10000", "KEYWORD_ONLY: int = 1000"),  # under the body limit
}


def signature_text(fn: Callable[..., Any]) -> dict[str, str]:
    """Parameter kinds, annotations (text: the modules use postponed annotations) and defaults."""
    sig = inspect.signature(fn)
    out = {"return": str(sig.return_annotation)}
    for p in sig.parameters.values():
        default = "" if p.default is inspect.Parameter.empty else f" = {p.default!r}"
        out[p.name] = f"{p.kind.name}: {p.annotation}{default}"
    return out


@pytest.mark.parametrize("name", ["send", "send_many", "status", "trace", "dead_letters", "suppressions",
                                  "unsuppress", "retry", "cancel", "wait"])
def test_the_clients_methods_are_the_engines(name: str) -> None:
    from herald.client import AsyncClient, Client

    engine, client, aclient = (signature_text(getattr(c, name)) for c in (herald.Engine, Client, AsyncClient))
    assert inspect.iscoroutinefunction(getattr(AsyncClient, name))
    assert client == aclient
    assert list(engine) == list(client), f"{name}: parameters {list(engine)} (Engine), {list(client)} (Client)"
    for key in engine:
        if (name, key) in CLIENT_DIFFERENCES:
            assert (engine[key], client[key]) == CLIENT_DIFFERENCES[(name, key)]
        else:
            assert engine[key] == client[key], f"{name}({key}): {engine[key]} (Engine), {client[key]} (Client)"


@pytest.mark.slow
def test_the_package_type_checks_against_the_stub() -> None:
    """mypy over python/herald (settings in pyproject.toml): every call the public modules make into
    _core is held to _core.pyi, with each option by keyword (engine.py), and the stub's rows
    (_StatusRow, _EventRow, _SuppressionRow) to the dataclasses they are unpacked into
    (herald.Status, Event, Suppression): a key or a type that differs is an error."""
    root = Path(__file__).resolve().parent.parent
    cache = root / "build" / "mypy-cache"  # build/ is ignored; a warm cache takes a second, a cold one ~10 s of CPU
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(root / "pyproject.toml"),
                             "--cache-dir", str(cache), str(root / "python" / "herald")],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
