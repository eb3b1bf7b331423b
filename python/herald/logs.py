"""herald's log records: the ``herald`` logger, and JSON lines for ``herald serve``.

The engine's own records (start, stop, the disk refusing writes and taking them again, refused
receipts, requests an adapter could not build) reach the ``herald`` logger from a thread of the
core; each carries its named values in ``record.herald`` (a dict of strings). In-process, they go
wherever the application's logging sends them. ``herald serve`` writes them to stderr as one JSON
object per line::

    {"ts": "2026-11-29T01:02:03.456Z", "level": "info", "logger": "herald",
     "message": "engine started", "data_dir": "herald-data", "providers": "sms,email", ...}

No record carries a secret: API keys and provider credentials are never put in a message or a field.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

__all__ = ["JsonLinesFormatter", "log_json_lines", "logger"]

logger = logging.getLogger("herald")

_RESERVED = {"ts", "level", "logger", "message"}


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601 with milliseconds), level, logger, message,
    the record's ``herald`` fields, and ``error`` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "herald", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                line[key if key not in _RESERVED else f"field_{key}"] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_json_lines(stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """Sends the ``herald`` logger's records to ``stream`` (stderr by default) as JSON lines, and
    only there (they do not also reach the root logger). Returns the handler, to remove it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLinesFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler
