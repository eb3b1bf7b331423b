"""What a rule returns: how one notification is to be delivered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    """One delivery step: a channel, providers in failover order, and a template.

    ``providers`` are names from the engine's provider configuration; the next one is tried when
    one fails for good or runs out of retries. ``template`` fills ``{name}``, ``{a.b}`` and
    ``{name|default}`` from the notification's data; without one the data is sent as is.
    ``batch=True`` lets a provider that can (SendGrid) carry many notifications of this plan in
    one request, each recipient with its own variables.
    """

    channel: str
    providers: Sequence[str]
    template: str | None = None
    batch: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.channel, str) or not self.channel:
            raise ValueError("Plan.channel: must be a non-empty string")
        if isinstance(self.providers, str):
            object.__setattr__(self, "providers", (self.providers,))
        providers = tuple(self.providers)
        if not providers or not all(isinstance(p, str) and p for p in providers):
            raise ValueError("Plan.providers: must be a non-empty sequence of provider names")
        object.__setattr__(self, "providers", providers)
        if self.template is not None and not isinstance(self.template, str):
            raise ValueError("Plan.template: must be a string or None")
        if not isinstance(self.batch, bool):
            raise ValueError("Plan.batch: must be True or False")
