"""Bad configuration ends in a herald exception that names the field and the reason, never in a crash.

Providers, secrets, engine options and plans; the arguments of each call are in test_bad_input.py.
Each case was once a segfault, a SystemError, a pybind11 "Unable to cast", a silently wrapped
number or a message cut at a NUL byte (issue 7).
"""

from __future__ import annotations

import math
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import herald
from herald import Engine, Plan, RuleSet, Sandbox

from support import UTF8, default_rules


# -- provider configuration -----------------------------------------------------------------------------


def engine_with(tmp_path: Path, sandbox: Sandbox, **provider: Any) -> herald.ConfigError:
    """The ConfigError of an engine with one sandbox provider 'sms' changed by `provider`."""
    config = sandbox.provider("sms", **provider)
    with pytest.raises(herald.ConfigError) as info:
        Engine(tmp_path / "data", rules=default_rules(), providers=[config])
    return info.value


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        pytest.param("concurrency", 2**32 + 8, "must be an integer from 1 to 10000", id="concurrency-2e32+8"),
        pytest.param("concurrency", 2**64, "must be an integer from 1 to 10000", id="concurrency-2e64"),
        pytest.param("concurrency", 0, "must be an integer from 1 to 10000", id="concurrency-0"),
        pytest.param("concurrency", True, "must be an integer from 1 to 10000", id="concurrency-bool"),
        pytest.param("concurrency", 8.0, "must be an integer from 1 to 10000", id="concurrency-float"),
        pytest.param("max_attempts", 2**32, "must be an integer from 0 to 100", id="max-attempts-2e32"),
        pytest.param("max_attempts", -1, "must be an integer from 0 to 100", id="max-attempts-negative"),
        pytest.param("timeout_ms", 2**63, "must be an integer from 1 to 600000", id="timeout-2e63"),
        pytest.param("timeout_ms", "10", "must be an integer from 1 to 600000", id="timeout-str"),
        pytest.param("rate_per_s", math.inf, "must be a number from 0 to 10000000", id="rate-inf"),
        pytest.param("rate_per_s", 10**400, "must be a number from 0 to 10000000", id="rate-huge-int"),
        pytest.param("rate_per_s", -0.5, "must be a number from 0 to 10000000", id="rate-negative"),
        pytest.param("cost_per_message", math.inf, "must be a finite number, 0 or more", id="cost-inf"),
        pytest.param("cost_per_message", math.nan, "must be a finite number, 0 or more", id="cost-nan"),
        pytest.param("cost_per_message", -0.01, "must be a finite number, 0 or more", id="cost-negative"),
        pytest.param("cost_per_message", False, "must be a finite number, 0 or more", id="cost-bool"),
        pytest.param("circuit_failure_rate", 1.5, "must be a number from 0 to 1", id="circuit-rate-over-1"),
        pytest.param("circuit_failure_rate", -0.1, "must be a number from 0 to 1", id="circuit-rate-negative"),
        pytest.param("circuit_min_attempts", 0, "must be an integer from 1 to 1000000", id="circuit-min-0"),
        pytest.param("circuit_window_ms", 999, "must be an integer from 1000 to 3600000", id="circuit-window-short"),
        pytest.param("circuit_consecutive_failures", -1, "must be an integer from 0 to 1000000",
                     id="circuit-run-negative"),
        pytest.param("circuit_cooldown_ms", 0, "must be an integer from 1 to 3600000", id="circuit-cooldown-0"),
        pytest.param("circuit_probes", 1001, "must be an integer from 1 to 1000", id="circuit-probes-many"),
        pytest.param("circuit_probes", True, "must be an integer from 1 to 1000", id="circuit-probes-bool"),
    ],
)
def test_provider_numbers(tmp_path: Path, sandbox: Sandbox, key: str, value: Any, reason: str) -> None:
    error = engine_with(tmp_path, sandbox, **{key: value})
    assert error.field == f"providers.sms.{key}"
    assert str(error).startswith(f"providers.sms.{key}: {reason}")


def test_provider_numbers_at_their_bounds_are_accepted(tmp_path: Path, sandbox: Sandbox) -> None:
    config = sandbox.provider("sms", concurrency=10_000, max_attempts=100, timeout_ms=600_000, rate_per_s=1e7,
                              cost_per_message=1e9, circuit_failure_rate=1, circuit_min_attempts=1_000_000,
                              circuit_window_ms=1000, circuit_consecutive_failures=0, circuit_cooldown_ms=3_600_000,
                              circuit_probes=1000)
    with Engine(tmp_path / "data", rules=default_rules(), providers=[config]) as engine:
        assert not engine.closed


