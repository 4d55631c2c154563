from __future__ import annotations

import io
import json
import logging

import pytest

from payrail_common.logs import configure_logging, redact


@pytest.mark.parametrize(
    "pan", ["4242424242424242", "4242 4242 4242 4242", "3782-822463-10005", "6011111111111117"]
)
def test_redact_masks_card_numbers(pan: str) -> None:
    out = redact(f"card {pan} declined")
    digits = pan.replace(" ", "").replace("-", "")
    assert digits not in out.replace(" ", "").replace("-", "")
    assert f"...{digits[-4:]}" in out


def test_redact_keeps_short_numbers() -> None:
    assert (
        redact("amount 1000 USD, version 12, port 50051")
        == "amount 1000 USD, version 12, port 50051"
    )


@pytest.mark.parametrize(
    "uuid_text",
    ["2780d123-4567-8901-2345-678901234567", "12345678-1234-5678-9012-345678901234"],
)
def test_redact_leaves_uuids_alone(uuid_text: str) -> None:
    # Payment ids are all over the logs; their digit groups are not card numbers.
    assert redact(f"payment {uuid_text} settled") == f"payment {uuid_text} settled"


def test_redact_still_finds_a_pan_next_to_a_uuid() -> None:
    out = redact("payment 2780d123-4567-8901-2345-678901234567 card 4242424242424242")
    assert "2780d123-4567-8901-2345-678901234567" in out
    assert "4242424242424242" not in out


def test_json_lines_with_extras_and_redaction() -> None:
    stream = io.StringIO()
    configure_logging("unit", "INFO", stream=stream)
    try:
        logging.getLogger("t").info(
            "charged %s", "4000000000000002", extra={"payment_id": "p-1", "ms": 1.5}
        )
        try:
            raise ValueError("bad card 4242424242424242")
        except ValueError:
            logging.getLogger("t").exception("boom")
    finally:
        logging.getLogger().handlers.clear()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["service"] == "unit"
    assert first["payment_id"] == "p-1"
    assert first["ms"] == 1.5
    assert "4000000000000002" not in first["msg"]
    assert "4242424242424242" not in second["exc"]
    assert "ValueError" in second["exc"]
