"""Amounts in a currency's minor units, typed and shown with integer arithmetic."""

from __future__ import annotations

import pytest

from console_svc.money import AmountError, format_minor, parse_major


@pytest.mark.parametrize(
    ("minor", "code", "text"),
    [
        (1000, "USD", "10.00 USD"),
        (5, "EUR", "0.05 EUR"),
        (123456789, "GBP", "1,234,567.89 GBP"),
        (1000, "JPY", "1,000 JPY"),
        (-250, "USD", "-2.50 USD"),
        (0, "KRW", "0 KRW"),
        (42, "XYZ", "42 (minor units) XYZ"),
    ],
)
def test_format(minor: int, code: str, text: str) -> None:
    assert format_minor(minor, code) == text


def test_format_without_code() -> None:
    assert format_minor(1050, "USD", with_code=False) == "10.50"


@pytest.mark.parametrize(
    ("typed", "code", "minor"),
    [
        ("10", "USD", 1000),
        ("10.5", "USD", 1050),
        ("10.05", "USD", 1005),
        (" 1,234.56 ", "EUR", 123456),
        ("1000", "JPY", 1000),
        ("0.01", "USD", 1),
    ],
)
def test_parse(typed: str, code: str, minor: int) -> None:
    assert parse_major(typed, code) == minor


@pytest.mark.parametrize(
    ("typed", "code", "message"),
    [
        ("100.5", "JPY", "no minor units"),
        ("1.234", "USD", "2 decimal places"),
        ("", "USD", "enter an amount"),
        ("-5", "USD", "positive number"),
        ("1e3", "USD", "positive number"),
        ("0", "USD", "more than zero"),
        ("0.00", "USD", "more than zero"),
        ("10", "XYZ", "currency"),
        ("9" * 16, "USD", "too large"),
    ],
)
def test_parse_refuses(typed: str, code: str, message: str) -> None:
    with pytest.raises(AmountError, match=message):
        parse_major(typed, code)
