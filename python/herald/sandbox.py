"""The sandbox: a local server that answers like a provider, records sends and injects faults."""

from __future__ import annotations

from typing import Any

from herald import _core

__all__ = ["Sandbox"]


class Sandbox:
    """A running sandbox on loopback. Point a provider of kind ``sandbox`` at :attr:`url`.

    It also speaks the real providers' APIs (Twilio, SendGrid, FCM, APNs, Slack) at their own
    paths, so a provider of any kind can point its ``url`` here; see docs/providers.md.

    Faults (per service or provider, ``"*"`` for all): ``error_rate``, ``error_status``,
    ``error_code``, ``rate_limit_rate``, ``retry_after_s``, ``latency_ms``,
    ``outage_for_ms``/``outage_until_ms``.

    ``signing_secret`` signs herald JSON receipts; ``h2c_port`` (-1 off, 0 any free port) also
    serves everything over HTTP/2 cleartext (APNs-style), at :attr:`h2c_url`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        threads: int = 1,
        seed: int = 42,
        signing_secret: str = "sandbox-secret",
        h2c_port: int = -1,
    ) -> None:
        self._core = _core.Sandbox(host, port, threads, seed, signing_secret, h2c_port)

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

    @property
    def h2c_url(self) -> str:
        """The HTTP/2 cleartext URL, or ``""`` when ``h2c_port`` was -1."""
        return str(self._core.h2c_url)

    @property
    def h2c_port(self) -> int:
        return int(self._core.h2c_port)

    def keys(self) -> dict[str, str]:
        """``{"sendgrid_verification_key": ..., "signing_secret": ...}`` for receipt checks."""
        return dict(self._core.keys())

    def set_callbacks(self, service: str, enabled: bool = True, delay_ms: int = 50, url: str = "") -> None:
        """When status callbacks are sent for ``service`` (``url``: SendGrid's Event Webhook)."""
        self._core.set_callbacks(service, enabled, delay_ms, url)

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
