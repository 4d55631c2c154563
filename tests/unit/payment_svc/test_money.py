from __future__ import annotations

import pytest

from payment_svc.domain.money import (
    CURRENCIES,
    AmountLimits,
    Money,
    select_currencies,
)


def test_money_is_integer_minor_units_never_float() -> None:
    assert Money("USD", 1000).amount_minor == 1000
    with pytest.raises(TypeError, match="never a float"):
        Money("USD", 10.00)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money("USD", True)


def test_money_arithmetic_keeps_the_currency() -> None:
    assert Money("EUR", 150) + Money("EUR", 50) == Money("EUR", 200)
    assert Money("EUR", 150) - Money("EUR", 200) == Money("EUR", -50)
    assert -Money("EUR", 5) == Money("EUR", -5)
    with pytest.raises(ValueError, match="cannot combine EUR with USD"):
        _ = Money("EUR", 1) + Money("USD", 1)


def test_supported_set_and_minor_digits() -> None:
    assert set(CURRENCIES) >= {"USD", "EUR", "GBP", "JPY", "KRW", "CHF", "CAD", "AUD"}
    assert CURRENCIES["JPY"].minor_digits == 0
    assert CURRENCIES["KRW"].minor_digits == 0
    assert CURRENCIES["USD"].minor_digits == 2


@pytest.mark.parametrize(
    ("code", "amount_minor", "shown"),
    [
        ("USD", 1000, "10.00 USD"),
        ("USD", 5, "0.05 USD"),
        ("EUR", -1234, "-12.34 EUR"),
        ("JPY", 1000, "1000 JPY"),
        ("KRW", 15000, "15000 KRW"),
    ],
)
def test_format_uses_the_currency_exponent(code: str, amount_minor: int, shown: str) -> None:
    assert CURRENCIES[code].format(amount_minor) == shown


def test_select_currencies_configures_a_subset() -> None:
    selected = select_currencies(["USD", "KRW"])
    assert set(selected) == {"USD", "KRW"}
    with pytest.raises(ValueError, match="unsupported currency 'XYZ'"):
        select_currencies(["USD", "XYZ"])
    with pytest.raises(ValueError, match="at least one"):
        select_currencies([])


def test_default_limits_cover_every_supported_currency() -> None:
    limits = AmountLimits()
    for code in CURRENCIES:
        assert limits.max_minor(code) is not None, code
    assert limits.max_minor("USD") == 10_000_000
    assert limits.max_minor("XYZ") is None


def test_limits_are_configurable_and_frozen_against_later_changes() -> None:
    table = {"USD": 500}
    limits = AmountLimits(table)
    table["USD"] = 10**9
    table["EUR"] = 1
    assert limits.max_minor("USD") == 500
    assert limits.max_minor("EUR") is None
    assert limits == AmountLimits({"USD": 500})
    assert hash(limits) == hash(AmountLimits({"USD": 500}))


@pytest.mark.parametrize(
    "table",
    [{"USD": 0}, {"USD": -1}, {"USD": 2**63}, {"usd": 10}, {"US": 10}],
)
def test_nonsense_limits_are_configuration_errors(table: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="limit for"):
        AmountLimits(table)


def test_float_limit_is_refused() -> None:
    with pytest.raises(TypeError):
        AmountLimits({"USD": 100.0})  # type: ignore[dict-item]