@pytest.mark.parametrize(
    ("provider", "field", "reason"),
    [
        pytest.param({"kind": "sand\udc80box"}, "providers.sms.kind", UTF8.format(4), id="kind"),
        pytest.param({"url": "http://\ud800"}, "providers.sms.url", UTF8.format(7), id="url"),
        pytest.param({"settings": {"from": "+1\udc80"}}, "providers.sms.settings.from", UTF8.format(2), id="setting"),
        pytest.param({"headers": {"x-a": "\udc80"}}, "providers.sms.headers.x-a", UTF8.format(0), id="header"),
        pytest.param({"settings": {"fr\udc80m": "x"}}, "providers.sms.settings.fr\\udc80m",
                     "key " + UTF8.format(2), id="setting-key"),
        pytest.param({"settings": {1: "x"}}, "providers.sms.settings", "keys must be strings", id="setting-int-key"),
        pytest.param({"settings": {"from": 5}}, "providers.sms.settings.from", "must be a string (got int)",
                     id="setting-int"),
        pytest.param({"colour\udc80": "red"}, "providers.sms.colour\\udc80", "unknown field", id="unknown-key"),
    ],
)
def test_provider_texts(tmp_path: Path, sandbox: Sandbox, provider: dict[str, Any], field: str, reason: str) -> None:
    error = engine_with(tmp_path, sandbox, **provider)
    assert error.field == field
    assert str(error).startswith(f"{field}: {reason}")


def test_a_surrogate_in_a_provider_name(tmp_path: Path, sandbox: Sandbox) -> None:
    config = sandbox.provider("sms\udc80")
    with pytest.raises(herald.ConfigError) as info:
        Engine(tmp_path / "data", rules=default_rules(), providers=[config])
    assert info.value.field == "providers[0].name"
    assert str(info.value) == f"providers[0].name: {UTF8.format(3)})"
    with pytest.raises(herald.ConfigError) as info:
        Engine(tmp_path / "data", rules=default_rules(), providers={"sms\udc80": {"kind": "sandbox"}})
    assert info.value.field == "providers[0].name"


def test_a_secret_with_a_surrogate_is_named_by_key_only(tmp_path: Path, sandbox: Sandbox) -> None:
    error = engine_with(tmp_path, sandbox, secrets={"token": "s3cr3t\udc80value"})
    assert error.field == "providers.sms.secrets.token"
    assert "s3cr3t" not in str(error)
    assert str(error) == f"providers.sms.secrets.token: {UTF8.format(6)})"


@pytest.mark.parametrize(
    ("source", "field"),
    [
        pytest.param({"file": "/tmp/a\x00b"}, "providers.sms.secrets.token.file", id="file-with-nul"),
        pytest.param({"file": 5}, "providers.sms.secrets.token.file", id="file-not-a-path"),
        pytest.param({"env": "A\x00B"}, "providers.sms.secrets.token.env", id="env-with-nul"),
        pytest.param({"env": "\ud800"}, "providers.sms.secrets.token", id="env-unencodable"),
        pytest.param({"other": "x"}, "providers.sms.secrets.token", id="unknown-source"),
    ],
)
def test_secret_sources(tmp_path: Path, sandbox: Sandbox, source: dict[str, Any], field: str) -> None:
    assert engine_with(tmp_path, sandbox, secrets={"token": source}).field == field


def test_a_secrets_file_that_is_not_text(tmp_path: Path, sandbox: Sandbox) -> None:
    binary = tmp_path / "secret.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    error = engine_with(tmp_path, sandbox, secrets={"token": {"file": str(binary)}})
    assert error.field == "providers.sms.secrets.token"
    assert "is not UTF-8 text" in str(error)


@pytest.mark.parametrize(
    ("providers", "field"),
    [
        pytest.param(5, "providers", id="int"),
        pytest.param([5], "providers[0]", id="item-int"),
        pytest.param({"sms": "sandbox"}, "providers.sms", id="table-not-a-table"),
    ],
)
def test_provider_containers(tmp_path: Path, providers: Any, field: str) -> None:
    with pytest.raises(herald.ConfigError) as info:
        Engine(tmp_path / "data", rules=default_rules(), providers=providers)
    assert info.value.field == field


def test_a_providers_file_that_is_not_utf8(tmp_path: Path) -> None:
    toml = tmp_path / "herald.toml"
    toml.write_bytes(b"[providers.sms]\nkind = \"\xff\"\n")
    with pytest.raises(herald.ConfigError) as info:
        Engine(tmp_path / "data", rules=default_rules(), providers=toml)
    assert info.value.field == "providers"
    assert "is not UTF-8 text" in str(info.value)


