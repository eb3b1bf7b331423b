"""Bad input ends in a herald exception that names the field and the reason, never in a crash.

The arguments of each call; providers, secrets, engine options and plans are in test_bad_config.py.
Each case was once a segfault, a SystemError, a pybind11 "Unable to cast", a silently wrapped
number or a message cut at a NUL byte (issue 7).
"""

from __future__ import annotations

import math
import resource
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import herald
from herald import Engine, Sandbox

from support import UTF8

DEPTH = 64  # the documented nesting limit of data and recipient
TIME_RANGE = "must be a time from 1970-01-01 to 9999-12-31"


def send_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"type": "otp", "recipient": "u1", "data": {"code": "1"}}
    args.update(overrides)
    return args


def rejected(engine: Engine, **overrides: Any) -> herald.ValidationError:
    """The ValidationError that send() raises for these arguments; send_many must agree on it."""
    args = send_args(**overrides)
    with pytest.raises(herald.ValidationError) as info:
        engine.send(args.pop("type"), args.pop("recipient"), args.pop("data"), **args)
    error = info.value
    with pytest.raises(herald.ValidationError) as batch_info:
        engine.send_many([send_args(), send_args(**overrides)])
    assert batch_info.value.field == f"notifications[1].{error.field}"
    assert str(batch_info.value) == f"notifications[1].{error}"
    return error


def nested(levels: int, make: Callable[[Any], Any]) -> Any:
    """`levels` containers, one inside the next (built without recursion)."""
    value: Any = "leaf"
    for _ in range(levels):
        value = make(value)
    return value


# -- data and recipient: cycles, depth, size ------------------------------------------------------


def test_data_that_contains_itself(engine: Engine) -> None:
    data: dict[str, Any] = {"a": 1}
    data["self"] = data
    error = rejected(engine, data=data)
    assert error.field == "data.self"
    assert str(error) == "data.self: contains itself"


def test_a_list_that_contains_itself_deep_inside(engine: Engine) -> None:
    loop: list[Any] = [1, 2]
    loop.append({"back": loop})
    error = rejected(engine, data={"a": {"b": [0, 1, 2, loop]}})
    assert error.field == "data.a.b[3][2].back"
    assert str(error).endswith(": contains itself")


def test_recipient_that_contains_itself(engine: Engine) -> None:
    recipient: dict[str, Any] = {"id": "u1"}
    recipient["friends"] = [recipient]
    error = rejected(engine, recipient=recipient)
    assert error.field == "recipient.friends[0]"
    assert str(error) == "recipient.friends[0]: contains itself"


def test_the_same_object_twice_is_not_a_cycle(engine: Engine) -> None:
    shared = {"x": 1}
    receipt = engine.send("otp", "u1", {"code": "1", "a": shared, "b": [shared, shared]})
    assert receipt.state == "queued"


@pytest.mark.parametrize("levels", [100, 50_000], ids=["100-levels", "50000-levels"])
def test_data_nested_too_deep(engine: Engine, levels: int) -> None:
    error = rejected(engine, data={"x": nested(levels, lambda v: [v])})
    # data is level 1 and x level 2: the 65th container is x followed by 63 [0].
    assert error.field == "data.x" + "[0]" * (DEPTH - 1)
    assert str(error).endswith(f": is nested deeper than {DEPTH} levels")


def test_dicts_nested_tens_of_thousands_deep_in_the_recipient(engine: Engine) -> None:
    error = rejected(engine, recipient={"id": "u1", "a": nested(30_000, lambda v: {"a": v})})
    assert error.field == "recipient" + ".a" * DEPTH
    assert "nested deeper than 64 levels" in str(error)


def test_nesting_up_to_the_limit_is_accepted(engine: Engine) -> None:
    data = {"x": nested(DEPTH - 1, lambda v: [v])}  # data + 63 lists = 64 levels
    assert engine.send("otp", "u1", data).state == "queued"
    error = rejected(engine, data={"x": nested(DEPTH, lambda v: [v])})
    assert "nested deeper" in str(error)


def test_conversion_stops_at_the_size_limit_before_building_the_rest(engine: Engine) -> None:
    chunk = "x" * 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = rejected(engine, data={"items": [chunk] * 10_000})  # 1 GB of JSON if built whole
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert error.field == "data"
    assert str(error) == "data: larger than 256 KiB"
    assert grown_kib < 100 * 1024


