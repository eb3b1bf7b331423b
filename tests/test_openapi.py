"""GET /openapi.json (python/herald/openapi.json) describes herald serve as cpp/src/api.cpp implements
it: the document is valid OpenAPI 3.1 and names every route, and Schemathesis, driving a real
`herald serve` from the document it serves, finds no 5xx, no undocumented status or content type and
no answer outside its schema."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from herald import Sandbox
from herald.serve import openapi_document
from support import wait_for
from test_serve import KEY

ROOT = Path(__file__).resolve().parents[1]
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Every endpoint route() in cpp/src/api_route.cpp knows (the Action list of cpp/include/herald/api.hpp).
ROUTES = [
    ("POST", "/v1/notifications"),
    ("GET", "/v1/notifications"),
    ("POST", "/v1/notifications:batch"),
    ("GET", "/v1/notifications/{id}"),
    ("GET", "/v1/notifications/{id}/trace"),
    ("POST", "/v1/notifications/{id}/retry"),
    ("POST", "/v1/notifications/{id}/cancel"),
    ("GET", "/v1/dead-letters"),
    ("GET", "/v1/suppressions"),
    ("DELETE", "/v1/suppressions/{channel}/{address}"),
    ("GET", "/v1/dashboard"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/dashboard"),
]
OPEN_ROUTES = {"/health", "/ready", "/metrics", "/openapi.json", "/dashboard"}

# Examples per operation and mode: the whole file stays well under a minute on two cores. Bodies
# are slow to generate, so the two sends get fewer. Negative mode (data the document forbids) needs
# something to break: operations without parameters or body have none.
EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 40}
FEWER = {"/v1/notifications": 2, "/v1/notifications:batch": 3}
FUZZED = [(m, p, mode) for m, p in ROUTES for mode in EXAMPLES
          if mode is GenerationMode.POSITIVE or p.startswith("/v1/")]


def _document() -> dict[str, Any]:
    return json.loads(openapi_document())


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {(m.upper(), path) for path, item in doc["paths"].items() for m in item if m in methods}


def test_the_document_is_valid_openapi_and_names_every_route() -> None:
    text = openapi_document()
    doc = json.loads(text)
    assert doc["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(doc)
    schema.validate()  # against the OpenAPI 3.1 meta-schema; raises naming the spot
    for result in schema.get_all_operations():
        result.ok()  # every $ref resolves, every operation loads
    assert _operations(doc) == set(ROUTES)
    # The list above is api.hpp's: every Action documented with a method and a path.
    header = (ROOT / "cpp/include/herald/api.hpp").read_text()
    named = {(m, p.rstrip(":").split("?")[0]) for m, p in re.findall(r"///< (GET|POST|PUT|PATCH|DELETE) (\S+)", header)}
    assert named == set(ROUTES)
    for method, path in ROUTES:
        operation = doc["paths"][path][method.lower()]
        assert (operation.get("security") == []) == (path in OPEN_ROUTES), (method, path)
        assert "200" in operation["responses"]
        if path not in OPEN_ROUTES:
            assert {"401", "403", "503"} <= set(operation["responses"]), (method, path)
    # Hand-maintained: pretty-printed with a 2-space indent, as json.dumps writes it.
    assert text == json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    # The package ships the repository's file.
    assert text == (ROOT / "python/herald/openapi.json").read_text(encoding="utf-8")


RULES = """
from herald import Plan, rule


@rule("solo")
def solo(n):
    return Plan("sms", ["primary"], "{text|hello}")


@rule("otp")
def otp(n):
    return Plan("sms", ["twilio"], "Your code is {code|0}")


@rule("flaky")
def flaky(n):
    return Plan("sms", ["flaky"], "{text|hello}")
