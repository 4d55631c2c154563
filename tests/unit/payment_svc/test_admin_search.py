"""SearchPayments' page tokens: they round-trip, and anything else is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from payment_svc.adapters.admin_queries import SearchCursor
from payment_svc.api.admin import _decode_cursor, _encode_cursor


def test_a_cursor_round_trips() -> None:
    cursor = SearchCursor(datetime(2026, 11, 29, 10, 0, 1, 123456, tzinfo=UTC), uuid.uuid4())
    assert _decode_cursor(_encode_cursor(cursor)) == cursor


@pytest.mark.parametrize("token", ["", "garbage", "W10", "WyJ4IiwgInkiXQ", "!!!"])
def test_other_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValueError, match="not a page token"):
        _decode_cursor(token)