def test_one_string_over_the_size_limit(engine: Engine) -> None:
    error = rejected(engine, recipient={"id": "u1", "bio": "b" * (300 * 1024)})
    assert str(error) == "recipient: larger than 256 KiB"


# -- values JSON cannot carry -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        pytest.param({"n": 2**64}, "data.n", "must be an integer from -9223372036854775808 to 9223372036854775807",
                     id="int-too-large"),
        pytest.param({"n": [-(10**400)]}, "data.n[0]", "must be an integer from", id="huge-negative-int"),
        pytest.param({"f": math.inf}, "data.f", "NaN and infinity are not valid JSON", id="inf"),
        pytest.param({"f": {"g": math.nan}}, "data.f.g", "NaN and infinity are not valid JSON", id="nan"),
        pytest.param({"b": b"raw"}, "data.b", "cannot be sent as JSON (type bytes)", id="bytes"),
        pytest.param({"s": {1, 2}}, "data.s", "cannot be sent as JSON (type set)", id="set"),
        pytest.param({"a": {1: "x"}}, "data.a", "dictionary keys must be strings", id="int-key"),
        pytest.param({"a": {None: "x"}}, "data.a", "dictionary keys must be strings", id="none-key"),
    ],
)
def test_values_json_cannot_carry(engine: Engine, data: dict[str, Any], field: str, reason: str) -> None:
    error = rejected(engine, data=data)
    assert error.field == field
    assert str(error).startswith(f"{field}: {reason}")


# -- lone surrogates: text with no UTF-8 form ------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "index"),
    [
        pytest.param({"type": "otp\udc80"}, "type", 3, id="type"),
        pytest.param({"tenant": "\ud800acme"}, "tenant", 0, id="tenant"),
        pytest.param({"recipient": "u\udfff1"}, "recipient", 1, id="recipient-str"),
        pytest.param({"recipient": {"id": "u1\udc80"}}, "recipient.id", 2, id="recipient-id"),
        pytest.param({"recipient": {"id": "u1", "email": "a\udc80@b.c"}}, "recipient.email", 1, id="recipient-field"),
        pytest.param({"idempotency_key": "k\udc80"}, "idempotency_key", 1, id="idempotency-key"),
        pytest.param({"ordering_key": "\udc80"}, "ordering_key", 0, id="ordering-key"),
        pytest.param({"priority": "high\udc80"}, "priority", 4, id="priority"),
        pytest.param({"data": {"code": "12\udc8034"}}, "data.code", 2, id="data-value"),
        pytest.param({"data": {"a": {"b": ["x", "y\ud83d"]}}}, "data.a.b[1]", 1, id="data-nested"),
    ],
)
def test_lone_surrogates_are_named(engine: Engine, overrides: dict[str, Any], field: str, index: int) -> None:
    error = rejected(engine, **overrides)
    assert error.field == field
    assert str(error) == f"{field}: {UTF8.format(index)})"


def test_a_lone_surrogate_in_a_data_key_names_the_key(engine: Engine) -> None:
    error = rejected(engine, data={"ok": 1, "bad\udc80key": 2})
    assert error.field == "data.bad\\udc80key"  # the key as text, the surrogate escaped
    assert str(error) == "data.bad\\udc80key: key " + UTF8.format(3) + ")"


def test_a_surrogate_in_the_error_text_itself_is_escaped(engine: Engine) -> None:
    with pytest.raises(herald.ValidationError) as info:
        engine.send_many([{"type": "otp", "recipient": "u1", "wh\udc80t": 1}])
    assert info.value.field == "notifications[0].wh\\udc80t"
    assert str(info.value) == "notifications[0].wh\\udc80t: unknown field"


# -- times -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["send_at", "expires_at"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(10**400, TIME_RANGE, id="int-10e400"),
        pytest.param(2**63, TIME_RANGE, id="int-2e63"),
        pytest.param(1e300, TIME_RANGE, id="float-1e300"),
        pytest.param(253_402_300_800, TIME_RANGE, id="year-10000"),
        pytest.param(-1, TIME_RANGE, id="negative"),
        pytest.param(-1e-3, TIME_RANGE, id="negative-float"),
        pytest.param(math.inf, "must be a finite number", id="inf"),
        pytest.param(math.nan, "must be a finite number", id="nan"),
        pytest.param(timedelta.max, "must end between 1970-01-01 and 9999-12-31 when added to now", id="timedelta-max"),
        pytest.param(timedelta.min, "must end between 1970-01-01 and 9999-12-31 when added to now", id="timedelta-min"),
        pytest.param(datetime.min.replace(tzinfo=timezone.utc), TIME_RANGE, id="datetime-min"),
        pytest.param(True, "must be a datetime, a timedelta or epoch seconds (got bool)", id="bool"),
        pytest.param(b"1", "must be a datetime, a timedelta or epoch seconds (got bytes)", id="bytes"),
    ],
)
def test_times_out_of_range(engine: Engine, field: str, value: Any, reason: str) -> None:
    error = rejected(engine, **{field: value})
    assert error.field == field
    assert str(error).startswith(f"{field}: {reason}")


