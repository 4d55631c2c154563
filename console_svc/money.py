"""Amounts as people type and read them, and as the contracts carry them (minor units).

The console shows ``amount_minor`` in its currency's major units with exactly that
currency's number of minor digits (10.00 USD, 1000 JPY) and turns what a person typed
back into minor units with integer arithmetic only, never a float. The table is the
currencies the platform settles (payment_svc's list); an unknown code is shown as plain
minor units rather than guessed at.
"""

from __future__ import annotations

import re
from types import MappingProxyType

__all__ = ["CURRENCY_DIGITS", "AmountError", "format_minor", "parse_major"]

# ISO 4217 minor-unit digits of the currencies payrail settles (JPY and KRW have none).
CURRENCY_DIGITS = MappingProxyType(
    {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KRW": 0, "CHF": 2, "CAD": 2, "AUD": 2}
)
# Far above any per-payment limit; keeps a typed number well inside int64.
_MAJOR_DIGITS_MAX = 15
_AMOUNT = re.compile(r"(\d+)(?:\.(\d+))?")


class AmountError(ValueError):
    """What was typed is not an amount in that currency; the message says why."""


def format_minor(amount_minor: int, currency_code: str, *, with_code: bool = True) -> str:
    """``(1000, "USD")`` → ``"10.00 USD"``; ``(1000, "JPY")`` → ``"1,000 JPY"``."""
    digits = CURRENCY_DIGITS.get(currency_code)
    sign = "-" if amount_minor < 0 else ""
    if digits is None:
        text = f"{sign}{abs(amount_minor)} (minor units)"
    elif digits == 0:
        text = f"{sign}{abs(amount_minor):,}"
    else:
        major, minor = divmod(abs(amount_minor), 10**digits)
        text = f"{sign}{major:,}.{minor:0{digits}d}"
    return f"{text} {currency_code}" if with_code else text


def parse_major(text: str, currency_code: str) -> int:
    """``("10.5", "USD")`` → ``1050``; ``("1000", "JPY")`` → ``1000``; AmountError if not."""
    digits = CURRENCY_DIGITS.get(currency_code)
    if digits is None:
        raise AmountError("choose a currency first")
    cleaned = text.strip().replace(",", "").replace(" ", "")
    if not cleaned:
        raise AmountError("enter an amount")
    match = _AMOUNT.fullmatch(cleaned)
    if match is None:
        raise AmountError("enter a positive number, e.g. 10.00")
    whole, fraction = match.group(1), match.group(2) or ""
    if len(whole) > _MAJOR_DIGITS_MAX:
        raise AmountError("that amount is too large")
    if len(fraction) > digits:
        if digits == 0:
            raise AmountError(f"{currency_code} has no minor units: enter a whole number")
        raise AmountError(f"{currency_code} has {digits} decimal places at most")
    scale: int = 10**digits
    minor = int(whole) * scale + int(fraction.ljust(digits, "0") or "0")
    if minor <= 0:
        raise AmountError("the amount must be more than zero")
    return minor
