"""The shared rule for text PostgreSQL cannot store, and the insights rules built on it."""

from __future__ import annotations

import pytest

from consumer_svc.insights.domain import Benefit, InvalidArgument, validate_benefit
from payrail_common.fields import FieldViolation, is_storable_text, storable_text_violation


@pytest.mark.parametrize("text", ["", "Café", "日本", "emoji \U0001f600", "tab\there"])
def test_ordinary_text_is_storable(text: str) -> None:
    assert is_storable_text(text)
    assert storable_text_violation("f", text) is None


@pytest.mark.parametrize("text", ["\x00", "a\x00b", "lone \ud800 surrogate", "\udfff"])
def test_nul_and_lone_surrogates_are_not(text: str) -> None:
    assert not is_storable_text(text)
    violation = storable_text_violation("merchant_id", text)
    assert isinstance(violation, FieldViolation)
    assert violation.field == "merchant_id"
    assert "\x00" not in violation.description  # never echoes the value


def test_benefit_description_with_nul_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_benefit(Benefit("VISA", "5812", "CASHBACK", 300, "dining\x00cashback"))
    assert [v.field for v in info.value.violations] == ["benefit.description"]
