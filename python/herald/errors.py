"""The exceptions herald raises. All derive from :class:`HeraldError`.

They are created by the C++ core, which raises them directly; this module gives them their public home.
"""

from herald._core import (
    ConfigError,
    EngineClosed,
    HeraldError,
    IdempotencyConflict,
    InvalidState,
    NotFound,
    StoreError,
    ValidationError,
)

__all__ = [
    "ConfigError",
    "EngineClosed",
    "HeraldError",
    "IdempotencyConflict",
    "InvalidState",
    "NotFound",
    "StoreError",
    "ValidationError",
]