def test_core_config_errors_carry_the_field_too(tmp_path: Path, sandbox: Sandbox) -> None:
    error = engine_with(tmp_path, sandbox, kind="carrier-pigeon")
    assert error.field == "providers.sms.kind"


# -- engine options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field", "reason"),
    [
        pytest.param({"route_batch": 2**64}, "route_batch", "must be an integer from 1 to 65536", id="route-batch-huge"),
        pytest.param({"route_batch": 0}, "route_batch", "must be an integer from 1 to 65536", id="route-batch-0"),
        pytest.param({"route_batch": True}, "route_batch", "must be an integer from 1 to 65536", id="route-batch-bool"),
        pytest.param({"max_attempts_per_provider": 2**32}, "max_attempts_per_provider",
                     "must be an integer from 1 to 100", id="max-attempts-2e32"),
        pytest.param({"retry_base": math.inf}, "retry_base", "must be a number of seconds from 0 to 3600", id="retry-inf"),
        pytest.param({"retry_base": math.nan}, "retry_base", "must be a number of seconds from 0 to 3600", id="retry-nan"),
        pytest.param({"retry_max": 10**400}, "retry_max", "must be a number of seconds from 0 to 86400", id="retry-max-huge"),
        pytest.param({"close_timeout": -1}, "close_timeout", "must be a number of seconds from 0 to 86400",
                     id="close-negative"),
        pytest.param({"close_timeout": True}, "close_timeout", "must be a number of seconds", id="close-bool"),
        pytest.param({"reconcile_after": 1e300}, "reconcile_after", "must be a number of seconds from 0 to 2592000",
                     id="reconcile-after-huge"),
        pytest.param({"reconcile_interval": "30"}, "reconcile_interval", "must be a number of seconds",
                     id="reconcile-interval-str"),
        pytest.param({"seed": -1}, "seed", "must be an integer from 0 to 18446744073709551615", id="seed-negative"),
        pytest.param({"seed": 2**64}, "seed", "must be an integer from 0 to 18446744073709551615", id="seed-2e64"),
        pytest.param({"durability": "fs\udc80ync"}, "durability", UTF8.format(2), id="durability-surrogate"),
        pytest.param({"durability": "fsync\x00"}, "durability", "must be 'process' or 'fsync' (got 'fsync\\x00')",
                     id="durability-nul"),
        pytest.param({"receipts": 8787}, "receipts", "must be a string (got int)", id="receipts-int"),
        pytest.param({"public_url": "http://\udc80"}, "public_url", UTF8.format(7), id="public-url-surrogate"),
        pytest.param({"receipts": "a\x00b:1"}, "receipts", "must not contain a NUL character", id="receipts-nul"),
        pytest.param({"receipts": "nonsense"}, "receipts", 'must be "host:port"', id="receipts-no-port"),
    ],
)
def test_engine_options(tmp_path: Path, sandbox: Sandbox, options: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(herald.ConfigError) as info:
        Engine(tmp_path / "data", rules=default_rules(), providers=[sandbox.provider("sms")], **options)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: {reason}")


@pytest.mark.parametrize(
    ("data_dir", "reason"),
    [
        pytest.param("data\udc80", UTF8.format(4), id="surrogate"),
        pytest.param("data\x00dir", "must not contain a NUL character", id="nul"),
        pytest.param(42, "must be a path (got int)", id="int"),
        pytest.param("", "must not be empty", id="empty"),
    ],
)
def test_engine_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Any, reason: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(herald.ConfigError) as info:
        Engine(data_dir, rules=default_rules(), providers=[])
    assert info.value.field == "data_dir"
    assert str(info.value).startswith(f"data_dir: {reason}")


def test_a_listener_the_os_refuses_is_still_a_herald_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(herald.HeraldError, match="^the engine could not start: "):
            Engine(tmp_path / "data", rules=default_rules(), providers=[], receipts=f"127.0.0.1:{port}")


def test_the_core_checks_options_in_milliseconds_too(tmp_path: Path) -> None:
    from herald import _core

    def route(batch: list[Any]) -> list[Any]:
        return ["no rules" for _ in batch]

    for name, value in [("retry_base_ms", 2**63), ("close_timeout_ms", -1), ("log_segment_bytes", 2**64),
                        ("reconcile_interval_ms", 0), ("route_batch_size", 2**64)]:
        with pytest.raises(herald.ConfigError) as info:
            _core.Engine(str(tmp_path / "d"), "process", [], route, **{name: value})
        assert info.value.field == name
    with pytest.raises(herald.ConfigError) as info:
        _core.Engine(str(tmp_path / "d"), "process", [], "not callable")
    assert info.value.field == "route_batch"


# -- plans --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        pytest.param({"channel": "sms\udc80"}, "Plan.channel", UTF8.format(3), id="channel-surrogate"),
        pytest.param({"channel": ""}, "Plan.channel", "must be a non-empty string", id="channel-empty"),
        pytest.param({"providers": ["a", "b\ud800"]}, "Plan.providers[1]", UTF8.format(1), id="provider-surrogate"),
        pytest.param({"providers": ["a", 3]}, "Plan.providers", "must be a non-empty sequence", id="provider-int"),
        pytest.param({"providers": 3}, "Plan.providers", "must be a non-empty sequence", id="providers-int"),
        pytest.param({"template": "Hi {name}\udc80"}, "Plan.template", UTF8.format(9), id="template-surrogate"),
        pytest.param({"template": b"Hi"}, "Plan.template", "must be a string or None", id="template-bytes"),
        pytest.param({"batch": 1}, "Plan.batch", "must be True or False", id="batch-int"),
    ],
)
def test_plan_fields(kwargs: dict[str, Any], field: str, reason: str) -> None:
    args: dict[str, Any] = {"channel": "sms", "providers": ["primary"]}
    args.update(kwargs)
    with pytest.raises(herald.ValidationError) as info:
        Plan(**args)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: {reason}")
    assert isinstance(info.value, ValueError)


