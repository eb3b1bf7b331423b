"""What a rule returns: how one notification is to be delivered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from herald._checks import checked_text, validation_error

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
        # Raises herald.ValidationError (a ValueError) naming the field, e.g. "Plan.providers[1]".
        if not isinstance(self.channel, str) or not self.channel:
            raise validation_error("Plan.channel", "must be a non-empty string")
        checked_text("Plan.channel", self.channel)
        if isinstance(self.providers, str):
            object.__setattr__(self, "providers", (self.providers,))
        try:
            providers = tuple(self.providers)
        except TypeError:
            raise validation_error("Plan.providers", "must be a non-empty sequence of provider names") from None
        if not providers or not all(isinstance(p, str) and p for p in providers):
            raise validation_error("Plan.providers", "must be a non-empty sequence of provider names")
        for i, p in enumerate(providers):
            checked_text(f"Plan.providers[{i}]", p)
        object.__setattr__(self, "providers", providers)
        if self.template is not None:
            if not isinstance(self.template, str):
                raise validation_error("Plan.template", "must be a string or None")
            checked_text("Plan.template", self.template)
        if not isinstance(self.batch, bool):
            raise validation_error("Plan.batch", "must be True or False")
