"""Money as integer minor units, the supported currencies, and per-payment amount limits.

Amounts are never floats: ``Money(currency_code="USD", amount_minor=1000)`` is 10.00 USD.
The currency table says how many minor digits each currency has (JPY and KRW have none),
which the display code and the limits need; it is deliberately a short, explicit list of
the currencies payrail settles, not all of ISO 4217.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Amounts travel as protobuf int64 and are stored as PostgreSQL bigint.
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency: alphabetic code and the number of minor-unit digits."""

    code: str
    minor_digits: int
    name: str

    def format(self, amount_minor: int) -> str:
        """Human form for messages, e.g. ``1000`` → ``"10.00 USD"``; integer maths only."""
        sign = "-" if amount_minor < 0 else ""
        if self.minor_digits == 0:
            return f"{sign}{abs(amount_minor)} {self.code}"
        major, minor = divmod(abs(amount_minor), 10**self.minor_digits)
        return f"{sign}{major}.{minor:0{self.minor_digits}d} {self.code}"


# The supported set. Exponents are ISO 4217's minor units; KRW's official exponent is 0.
CURRENCIES: Mapping[str, Currency] = MappingProxyType(
    {
        c.code: c
        for c in (
            Currency("USD", 2, "US dollar"),
            Currency("EUR", 2, "Euro"),
            Currency("GBP", 2, "Pound sterling"),
            Currency("JPY", 0, "Yen"),
            Currency("KRW", 0, "Won"),
            Currency("CHF", 2, "Swiss franc"),
            Currency("CAD", 2, "Canadian dollar"),
            Currency("AUD", 2, "Australian dollar"),
        )
    }
)


def is_currency_code_shaped(code: str) -> bool:
    """Three upper-case ASCII letters, the shape of every ISO 4217 alphabetic code."""
    return len(code) == 3 and all("A" <= ch <= "Z" for ch in code)


def select_currencies(codes: Iterable[str]) -> Mapping[str, Currency]:
    """The configured subset of ``CURRENCIES``; an unknown code is a configuration error."""
    selected: dict[str, Currency] = {}
    for code in codes:
        if code not in CURRENCIES:
            raise ValueError(f"unsupported currency {code!r}; known: {sorted(CURRENCIES)}")
        selected[code] = CURRENCIES[code]
    if not selected:
        raise ValueError("at least one currency must be supported")
    return MappingProxyType(selected)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units of a currency. Never a float.

    Construction only checks types: a zero, negative or unknown-currency amount can still
    be represented, so that validation can report it as a field violation.
    """

    currency_code: str
    amount_minor: int

    def __post_init__(self) -> None:
        if not isinstance(self.currency_code, str):
            raise TypeError("currency_code must be a str")
        # bool is an int subclass; True cents is a bug, not an amount.
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise TypeError("amount_minor must be an int of minor units, never a float")

    def _same_currency(self, other: Money) -> None:
        if other.currency_code != self.currency_code:
            raise ValueError(f"cannot combine {self.currency_code} with {other.currency_code}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.currency_code, self.amount_minor + other.amount_minor)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.currency_code, self.amount_minor - other.amount_minor)

    def __neg__(self) -> Money:
        return Money(self.currency_code, -self.amount_minor)


# Per-payment maxima, each about 100,000 US dollars rounded to a friendly number: a
# single card payment above that is almost always a typo (an amount in major units sent
# as minor, or the reverse) or fraud. Deployments raise or lower them by constructing
# AmountLimits with their own table.
DEFAULT_MAX_MINOR_BY_CURRENCY: Mapping[str, int] = MappingProxyType(
    {
        "USD": 10_000_000,  # 100,000.00
        "EUR": 10_000_000,  # 100,000.00
        "GBP": 10_000_000,  # 100,000.00
        "CHF": 10_000_000,  # 100,000.00
        "CAD": 15_000_000,  # 150,000.00
        "AUD": 15_000_000,  # 150,000.00
        "JPY": 15_000_000,  # 15,000,000
        "KRW": 150_000_000,  # 150,000,000
    }
)


@dataclass(frozen=True)
class AmountLimits:
    """The largest amount one payment may carry, per currency, in minor units.

    A currency without an entry is refused: an unconfigured limit must fail closed.
    The minimum is always 1 minor unit (amounts must be positive).
    """

    max_minor_by_currency: Mapping[str, int] = field(
        default_factory=lambda: DEFAULT_MAX_MINOR_BY_CURRENCY
    )

    def __post_init__(self) -> None:
        table = dict(self.max_minor_by_currency)
        for code, max_minor in table.items():
            if not is_currency_code_shaped(code):
                raise ValueError(f"limit for {code!r}: not an ISO 4217 alphabetic code")
            if isinstance(max_minor, bool) or not isinstance(max_minor, int):
                raise TypeError(f"limit for {code}: must be an int of minor units")
            if not 1 <= max_minor <= INT64_MAX:
                raise ValueError(f"limit for {code}: must be between 1 and {INT64_MAX}")
        # A private read-only copy: the caller's dict may change later, these limits not.
        object.__setattr__(self, "max_minor_by_currency", MappingProxyType(table))

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.max_minor_by_currency.items())))

    def max_minor(self, currency_code: str) -> int | None:
        """The maximum for this currency, or None when it has no limit (so is refused)."""
        return self.max_minor_by_currency.get(currency_code)


__all__ = [
    "CURRENCIES",
    "DEFAULT_MAX_MINOR_BY_CURRENCY",
    "INT64_MAX",
    "AmountLimits",
    "Currency",
    "Money",
    "is_currency_code_shaped",
    "select_currencies",
]
