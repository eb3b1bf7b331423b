"""Checks for values the Python layer takes before the core sees them.

Each raises the herald exception the core would (:class:`~herald.ValidationError` for what is
sent, :class:`~herald.ConfigError` for how the engine is set up) with ``.field`` set and a message
``"<field>: <reason>"``.
"""

from __future__ import annotations

from typing import Any

from herald._core import ConfigError, ValidationError

__all__ = ["checked_int", "checked_text", "config_error", "seconds_to_ms", "validation_error"]


def _message(field: str, reason: str) -> str:
    """The text "<field>: <reason>", a NUL written as \\x00 as the core writes it."""
    return f"{field}: {reason}".replace("\0", "\\x00")


def validation_error(field: str, reason: str) -> ValidationError:
    """A ValidationError naming ``field``."""
    error = ValidationError(_message(field, reason))
    error.field = field
    return error


def config_error(field: str, reason: str) -> ConfigError:
    """A ConfigError naming ``field``."""
    error = ConfigError(_message(field, reason))
    error.field = field
    return error


def _lone_surrogate(text: str) -> int:
    return next(i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF)


def checked_text(field: str, value: Any, *, config: bool = False) -> str:
    """``value`` when it is a str that has a UTF-8 form (no lone surrogate)."""
    error = config_error if config else validation_error
    if not isinstance(value, str):
        raise error(field, f"must be a string (got {type(value).__name__})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(field, f"must be valid UTF-8 text (lone surrogate at index {_lone_surrogate(value)})") from None
    return value


def checked_int(field: str, value: Any, low: int, high: int, *, config: bool = True) -> int:
    """``value`` when it is an int (not a bool) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        error = config_error if config else validation_error
        raise error(field, f"must be an integer from {low} to {high}")
    return value


def _number(value: float) -> str:
    """2592000, not 2.592e+06."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def seconds_to_ms(field: str, value: Any, low: float, high: float, *, config: bool = True) -> int:
    """Whole milliseconds of ``value`` seconds: an int or a finite float (not a bool), ``low`` to ``high``."""
    # The comparison also refuses NaN and infinity, and is exact for ints of any size.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        error = config_error if config else validation_error
        raise error(field, f"must be a number of seconds from {_number(low)} to {_number(high)}")
    return int(value * 1000)
