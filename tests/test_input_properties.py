"""Property tests: no argument to send, send_many or Engine crashes the process.

Whatever Hypothesis generates (self-containing and deeply nested values, lone surrogates, NUL
bytes, huge ints, inf and NaN, bytes, odd keys, random provider configurations) must end in a
result or in the herald exception for it, naming a field. Each property runs in a child interpreter
(this file run as a script), so a segfault fails its test, with the signal and stderr, instead of
taking the test run down.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

PROPERTIES = ["send_arguments", "send_many_batches", "provider_configs", "engine_options"]


@pytest.mark.parametrize("name", PROPERTIES)
def test_property_holds_in_a_child_process(name: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, __file__, name], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    if proc.returncode < 0:
        pytest.fail(f"{name}: the child died of {signal.Signals(-proc.returncode).name}\n{proc.stderr[-5000:]}")
    assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert f"{name}: ok" in proc.stdout


# -- everything below runs in the child ------------------------------------------------------------------


def _child(name: str) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import herald
    from herald import Engine, RuleSet

    quick = settings(max_examples=150, deadline=None, database=None, derandomize=False,
                     suppress_health_check=list(HealthCheck))

    # ---- strategies ----
    def with_surrogate(parts: tuple[str, int, str]) -> str:
        return parts[0] + chr(parts[1]) + parts[2]

    surrogate_text = st.tuples(st.text(max_size=6), st.integers(0xD800, 0xDFFF), st.text(max_size=4)).map(with_surrogate)
    names = st.sampled_from(["otp", "news", "u1", "a.b:c", "x" * 129, "", "bad name", "a\x00b"])
    texts = st.one_of(st.text(max_size=12), surrogate_text, names)
    huge_ints = st.sampled_from([2**31, 2**32 + 8, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**400, -(10**400)])
    numbers = st.one_of(st.integers(-(10**6), 10**6), huge_ints, st.floats(allow_nan=True, allow_infinity=True),
                        st.booleans())
    times = st.one_of(
        numbers,
        st.timedeltas(),
        st.datetimes(timezones=st.just(timezone.utc)),
        st.datetimes(),  # naive
        st.sampled_from([timedelta.max, timedelta.min, datetime.max.replace(tzinfo=timezone.utc), 1e300, 253_402_300_800]),
    )
    scalars = st.one_of(st.none(), texts, numbers, st.binary(max_size=4), st.just(object()), st.just({1, 2}), times)
    keys = st.one_of(st.text(max_size=6), surrogate_text, st.integers(), st.none(), st.just(("t",)))

    def json_like(leaves: Any = scalars) -> Any:
        return st.recursive(
            leaves,
            lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                                    st.dictionaries(keys, inner, max_size=4)),
            max_leaves=12,
        )

    def add_cycle(value: Any, choice: int) -> Any:
        """Puts one of a container's own ancestors (or itself) inside it."""
        spots: list[tuple[Any, list[Any]]] = []
        stack: list[tuple[Any, list[Any]]] = [(value, [])]
        while stack:
            node, path = stack.pop()
            if isinstance(node, (list, dict)):
                spots.append((node, path))
                children = node.values() if isinstance(node, dict) else node
                stack.extend((c, [*path, node]) for c in children)
        if not spots:
            return value
        node, path = spots[choice % len(spots)]
        targets = [*path, node]
        target = targets[choice % len(targets)]
        if isinstance(node, list):
            node.append(target)
        else:
            node["loop"] = target
        return value

    def deep(levels: int, kind: str) -> Any:
        value: Any = "leaf"
        for i in range(levels):
            value = [value] if kind == "list" or (kind == "mixed" and i % 2) else {"k": value}
        return value

    containers = st.one_of(
        json_like(),
        st.builds(add_cycle, st.dictionaries(st.text(max_size=4), json_like(), min_size=1, max_size=3),
                  st.integers(0, 100)),
        st.builds(deep, st.integers(1, 5000), st.sampled_from(["list", "dict", "mixed"])),
        st.builds(lambda n: {"big": ["x" * 50_000] * n}, st.integers(1, 40)),
    )
    data_values = st.one_of(st.none(), containers,
                            st.dictionaries(st.text(max_size=4), containers, max_size=3))
    recipients = st.one_of(
        texts,
        st.builds(lambda rid, extra: {"id": rid, **extra}, texts,
                  st.dictionaries(st.text(max_size=4), containers, max_size=2)),
        containers,
    )
    options = st.fixed_dictionaries(
        {},
        optional={
            "priority": st.one_of(st.sampled_from(["critical", "high", "normal", "bulk"]), texts, numbers),
            "idempotency_key": st.one_of(texts, numbers),
            "ordering_key": st.one_of(texts, numbers),
            "send_at": times,
            "expires_at": times,
            "tenant": st.one_of(texts, st.none(), numbers),
        },
    )
    send_args = st.tuples(st.one_of(names, texts, numbers), recipients, data_values, options)

    def well_formed(error: BaseException) -> None:
        field = getattr(error, "field", None)
        assert isinstance(field, str) and field, f"{type(error).__name__} without a field: {error}"
        assert str(error).startswith(field.replace("\x00", "\\x00") + ": "), (field, str(error))

    class Seen(RuleSet):
        """Reads each accepted notification's data and recipient back, then declines it."""

        def route_batch(self, batch: list[Any]) -> list[Any]:
            return [f"seen {n.type}: {len(repr(n.data)) + len(repr(n.recipient))}" for n in batch]

    base = Path(tempfile.mkdtemp(prefix="herald-props-"))
    engine = Engine(base / "main", rules=Seen(), providers=[], close_timeout=2.0)

    # ---- properties ----
    @quick
    @given(send_args)
    def send_arguments(args: tuple[Any, Any, Any, dict[str, Any]]) -> None:
        type_, recipient, data, kwargs = args
        try:
            receipt = engine.send(type_, recipient, data, **kwargs)
        except herald.ValidationError as error:
            well_formed(error)
        except herald.IdempotencyConflict:
            pass
        else:
            assert receipt.id > 0

    @quick
    @given(st.lists(st.one_of(send_args.map(lambda a: {"type": a[0], "recipient": a[1], "data": a[2], **a[3]}),
                              st.dictionaries(keys, scalars, max_size=3), scalars), max_size=4),
           st.one_of(st.integers(1, 3), numbers))
    def send_many_batches(items: list[Any], chunk: Any) -> None:
        try:
            receipts = engine.send_many(items, chunk=chunk)
        except herald.ValidationError as error:
            well_formed(error)
        except herald.IdempotencyConflict:
            pass
        else:
            assert len(receipts) == len(items)

    provider_values = st.one_of(scalars, st.dictionaries(keys, st.one_of(texts, numbers), max_size=3))
    provider_keys = st.sampled_from(["name", "kind", "url", "concurrency", "max_attempts", "timeout_ms",
                                     "rate_per_s", "cost_per_message", "headers", "settings", "secrets"])
    good_numbers = st.fixed_dictionaries({}, optional={
        "concurrency": st.integers(1, 10_000), "max_attempts": st.integers(0, 100),
        "timeout_ms": st.integers(1, 600_000), "rate_per_s": st.floats(0, 1e7),
        "cost_per_message": st.floats(0, 1e6)})
    provider_dicts = st.builds(
        lambda good, odd: {"name": "p", "kind": "sandbox", "url": "http://127.0.0.1:9", **good, **odd},
        good_numbers,
        st.dictionaries(st.one_of(provider_keys, keys), provider_values, max_size=3),
    )
    counter = iter(range(10**9))

    def build_engine(**kwargs: Any) -> None:
        directory = base / f"e{next(counter)}"
        try:
            Engine(directory, rules=Seen(), **kwargs).close()
        except herald.ConfigError as error:
            well_formed(error)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    @settings(quick, max_examples=100)
    @given(st.one_of(st.lists(provider_dicts, max_size=2),
                     st.dictionaries(texts, provider_values, max_size=2),
                     scalars))
    def provider_configs(providers: Any) -> None:
        build_engine(providers=providers)

    engine_keys = {
        "route_batch": st.one_of(st.integers(1, 65_536), numbers),
        "max_attempts_per_provider": st.one_of(st.integers(1, 100), numbers),
        "retry_base": st.one_of(st.floats(0, 3600), numbers),
        "retry_max": numbers,
        "seed": numbers,
        "close_timeout": st.one_of(st.floats(0, 5), numbers),
        "reconcile_after": numbers,
        "reconcile_interval": numbers,
        "durability": st.one_of(st.sampled_from(["process", "fsync"]), texts, numbers),
        "receipts": st.one_of(st.none(), surrogate_text, numbers),
        "public_url": st.one_of(st.none(), texts, numbers),
    }

    @settings(quick, max_examples=100)
    @given(st.fixed_dictionaries({}, optional=engine_keys))
    def engine_options(kwargs: dict[str, Any]) -> None:
        build_engine(providers=[], **kwargs)

    properties = {"send_arguments": send_arguments, "send_many_batches": send_many_batches,
                  "provider_configs": provider_configs, "engine_options": engine_options}
    try:
        properties[name]()
        # The engine is alive and still takes work.
        assert engine.send("otp", "u1", {"code": "1"}).id > 0
        assert engine.wait_idle(30)
    finally:
        engine.close()
        shutil.rmtree(base, ignore_errors=True)
    print(f"{name}: ok")


if __name__ == "__main__":
    _child(sys.argv[1])
