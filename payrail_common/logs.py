"""Structured (one JSON object per line) logging with card-data redaction.

Every service calls :func:`configure_logging` once from its composition root. A filter
on the root handler masks anything that looks like a card number, so a PAN that slips
into a message or an exception never reaches the log file.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, ClassVar, TextIO

from payrail_common.tracing import RequestIdFilter

# 12 to 19 digits, optionally grouped by single spaces or dashes: the shapes a PAN takes.
# UUIDs (payment ids...) are matched first and left alone: their digit groups joined by
# dashes would otherwise look like a grouped card number.
_PAN_RE = re.compile(
    r"(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    r"|(?<!\d)(?:\d[ -]?){11,18}\d(?!\d)"
)


def redact(text: str) -> str:
    """Mask card-number-like digit runs, keeping only the last four digits."""

    def _mask(match: re.Match[str]) -> str:
        if match.group("uuid"):
            return match.group(0)
        digits = re.sub(r"\D", "", match.group(0))
        return f"[redacted-pan ...{digits[-4:]}]"

    return _PAN_RE.sub(_mask, text)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, extras."""

    _STANDARD: ClassVar[frozenset[str]] = frozenset(
        vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
    )

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                payload[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, ensure_ascii=False))


def configure_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record to stream (stderr by default) as redacted JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    # Every line logged on behalf of a request carries its id (payrail_common.tracing).
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR; our own probes report outages once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
