"""The sandbox gateways open sealed card data: their log lines are payrail's redacted
JSON, so a card number in a message or a traceback never reaches their log file."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from sandbox_gateways.gateway import configure_logs

PAN = "4242424242424242"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    configure_logs("sandbox-json", out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_card_number_in_a_sandbox_log_line_is_masked(stream: io.StringIO) -> None:
    log = logging.getLogger("sandbox_gateways")
    log.info("charging card %s", PAN)
    try:
        raise ValueError(f"gateway refused {PAN[:4]} {PAN[4:8]} {PAN[8:12]} {PAN[12:]}")
    except ValueError:
        log.exception("charge failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["service"] == "sandbox-json"
    assert first["msg"] == "charging card [redacted-pan ...4242]"
    assert PAN not in stream.getvalue()
    assert "4242 4242 4242 4242" not in stream.getvalue()
    assert "[redacted-pan ...4242]" in json.loads(lines[1])["exc"]