def test_times_at_the_edge_of_the_range_are_accepted(engine: Engine) -> None:
    last = datetime.max.replace(tzinfo=timezone.utc)
    assert engine.send("otp", "u1", {"code": "1"}, send_at=253_402_300_799).state == "queued"
    assert engine.send("otp", "u2", {"code": "1"}, send_at=last, expires_at=None).state == "queued"
    status = engine.status(engine.send("otp", "u3", {"code": "1"}, expires_at=last).id)
    assert status is not None and status.expires_at == pytest.approx(253_402_300_800, abs=1)


# -- NUL bytes in error texts ------------------------------------------------------------------------


def test_an_error_text_keeps_everything_after_a_nul(engine: Engine) -> None:
    error = rejected(engine, type="a\x00b")
    assert error.field == "type"
    assert str(error) == "type: may contain only letters, digits and _ - . : (got 'a\\x00b')"


def test_a_nul_in_an_unknown_field_name(engine: Engine) -> None:
    with pytest.raises(herald.ValidationError) as info:
        engine.send_many([{"type": "otp", "recipient": "u1", "x\x00y": 1}])
    assert info.value.field == "notifications[0].x\x00y"  # .field keeps the name as given
    assert str(info.value) == "notifications[0].x\\x00y: unknown field"


def test_a_nul_in_the_priority_is_reported_whole(engine: Engine) -> None:
    error = rejected(engine, priority="hi\x00gh")
    assert str(error) == "priority: must be one of critical, high, normal, bulk (got 'hi\\x00gh')"


# -- send_many and the other calls ---------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [0, -1, True, 2.0, 2**64])
def test_send_many_chunk(engine: Engine, chunk: Any) -> None:
    with pytest.raises(herald.ValidationError) as info:
        engine.send_many([send_args()], chunk=chunk)
    assert info.value.field == "chunk"
    assert "must be an integer from 1 to 2147483647" in str(info.value)


def test_send_many_of_something_not_iterable(engine: Engine) -> None:
    with pytest.raises(herald.ValidationError) as info:
        engine.send_many(5)  # type: ignore[arg-type]
    assert info.value.field == "notifications"
    with pytest.raises(herald.ValidationError) as info:
        engine.send_many([send_args(), "otp"])  # type: ignore[list-item]
    assert str(info.value) == "notifications[1]: must be a dict"


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -1.0, 10**400, "1"])
def test_wait_idle_timeout(engine: Engine, timeout: Any) -> None:
    with pytest.raises(herald.ValidationError) as info:
        engine.wait_idle(timeout)
    assert info.value.field == "timeout"


def test_wait_timeout_must_be_a_number(engine: Engine) -> None:
    receipt = engine.send("otp", "u1", {"code": "1"})
    with pytest.raises(herald.ValidationError) as info:
        engine.wait(receipt.id, math.nan)
    assert info.value.field == "timeout"


def test_unsuppress_with_a_surrogate(engine: Engine) -> None:
    with pytest.raises(herald.ValidationError) as info:
        engine.unsuppress("sms\udc80", "+15550100")
    assert info.value.field == "channel"
    assert str(info.value) == f"channel: {UTF8.format(3)})"


def test_the_engine_still_works_after_all_that(engine: Engine, sandbox: Sandbox) -> None:
    data: dict[str, Any] = {}
    data["me"] = data
    for bad in (data, {"x": nested(10_000, lambda v: [v])}, {"k": "\udc80"}, {"n": 10**400}):
        with pytest.raises(herald.ValidationError):
            engine.send("otp", "u1", bad)
    receipt = engine.send("otp", "u1", {"code": "42"})
    assert engine.wait(receipt.id, timeout=10).state == "completed"
