"""The sandbox: a local server that answers like a provider, records sends and injects faults."""

from __future__ import annotations

from typing import Any

from herald import _core

__all__ = ["Sandbox"]


class Sandbox:
    """A running sandbox on loopback. Point a provider of kind ``sandbox`` at :attr:`url`.

    Faults (per provider, ``"*"`` for all): ``error_rate``, ``error_status``, ``error_code``,
    ``rate_limit_rate``, ``retry_after_s``, ``latency_ms``, ``outage_for_ms``/``outage_until_ms``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, threads: int = 1, seed: int = 42) -> None:
        self._core = _core.Sandbox(host, port, threads, seed)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return str(self._core.url)

    @property
    def port(self) -> int:
        return int(self._core.port)

    def provider(self, name: str, **settings: Any) -> dict[str, Any]:
        """A provider configuration of kind ``sandbox`` pointed at this sandbox."""
        return {"name": name, "kind": "sandbox", "url": self.url, **settings}

    def set_faults(self, provider: str = "*", **faults: Any) -> None:
        self._core.set_faults(provider, faults)

    def clear_faults(self) -> None:
        self._core.clear_faults()

    def messages(self, provider: str = "") -> list[dict[str, Any]]:
        """What the sandbox accepted, oldest first (optionally one provider's)."""
        return list(self._core.messages(provider))

    def stats(self) -> dict[str, Any]:
        return dict(self._core.stats())

    def clear(self) -> None:
        self._core.clear()

    def stop(self) -> None:
        self._core.stop()