class RawRules(RuleSet):
    """Answers the core with plan-like objects as given, bypassing Plan's own checks."""

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__()
        self.answers = answers

    def route_batch(self, batch: list[Any]) -> list[Any]:
        return [self.answers[n.type] for n in batch]


def test_an_unusable_plan_dead_letters_only_its_own_notification(tmp_path: Path, sandbox: Sandbox) -> None:
    answers = {
        "good": Plan("sms", ["primary"], "{text|hi}"),
        "channel": SimpleNamespace(channel="sms\udc80", providers=["primary"], template=None),
        "provider": SimpleNamespace(channel="sms", providers=["primary", "\ud800"], template=None),
        "template": SimpleNamespace(channel="sms", providers=["primary"], template="x\udc80"),
        "batch": SimpleNamespace(channel="sms", providers=["primary"], template=None, batch="yes"),
        "attrs": SimpleNamespace(channel="sms"),
        "reason": "no plan for you \udc80",
    }
    expected = {
        "channel": "the rule returned an unusable plan: plan.channel: " + UTF8.format(3) + ")",
        "provider": "the rule returned an unusable plan: plan.providers[1]: " + UTF8.format(0) + ")",
        "template": "the rule returned an unusable plan: plan.template: " + UTF8.format(1) + ")",
        "batch": "the rule returned an unusable plan: plan.batch: must be True or False",
        "attrs": "the rule returned an unusable plan: 'types.SimpleNamespace' object has no attribute 'providers'",
        "reason": "no plan for you \\udc80",
    }
    with Engine(tmp_path / "data", rules=RawRules(answers), providers=[sandbox.provider("primary")],
                close_timeout=3.0) as engine:
        receipts = engine.send_many([{"type": t, "recipient": "u1"} for t in answers])
        assert engine.wait_idle(10)
        states = {t: engine.status(r.id) for t, r in zip(answers, receipts)}
    assert states["good"] is not None and states["good"].state == "completed"
    for kind, reason in expected.items():
        status = states[kind]
        assert status is not None and status.state == "dead_lettered"
        assert status.last_error == reason


def test_a_rule_that_builds_a_bad_plan_dead_letters_with_the_reason(tmp_path: Path, sandbox: Sandbox) -> None:
    def bad_rule(n: Any) -> Plan:
        return Plan("sms\udc80", ["primary"])

    def raising_rule(n: Any) -> Plan:
        raise RuntimeError("broken \ud800 rule")

    rules = RuleSet({"bad": bad_rule, "raising": raising_rule, "good": lambda n: Plan("sms", ["primary"])})
    with Engine(tmp_path / "data", rules=rules, providers=[sandbox.provider("primary")], close_timeout=3.0) as engine:
        bad, raising, good = engine.send_many([{"type": t, "recipient": "u1"} for t in ("bad", "raising", "good")])
        assert engine.wait_idle(10)
        bad_status, raising_status, good_status = (engine.status(r.id) for r in (bad, raising, good))
    assert good_status is not None and good_status.state == "completed"
    assert bad_status is not None and bad_status.state == "dead_lettered"
    assert bad_status.last_error is not None
    assert bad_status.last_error.endswith(f"raised ValidationError: Plan.channel: {UTF8.format(3)})")
    assert raising_status is not None and raising_status.state == "dead_lettered"
    assert raising_status.last_error is not None
    assert raising_status.last_error.endswith("raised RuntimeError: broken \\ud800 rule")