"""


@dataclass
class Api:
    url: str
    process: subprocess.Popen[str]
    sandbox: Sandbox
    ids: dict[str, int] = field(default_factory=dict)
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)


def _start(tmp: Path, sandbox: Sandbox) -> Api:
    """`python -m herald.serve` as tests/test_serve.py starts it, with a Twilio-speaking provider
    too (its opt-out answer records a suppression) and receipts on."""
    (tmp / "rules").mkdir()
    (tmp / "rules" / "openapi_rules.py").write_text(RULES)
    config = tmp / "herald.toml"
    config.write_text(textwrap.dedent(f"""
        [serve]
        listen = "127.0.0.1:0"
        data_dir = "data"
        rules = "rules"
        max_body_bytes = 1048576
        workers = 4
        receipts = "127.0.0.1:0"

        [serve.api_keys]
        test = {{ env = "HERALD_OPENAPI_TEST_KEY" }}

        [providers.primary]
        kind = "sandbox"
        url = "{sandbox.url}"
        concurrency = 16
        max_attempts = 1
        secrets = {{ signing_secret = "sandbox-secret" }}

        [providers.twilio]
        kind = "twilio"
        url = "{sandbox.url}"
        cost_per_message = 0.0079
        settings = {{ account_sid = "AC00000000000000000000000000000001", from = "+15550100" }}
        secrets = {{ auth_token = "twilio-test-token" }}

        [providers.flaky]                # one failure opens its circuit, for an hour
        kind = "sandbox"
        url = "{sandbox.url}"
        max_attempts = 1
        circuit_consecutive_failures = 1
        circuit_cooldown_ms = 3600000
    """))
    env = {**os.environ, "HERALD_OPENAPI_TEST_KEY": KEY}
    with (tmp / "serve.stderr").open("w") as stderr:  # a file, not a pipe: a full pipe would stall it
        process = subprocess.Popen([sys.executable, "-m", "herald.serve", "--config", str(config)], cwd=tmp, env=env,
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = process.stdout.readline() if process.stdout else ""
    assert line.startswith("herald serve listening on "), (line, (tmp / "serve.stderr").read_text())
    return Api(line.split()[-1], process, sandbox)


def _final(http: httpx.Client, id: int, timeout: float = 20.0) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        status = http.get(f"/v1/notifications/{id}").json()
        return status if status["state"] in ("completed", "dead_lettered", "suppressed", "cancelled", "expired") else None

    return wait_for(final, timeout, what=f"notification {id} to become final")


def _seed(api: Api) -> None:
    """Something of every kind, so that answers carry lists and values, not only empties and 404s."""
    with httpx.Client(base_url=api.url, headers=AUTH, timeout=30) as http:
        def send(**body: Any) -> int:
            r = http.post("/v1/notifications", json=body)
            assert r.status_code == 200, r.text
            return int(r.json()["id"])

        now = time.time()
        api.ids["completed"] = send(type="solo", recipient={"id": "u1", "phone": "+15550100"}, data={"text": "hi"},
                                    priority="high", idempotency_key="k1", ordering_key="o1", send_at=now - 1,
                                    expires_at=now + 3600, tenant="acme")
        api.ids["scheduled"] = send(type="solo", recipient="u2", send_at=now + 3600)
        api.ids["to_cancel"] = send(type="solo", recipient="u3", send_at=now + 3600)
        api.ids["suppressed"] = send(type="otp", recipient={"id": "u4", "phone": "+15005550004"})
        api.sandbox.set_faults("primary", error_rate=1.0, error_status=400)
        api.ids["dead"] = send(type="solo", recipient={"id": "u5", "phone": "+15550105"})
        assert _final(http, api.ids["dead"])["state"] == "dead_lettered"
        api.sandbox.set_faults("flaky", error_rate=1.0, error_status=503)
        assert _final(http, send(type="flaky", recipient="u6"))["state"] == "dead_lettered"
        api.sandbox.clear_faults()
        assert _final(http, api.ids["completed"])["state"] == "completed"
        assert _final(http, api.ids["suppressed"])["state"] == "suppressed"
        assert http.get("/v1/suppressions").json()["suppressions"]
        wait_for(lambda: http.get(f"/v1/notifications/{api.ids['completed']}").json()["receipt"] is not None,
                 20, what="the receipt of the completed notification")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("openapi")
    with Sandbox() as sandbox:
        served = _start(tmp, sandbox)
        try:
            _seed(served)
            yield served
        finally:
            if served.process.poll() is None:
                served.process.send_signal(signal.SIGTERM)
                served.process.wait(timeout=30)
            if served.process.stdout:
                served.process.stdout.close()
        assert served.process.returncode == 0, (tmp / "serve.stderr").read_text()


@pytest.fixture(scope="module")
def schema(api: Api) -> schemathesis.BaseSchema:
    """The document as the server serves it (no key needed), loaded by Schemathesis."""
    return schemathesis.openapi.from_url(api.url + "/openapi.json")


def test_the_server_serves_the_package_document_without_a_key(api: Api) -> None:
    r = httpx.get(api.url + "/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == _document()


def _call(api: Api, case: schemathesis.Case, mode: str) -> None:
    response = case.call_and_validate(base_url=api.url, headers=AUTH, checks=CHECKS, timeout=30)
    api.statuses[(case.method, case.path, response.status_code)] += 1
    if mode != "negative":  # negative mode also sends requests without the Authorization header
        assert response.status_code not in (401, 403), (mode, case.method, case.path, response.text)


@pytest.mark.parametrize(("method", "path", "mode"), FUZZED, ids=[f"{m} {p} {mode.value}" for m, p, mode in FUZZED])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(api: Api, schema: schemathesis.BaseSchema,
                                                                    method: str, path: str,
                                                                    mode: GenerationMode) -> None:
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES[mode] // FEWER.get(path, 1), deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        _call(api, case, mode.value)

    run()


def test_known_notifications_answer_as_documented(api: Api, schema: schemathesis.BaseSchema) -> None:
    """The fuzzer's ids are mostly unknown: these are cases on the seeded notifications, each
    validated against the document (lists with items, every Status, Event and Suppression field)."""
    ops = {(m, p): schema[p][m] for m, p in ROUTES}
    ids = {k: str(v) for k, v in api.ids.items()}
    for which in ids.values():
        for path in ("/v1/notifications/{id}", "/v1/notifications/{id}/trace"):
            _call(api, ops[("GET", path)].Case(path_parameters={"id": which}), "known")
    _call(api, ops[("POST", "/v1/notifications/{id}/cancel")].Case(path_parameters={"id": ids["to_cancel"]}), "known")
    _call(api, ops[("POST", "/v1/notifications/{id}/retry")].Case(path_parameters={"id": ids["completed"]}), "known")
    _call(api, ops[("POST", "/v1/notifications/{id}/retry")].Case(path_parameters={"id": ids["dead"]}), "known")
    for limit in (None, 1, 1_000_000):
        query = {} if limit is None else {"limit": limit}
        _call(api, ops[("GET", "/v1/dead-letters")].Case(query=query), "known")
        _call(api, ops[("GET", "/v1/suppressions")].Case(query=query), "known")
    repeat = {"type": "solo", "recipient": "u1", "idempotency_key": "k2"}
    _call(api, ops[("POST", "/v1/notifications")].Case(body=repeat, media_type="application/json"), "known")
    _call(api, ops[("POST", "/v1/notifications")].Case(body=repeat, media_type="application/json"), "known")
    _call(api, ops[("POST", "/v1/notifications")].Case(body={**repeat, "data": {"x": 1}}, media_type="application/json"),
          "known")
    _call(api, ops[("POST", "/v1/notifications:batch")].Case(body=[], media_type="application/json"), "known")
    # The dashboard with answers in its minutes and an open circuit (a probe time, not null).
    _call(api, ops[("GET", "/v1/dashboard")].Case(query={"limit": 5}), "known")
    with httpx.Client(base_url=api.url, headers=AUTH, timeout=30) as http:
        board = http.get("/v1/dashboard").json()
    flaky = next(p for p in board["providers"] if p["name"] == "flaky")
    assert flaky["circuit"]["state"] == "open" and flaky["circuit"]["half_open_at"] > board["at"]
    assert sum(flaky["last_hour"]["failed"]) == 1 and sum(board["last_hour"]["failed"]) >= 2
    _call(api, ops[("DELETE", "/v1/suppressions/{channel}/{address}")].Case(
        path_parameters={"channel": "sms", "address": "+15005550004"}), "known")
    seen = {(m, p, s) for m, p, s in api.statuses}
    assert ("GET", "/v1/notifications/{id}", 200) in seen
    assert ("POST", "/v1/notifications/{id}/retry", 409) in seen  # completed: InvalidState
    assert ("POST", "/v1/notifications", 409) in seen  # IdempotencyConflict
    assert ("DELETE", "/v1/suppressions/{channel}/{address}", 200) in seen


def test_errors_outside_the_operations_have_the_documented_shape(api: Api) -> None:
    """What no operation of the document can produce: unknown paths, other methods, keys, large bodies."""
    error = _document()["components"]["schemas"]["Error"]
    with httpx.Client(base_url=api.url, timeout=30) as http:
        answers = {
            404: http.get("/v1/nothing", headers=AUTH),
            405: http.put("/v1/notifications", headers=AUTH),
            401: http.get("/v1/dead-letters"),
            403: http.get("/v1/dead-letters", headers={"Authorization": "Bearer nope"}),
        }
        for status, r in answers.items():
            assert r.status_code == status and r.headers["content-type"] == "application/json", (status, r.text)
            body = r.json()
            assert set(body) == {"error"} and set(body["error"]) <= set(error["properties"]["error"]["properties"])
        assert answers[401].headers["www-authenticate"] == "Bearer"
        # Under /v1 the key comes first, whatever else is wrong; outside /v1 none is asked for.
        assert http.get("/v1/dead-letters?limit=0").status_code == 401  # was 400: the limit was checked first
        assert http.get("/v1/suppressions?limit=x", headers={"Authorization": "Bearer nope"}).status_code == 403
        bad_limit = http.get("/v1/dead-letters?limit=0", headers=AUTH)
        assert bad_limit.status_code == 400 and bad_limit.json()["error"]["field"] == "limit"
        assert http.put("/v1/notifications").status_code == 401
        assert http.get("/v1/nothing").status_code == 401
        assert http.post("/health").status_code == 405  # was 401: an API key asked for an open endpoint
        assert http.post("/openapi.json").json()["error"]["type"] == "MethodNotAllowed"
        assert http.get("/nothing").status_code == 404  # was 401
        big = http.post("/v1/notifications", headers=AUTH, content=b"[" + b"0," * 600_000 + b"0]")
        assert big.status_code == 413 and set(big.json()["error"]) <= {"code", "message"}
