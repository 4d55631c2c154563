"""Card rules: number normalisation, Luhn, brand, lengths, CVC, expiry, masking, secrets.

Card numbers and CVCs live in ``Secret`` objects from the moment they leave the protobuf
message, so an accidental ``repr``, f-string or log line shows ``<redacted>`` instead of
card data. Only ``reveal()`` returns the value, which makes every use easy to find.
"""

from __future__ import annotations

import datetime
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import NoReturn

# ISO/IEC 7812 numbers are 8 to 19 digits; no supported brand issues fewer than 13. The
# floor of 12 lets PanSecret hold any number a brand could plausibly issue (BIN6 + last4
# must not overlap, or the mask would show everything).
PAN_MIN_DIGITS = 12
PAN_MAX_DIGITS = 19
# Raw input with spaces and dashes; longer input is refused before any work is done on it.
CARD_NUMBER_INPUT_MAX_CHARS = 64
CVC_INPUT_MAX_CHARS = 8
# Networks issue cards for up to about 10 years; 20 leaves room without accepting typos
# like 2205 that would make the card look valid for ever.
EXPIRY_YEARS_AHEAD_MAX = 20
BIN_DIGITS = 6
LAST_DIGITS = 4

_ASCII_DIGITS = frozenset("0123456789")
_REDACTED = "<redacted>"


class CardBrand(StrEnum):
    """Card network; values mirror the protobuf ``CARD_BRAND_*`` names without prefix."""

    VISA = "VISA"
    MASTERCARD = "MASTERCARD"
    AMERICAN_EXPRESS = "AMERICAN_EXPRESS"
    DISCOVER = "DISCOVER"


BRAND_DISPLAY_NAMES: Mapping[CardBrand, str] = MappingProxyType(
    {
        CardBrand.VISA: "Visa",
        CardBrand.MASTERCARD: "Mastercard",
        CardBrand.AMERICAN_EXPRESS: "American Express",
        CardBrand.DISCOVER: "Discover",
    }
)

# Card number lengths each network issues.
BRAND_LENGTHS: Mapping[CardBrand, frozenset[int]] = MappingProxyType(
    {
        CardBrand.VISA: frozenset({13, 16, 19}),
        CardBrand.MASTERCARD: frozenset({16}),
        CardBrand.AMERICAN_EXPRESS: frozenset({15}),
        CardBrand.DISCOVER: frozenset({16, 17, 18, 19}),
    }
)

# American Express prints a 4-digit CID on the front; the others a 3-digit CVV2/CVC2.
CVC_LENGTHS: Mapping[CardBrand, int] = MappingProxyType(
    {
        CardBrand.VISA: 3,
        CardBrand.MASTERCARD: 3,
        CardBrand.AMERICAN_EXPRESS: 4,
        CardBrand.DISCOVER: 3,
    }
)


def is_ascii_digits(text: str) -> bool:
    """Only 0-9: ``str.isdigit`` would also accept superscripts and other scripts' digits."""
    return bool(text) and all(ch in _ASCII_DIGITS for ch in text)


def normalize_card_number(raw: str) -> str | None:
    """The digits of a card number with spaces and dashes removed, or None when the input
    is empty, too long, or contains anything else."""
    if len(raw) > CARD_NUMBER_INPUT_MAX_CHARS:
        return None
    digits = raw.replace(" ", "").replace("-", "")
    return digits if is_ascii_digits(digits) else None


def luhn_valid(digits: str) -> bool:
    """The ISO/IEC 7812 check digit (Luhn mod 10) is correct."""
    if not is_ascii_digits(digits):
        return False
    total = 0
    # Walk from the check digit leftwards; every second digit is doubled.
    for position, ch in enumerate(reversed(digits)):
        value = ord(ch) - ord("0")
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def detect_brand(digits: str) -> CardBrand | None:
    """The network from the issuer prefix (IIN ranges), or None for any other network."""
    if not is_ascii_digits(digits):
        return None
    first2 = int(digits[:2]) if len(digits) >= 2 else -1
    first3 = int(digits[:3]) if len(digits) >= 3 else -1
    first4 = int(digits[:4]) if len(digits) >= 4 else -1
    if digits[0] == "4":
        return CardBrand.VISA
    if 51 <= first2 <= 55 or 2221 <= first4 <= 2720:
        return CardBrand.MASTERCARD
    if first2 in (34, 37):
        return CardBrand.AMERICAN_EXPRESS
    if first4 == 6011 or 644 <= first3 <= 649 or first2 == 65:
        return CardBrand.DISCOVER
    return None


