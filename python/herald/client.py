"""``herald.Client``: the :class:`herald.Engine` API over HTTP, for processes that share one ``herald serve``.

A web app with many worker processes runs one ``herald serve`` and gives each worker a ``Client``
(keep-alive connections through httpx). Methods, arguments, return types and exceptions are those
of :class:`herald.Engine`: a bad field raises :class:`herald.ValidationError` with the same
``.field`` and message, an unknown id :class:`herald.NotFound`, and so on. :class:`AsyncClient` has
the same methods as coroutines.

Differences from the engine: ``send`` answers a :class:`RemoteReceipt` (id, state, duplicate);
``send_many`` sends ``chunk`` notifications per request (1000 by default, to stay under the
server's body limit); a missing or wrong key raises :class:`Unauthorized`; a refused connection
raises httpx's own error; a server that is shutting down answers :class:`herald.EngineClosed`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast
from urllib.parse import quote

import httpx

from herald import errors
from herald._checks import _lone_surrogate, validation_error
from herald.engine import Event, Status, Suppression, When
from herald.kinds import Priority, State

__all__ = ["AsyncClient", "Client", "RemoteReceipt", "Unauthorized"]


class Unauthorized(errors.HeraldError):
    """The server refused the API key (``status`` 401: none given; 403: not a valid one)."""

    status: int = 401


@dataclass(frozen=True, slots=True)
class RemoteReceipt:
    """What :meth:`Client.send` answers: the same fields as :class:`herald.Receipt`."""

    id: int
    state: State
    duplicate: bool


_ERRORS: dict[str, type[Exception]] = {
    "ValidationError": errors.ValidationError,
    "NotFound": errors.NotFound,
    "IdempotencyConflict": errors.IdempotencyConflict,
    "InvalidState": errors.InvalidState,
    "StoreError": errors.StoreError,
    "EngineClosed": errors.EngineClosed,
    "ConfigError": errors.ConfigError,
}


def _raise_for(response: httpx.Response) -> None:
    """Raises the named herald exception an error answer carries."""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = {}
    message = str(error.get("message") or response.text or response.reason_phrase)
    kind = error.get("type")
    if response.status_code in (401, 403):
        exc = Unauthorized(message)
        exc.status = response.status_code
        raise exc
    if response.status_code == 413:
        raise validation_error("body", "larger than the server's limit (HTTP 413)")
    cls = _ERRORS.get(str(kind), errors.HeraldError)
    named = cls(message)
    if "field" in error:
        named.field = error["field"]  # type: ignore[attr-defined]
    raise named


def _epoch(field: str, value: When) -> float | int | bool | None:
    """Epoch seconds for the server: what Engine accepts (aware datetime, timedelta, seconds)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise validation_error(field, "datetime must be timezone-aware (e.g. tzinfo=timezone.utc)")
        return value.timestamp()
    if isinstance(value, timedelta):
        return time.time() + value.total_seconds()
    raise validation_error(field, f"must be a datetime, a timedelta or epoch seconds (got {type(value).__name__})")


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _wire(fields: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """One notification as the server reads it (times as epoch seconds)."""
    if not isinstance(fields, Mapping):
        raise validation_error(prefix[:-1] or "notification", "must be a dict")
    out = dict(fields)
    for name in ("send_at", "expires_at"):
        if name in out:
            out[name] = _epoch(prefix + name, out[name])
    return out


def _surrogate_reason(text: str) -> str:
    return f"must be valid UTF-8 text (lone surrogate at index {_lone_surrogate(text)})"


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _find_surrogate(value: Any, path: str) -> None:
    """Raises the binding's error for the first text without a UTF-8 form, named as it names it."""
    if isinstance(value, str):
        if _has_surrogate(value):
            raise validation_error(path, _surrogate_reason(value))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and _has_surrogate(key):
                shown = key.encode("utf-8", "backslashreplace").decode("utf-8")
                raise validation_error(f"{path}.{shown}", "key " + _surrogate_reason(key))
            _find_surrogate(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _find_surrogate(item, f"{path}[{i}]")


def _surrogate_error(payload: Any) -> None:
    """JSON cannot carry a lone surrogate: find it and name it, in the order the binding checks."""
    items = payload if isinstance(payload, list) else [payload]
    for i, fields in enumerate(items):
        prefix = f"notifications[{i}]." if isinstance(payload, list) else ""
        for name in ("type", "tenant"):
            _find_surrogate(fields.get(name), prefix + name)
        recipient = fields.get("recipient")
        if isinstance(recipient, Mapping):
            _find_surrogate(recipient.get("id"), prefix + "recipient.id")
        _find_surrogate(recipient, prefix + "recipient")
        for name in ("data", "priority", "idempotency_key", "ordering_key"):
            _find_surrogate(fields.get(name), prefix + name)
        for key in fields:
            _find_surrogate(key, prefix + str(key))


def _body(payload: Any) -> bytes:
    try:
        text = json.dumps(payload, default=_json_default, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except TypeError as exc:
        raise validation_error("data", f"cannot be sent as JSON (type {exc})") from None
    except ValueError:
        raise validation_error("data", "NaN and infinity are not valid JSON") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        _surrogate_error(payload)
        raise validation_error("body", "must be valid UTF-8 text") from None


def _status(raw: Mapping[str, Any]) -> Status:
    return Status(**{**raw, "id": int(raw["id"])})


def _event(raw: Mapping[str, Any]) -> Event:
    return Event(**{**raw, "id": int(raw["id"])})


def _suppression(raw: Mapping[str, Any]) -> Suppression:
    return Suppression(**{**raw, "notification_id": int(raw["notification_id"])})


def _receipt(raw: Mapping[str, Any]) -> RemoteReceipt:
    return RemoteReceipt(int(raw["id"]), cast(State, str(raw["state"])), bool(raw["duplicate"]))


@dataclass(frozen=True, slots=True)
class _Call:
    """One request and how its answer reads; shared by the sync and asyncio clients."""

    method: str
    path: str
    parse: Callable[[Any], Any]
    body: bytes | None = None
    params: dict[str, Any] | None = None
    none_on_404: bool = False


def _send_call(type: str, recipient: Any, data: Any, options: dict[str, Any]) -> _Call:
    fields: dict[str, Any] = {"type": type, "recipient": recipient, **options}
    if data is not None:
        fields["data"] = data
    return _Call("POST", "/v1/notifications", _receipt, _body(_wire(fields)))


def _batches(notifications: Iterable[Mapping[str, Any]], chunk: int) -> list[_Call]:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= 2**31 - 1:
        raise validation_error("chunk", "must be an integer from 1 to 2147483647")
    try:
        items = list(notifications)
    except TypeError:
        raise validation_error("notifications", "must be an iterable of dicts") from None
    calls = []
    for start in range(0, len(items), chunk):
        part = [_wire(n, f"notifications[{i}].") for i, n in enumerate(items[start : start + chunk], start)]
        calls.append(_Call("POST", "/v1/notifications:batch", lambda r: [_receipt(x) for x in r["receipts"]], _body(part)))
    return calls


def _id(id: int) -> str:
    if isinstance(id, bool) or not isinstance(id, int):
        raise TypeError(f"id must be an int (got {type(id).__name__})")
    return str(id)


def _limit(limit: int) -> dict[str, Any]:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise validation_error("limit", "must be an integer from 1 to 1000000")
    return {"limit": limit}


def _deadline(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise validation_error("timeout", "must be a number of seconds, 0 or more")
    return time.monotonic() + timeout


def _final_or_none(id: int, status: Status | None, deadline: float, timeout: float) -> Status | None:
    """The status when final; None to poll again; raises as Engine.wait does."""
    if status is None:
        raise errors.NotFound(f"notification {id} not found")
    if status.final:
        return status
    if time.monotonic() >= deadline:
        raise TimeoutError(f"notification {id} is still {status.state} after {timeout} s")
    return None


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


class Client:
    """The Engine API against a ``herald serve`` at ``url`` (e.g. ``http://127.0.0.1:8788``)."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=_headers(api_key), timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do(self, call: _Call) -> Any:
        r = self._http.request(call.method, call.path, content=call.body, params=call.params)
        if r.status_code == 200:
            return call.parse(r.json())
        if r.status_code == 404 and call.none_on_404 and r.json().get("error", {}).get("type") == "NotFound":
            return None
        _raise_for(r)

    def send(self, type: str, recipient: str | Mapping[str, Any], data: Mapping[str, Any] | None = None, *,
             priority: Priority = "normal", idempotency_key: str | None = None, ordering_key: str | None = None,
             send_at: When = None, expires_at: When = None, tenant: str = "default") -> RemoteReceipt:
        """As :meth:`herald.Engine.send`: returns once the server's engine holds it durably."""
        options = {"priority": priority, "idempotency_key": idempotency_key, "ordering_key": ordering_key,
                   "send_at": send_at, "expires_at": expires_at, "tenant": tenant}
        return self._do(_send_call(type, recipient, data, options))

    def send_many(self, notifications: Iterable[Mapping[str, Any]], *, chunk: int = 1000) -> list[RemoteReceipt]:
        """As :meth:`herald.Engine.send_many`; each chunk is one request, validated whole."""
        out: list[RemoteReceipt] = []
        for call in _batches(notifications, chunk):
            out.extend(self._do(call))
        return out

    def status(self, id: int) -> Status | None:
        return self._do(_Call("GET", f"/v1/notifications/{_id(id)}", _status, none_on_404=True))

    def trace(self, id: int) -> list[Event]:
        return self._do(_Call("GET", f"/v1/notifications/{_id(id)}/trace", lambda r: [_event(e) for e in r["events"]]))

    def dead_letters(self, limit: int = 1000) -> list[Status]:
        return self._do(_Call("GET", "/v1/dead-letters", lambda r: [_status(s) for s in r["notifications"]],
                              params=_limit(limit)))

    def suppressions(self, limit: int = 10_000) -> list[Suppression]:
        return self._do(_Call("GET", "/v1/suppressions", lambda r: [_suppression(s) for s in r["suppressions"]],
                              params=_limit(limit)))

    def unsuppress(self, channel: str, address: str) -> bool:
        path = f"/v1/suppressions/{quote(channel, safe='')}/{quote(address, safe='')}"
        return self._do(_Call("DELETE", path, lambda r: bool(r["removed"])))

    def retry(self, id: int) -> None:
        self._do(_Call("POST", f"/v1/notifications/{_id(id)}/retry", lambda r: None))

    def cancel(self, id: int) -> bool:
        return self._do(_Call("POST", f"/v1/notifications/{_id(id)}/cancel", lambda r: bool(r["cancelled"])))

    def wait(self, id: int, timeout: float = 30.0) -> Status:
        """As :meth:`herald.Engine.wait`: blocks until one notification is final; raises
        TimeoutError with its last status, NotFound for an unknown id."""
        deadline = _deadline(timeout)
        delay = 0.002
        while True:
            status = _final_or_none(id, self.status(id), deadline, timeout)
            if status is not None:
                return status
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


class AsyncClient:
    """:class:`Client` for asyncio: the same methods as coroutines, over ``httpx.AsyncClient``."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, headers=_headers(api_key), timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _do(self, call: _Call) -> Any:
        r = await self._http.request(call.method, call.path, content=call.body, params=call.params)
        if r.status_code == 200:
            return call.parse(r.json())
        if r.status_code == 404 and call.none_on_404 and r.json().get("error", {}).get("type") == "NotFound":
            return None
        _raise_for(r)

    async def send(self, type: str, recipient: str | Mapping[str, Any], data: Mapping[str, Any] | None = None, *,
                   priority: Priority = "normal", idempotency_key: str | None = None,
                   ordering_key: str | None = None, send_at: When = None, expires_at: When = None,
                   tenant: str = "default") -> RemoteReceipt:
        options = {"priority": priority, "idempotency_key": idempotency_key, "ordering_key": ordering_key,
                   "send_at": send_at, "expires_at": expires_at, "tenant": tenant}
        return await self._do(_send_call(type, recipient, data, options))

    async def send_many(self, notifications: Iterable[Mapping[str, Any]], *, chunk: int = 1000) -> list[RemoteReceipt]:
        out: list[RemoteReceipt] = []
        for call in _batches(notifications, chunk):
            out.extend(await self._do(call))
        return out

    async def status(self, id: int) -> Status | None:
        return await self._do(_Call("GET", f"/v1/notifications/{_id(id)}", _status, none_on_404=True))

    async def trace(self, id: int) -> list[Event]:
        return await self._do(_Call("GET", f"/v1/notifications/{_id(id)}/trace",
                                    lambda r: [_event(e) for e in r["events"]]))

    async def dead_letters(self, limit: int = 1000) -> list[Status]:
        return await self._do(_Call("GET", "/v1/dead-letters", lambda r: [_status(s) for s in r["notifications"]],
                                    params=_limit(limit)))

    async def suppressions(self, limit: int = 10_000) -> list[Suppression]:
        return await self._do(_Call("GET", "/v1/suppressions", lambda r: [_suppression(s) for s in r["suppressions"]],
                                    params=_limit(limit)))

    async def unsuppress(self, channel: str, address: str) -> bool:
        path = f"/v1/suppressions/{quote(channel, safe='')}/{quote(address, safe='')}"
        return await self._do(_Call("DELETE", path, lambda r: bool(r["removed"])))

    async def retry(self, id: int) -> None:
        await self._do(_Call("POST", f"/v1/notifications/{_id(id)}/retry", lambda r: None))

    async def cancel(self, id: int) -> bool:
        return await self._do(_Call("POST", f"/v1/notifications/{_id(id)}/cancel", lambda r: bool(r["cancelled"])))

    async def wait(self, id: int, timeout: float = 30.0) -> Status:
        """As :meth:`Client.wait`, without blocking the event loop."""
        deadline = _deadline(timeout)
        delay = 0.002
        while True:
            status = _final_or_none(id, await self.status(id), deadline, timeout)
            if status is not None:
                return status
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