def is_expired(exp_month: int, exp_year: int, *, today: datetime.date) -> bool:
    """A card is valid through the last day of its expiry month."""
    return (exp_year, exp_month) < (today.year, today.month)


def mask_pan(digits: str) -> str:
    """BIN (first six) and last four, the rest as ``*``: ``424242******4242``."""
    if not is_ascii_digits(digits) or len(digits) < PAN_MIN_DIGITS:
        raise ValueError("only a card number of at least 12 digits can be masked")
    hidden = len(digits) - BIN_DIGITS - LAST_DIGITS
    return digits[:BIN_DIGITS] + "*" * hidden + digits[-LAST_DIGITS:]


# A run of 13-19 digits, optionally grouped by single spaces or dashes.
_PAN_LIKE_RE = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")


def contains_card_number(text: str) -> bool:
    """Free text holds something that is plausibly a card number (known brand, valid
    length, Luhn). Used to keep PANs out of fields that are stored and logged in clear."""
    for match in _PAN_LIKE_RE.finditer(text):
        digits = match.group().replace(" ", "").replace("-", "")
        brand = detect_brand(digits)
        if brand is not None and len(digits) in BRAND_LENGTHS[brand] and luhn_valid(digits):
            return True
    return False


class Secret:
    """A string that never shows itself: ``repr`` and ``str`` are redacted, pickling is
    refused, equality is constant-time. Call ``reveal()`` to use the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"{type(self).__name__} holds a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_REDACTED!r})"

    def __str__(self) -> str:
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    # Unhashable: a hash is a (weak) function of the secret and has no use here.
    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        return bool(self._value)

    # Immutable, so copies are the object itself; deepcopy (dataclasses.asdict) stays safe.
    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        # Pickles end up in caches and queues; card data must not travel that way.
        raise TypeError(f"{type(self).__name__} cannot be pickled")


class PanSecret(Secret):
    """A normalised card number (ASCII digits only, 12-19 of them).

    It does not promise a Luhn-valid or known-brand number: validation decides that.
    It guarantees the shape the vault, the fingerprint and the mask rely on.
    """

    __slots__ = ()

    def __init__(self, digits: str) -> None:
        if not is_ascii_digits(digits) or not PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS:
            # Say nothing about the value: this message may reach a log.
            raise ValueError(f"a card number is {PAN_MIN_DIGITS} to {PAN_MAX_DIGITS} digits")
        super().__init__(digits)

    @classmethod
    def from_input(cls, raw: str) -> PanSecret:
        """Normalise client input (spaces and dashes allowed) into a PanSecret."""
        digits = normalize_card_number(raw)
        if digits is None:
            raise ValueError("a card number holds only digits, spaces and dashes")
        return cls(digits)

    @property
    def brand(self) -> CardBrand | None:
        return detect_brand(self._value)

    @property
    def bin6(self) -> str:
        return self._value[:BIN_DIGITS]

    @property
    def last4(self) -> str:
        return self._value[-LAST_DIGITS:]

    @property
    def masked(self) -> str:
        return mask_pan(self._value)


@dataclass(frozen=True, slots=True)
class CardInput:
    """A card as the client submitted it, not yet validated. Number and CVC are secrets,
    so the dataclass ``repr`` of a command never shows them."""

    number: Secret
    exp_month: int
    exp_year: int
    cvc: Secret
    # Cardholder data too: kept out of repr, so out of logs.
    holder_name: str = field(default="", repr=False)


__all__ = [
    "BIN_DIGITS",
    "BRAND_DISPLAY_NAMES",
    "BRAND_LENGTHS",
    "CARD_NUMBER_INPUT_MAX_CHARS",
    "CVC_INPUT_MAX_CHARS",
    "CVC_LENGTHS",
    "EXPIRY_YEARS_AHEAD_MAX",
    "LAST_DIGITS",
    "PAN_MAX_DIGITS",
    "PAN_MIN_DIGITS",
    "CardBrand",
    "CardInput",
    "PanSecret",
    "Secret",
    "contains_card_number",
    "detect_brand",
    "is_ascii_digits",
    "is_expired",
    "luhn_valid",
    "mask_pan",
    "normalize_card_number",
]
