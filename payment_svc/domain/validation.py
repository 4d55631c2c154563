"""CreatePayment input rules and the request fingerprint behind idempotency.

``validate_create_payment`` checks every field and returns every violation (never only
the first), each with its field path in the request (``card.number``, ``amount.
currency_code``, ``merchant.latitude``) and a fixed description. Descriptions never echo
the submitted value, so a card number typed into the wrong field cannot leak through an
error message or the log line that records it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from payment_svc.domain.cards import (
    BRAND_DISPLAY_NAMES,
    BRAND_LENGTHS,
    CVC_INPUT_MAX_CHARS,
    CVC_LENGTHS,
    EXPIRY_YEARS_AHEAD_MAX,
    CardInput,
    contains_card_number,
    detect_brand,
    is_ascii_digits,
    is_expired,
    luhn_valid,
    normalize_card_number,
)
from payment_svc.domain.money import AmountLimits, Currency, Money, is_currency_code_shaped
from payment_svc.domain.status import FundingSource, PaymentKind, PaymentStatus
from payrail_common.fields import FieldViolation

IDEMPOTENCY_KEY_MAX_CHARS = 255
DESCRIPTION_MAX_CHARS = 500
HOLDER_NAME_MAX_CHARS = 100
MERCHANT_ID_MAX_CHARS = 64
MERCHANT_NAME_MAX_CHARS = 100
MERCHANT_CITY_MAX_CHARS = 100
LATITUDE_MAX_DEG = 90.0
LONGITUDE_MAX_DEG = 180.0
# Bumped whenever the canonical encoding changes, so old and new digests never collide.
REQUEST_FINGERPRINT_VERSION = 1

# ISO 3166-1 alpha-2: the 249 officially assigned codes (user-assigned codes such as XK
# are not accepted).
_ISO_3166_ALPHA2_TABLE = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ
    DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP
    GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG
    KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML
    MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE
    PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL
    SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM
    US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
ISO_3166_ALPHA2: frozenset[str] = frozenset(_ISO_3166_ALPHA2_TABLE.split())


@dataclass(frozen=True, slots=True)
class Merchant:
    """Where a purchase is made, as submitted."""

    merchant_id: str
    name: str
    category_code: str  # ISO 18245 MCC, four digits
    country_code: str  # ISO 3166-1 alpha-2, upper case
    city: str
    latitude: float  # degrees, -90 to 90
    longitude: float  # degrees, -180 to 180


@dataclass(frozen=True, slots=True)
class CreatePaymentCommand:
    """A CreatePayment request as the domain sees it, mapped from protobuf by the api layer.

    ``kind`` and ``funding_source`` are None when the client left them unspecified;
    ``card`` and ``merchant`` are None when the client did not send them. ``user_id`` is
    the authenticated caller, never client input. ``unrecognized`` names the enum fields
    whose wire value the contract does not define (their value here is None).
    """

    user_id: str
    idempotency_key: str
    kind: PaymentKind | None
    amount: Money
    card: CardInput | None = None
    merchant: Merchant | None = None
    description: str = ""
    funding_source: FundingSource | None = None
    unrecognized: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.user_id:
            raise ValueError("user_id is the authenticated caller and cannot be empty")


def effective_funding_source(
    kind: PaymentKind | None, funding_source: FundingSource | None
) -> FundingSource | None:
    """What pays for a purchase (card when unspecified); None for deposits and
    withdrawals, which by contract ignore the field."""
    if kind is not PaymentKind.PURCHASE:
        return None
    return funding_source or FundingSource.CARD


# The domain enum behind every request field that carries one (CreatePayment's kind and
# funding_source, ListPayments' status and kind filters).
_ENUM_FIELDS: Mapping[str, type[StrEnum]] = MappingProxyType(
    {"kind": PaymentKind, "funding_source": FundingSource, "status": PaymentStatus}
)


def unrecognized_value(path: str) -> FieldViolation:
    """The violation of an enum field whose value is not one the contract defines (an
    open protobuf enum carries any number): refused by name, never read as "unspecified"."""
    members = _ENUM_FIELDS.get(path.rsplit(".", 1)[-1])
    if members is None:
        return FieldViolation(path, "is not a known value")
    return FieldViolation(
        path, f"is not a known value; use one of {_or_list(m.value for m in members)}"
    )


def _has_control_chars(text: str, *, allow: str = "") -> bool:
    # Cc: C0/C1 controls (log and terminal injection); Cs: lone surrogates, which cannot
    # be stored as UTF-8.
    return any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in allow for ch in text)


@dataclass
class _Collector:
    violations: list[FieldViolation] = field(default_factory=list)

    def add(self, path: str, description: str) -> None:
        self.violations.append(FieldViolation(path, description))

    def text(
        self,
        path: str,
        value: str,
        *,
        max_chars: int,
        required: bool,
        allow: str = "",
        refuse_card_numbers: bool = True,
    ) -> None:
        """The common rules of a free-text field; at most one violation per field."""
        if not value.strip():
            if required:
                self.add(path, "is required")
            elif value:
                self.add(path, "must not be only white space")
        elif len(value) > max_chars:
            self.add(path, f"must be at most {max_chars} characters")
        elif _has_control_chars(value, allow=allow):
            self.add(path, "must not contain control characters")
        elif refuse_card_numbers and contains_card_number(value):
            # Free text is stored and logged in clear; a PAN must only reach the vault.
            self.add(path, "must not contain a card number")


def _or_list(items: Iterable[str]) -> str:
    """``["13", "16", "19"]`` → ``"13, 16 or 19"``."""
    words = list(items)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _check_amount(
    out: _Collector,
    amount: Money,
    currencies: Mapping[str, Currency],
    limits: AmountLimits,
) -> None:
    code = amount.currency_code
    currency: Currency | None = None
    if not code:
        out.add("amount.currency_code", "is required")
    elif not is_currency_code_shaped(code):
        out.add("amount.currency_code", "must be a three-letter upper-case ISO 4217 code")
    elif code not in currencies or limits.max_minor(code) is None:
        supported = ", ".join(sorted(c for c in currencies if limits.max_minor(c) is not None))
        out.add("amount.currency_code", f"is not supported; supported: {supported}")
    else:
        currency = currencies[code]

    if amount.amount_minor <= 0:
        out.add("amount.amount_minor", "must be greater than zero")
    elif currency is not None:
        max_minor = limits.max_minor(currency.code)
        if max_minor is not None and amount.amount_minor > max_minor:
            out.add(
                "amount.amount_minor",
                f"must be at most {max_minor} ({currency.format(max_minor)})",
            )


def _check_card(out: _Collector, card: CardInput, today: datetime.date) -> None:
    raw_number = card.number.reveal()
    digits = normalize_card_number(raw_number)
    brand = detect_brand(digits) if digits else None
    if not raw_number.strip():
        out.add("card.number", "is required")
    elif digits is None:
        out.add("card.number", "must contain only digits, spaces and dashes")
    elif brand is None:
        names = ", ".join(BRAND_DISPLAY_NAMES.values())
        out.add("card.number", f"is not a card of a supported brand ({names})")
    elif len(digits) not in BRAND_LENGTHS[brand]:
        lengths = _or_list(str(n) for n in sorted(BRAND_LENGTHS[brand]))
        out.add(
            "card.number",
            f"must be {lengths} digits long for {BRAND_DISPLAY_NAMES[brand]}",
        )
    elif not luhn_valid(digits):
        out.add("card.number", "is not a valid card number (check digit mismatch)")

    cvc = card.cvc.reveal()
    if not cvc:
        out.add("card.cvc", "is required")
    elif len(cvc) > CVC_INPUT_MAX_CHARS or not is_ascii_digits(cvc):
        out.add("card.cvc", "must contain only digits")
    elif brand is not None:
        if len(cvc) != CVC_LENGTHS[brand]:
            out.add(
                "card.cvc",
                f"must be {CVC_LENGTHS[brand]} digits for {BRAND_DISPLAY_NAMES[brand]}",
            )
    elif len(cvc) not in set(CVC_LENGTHS.values()):
        out.add("card.cvc", "must be 3 or 4 digits")

    month_ok = 1 <= card.exp_month <= 12
    year_ok = 1000 <= card.exp_year <= 9999
    if not month_ok:
        out.add("card.exp_month", "must be 1 to 12")
    if not year_ok:
        out.add("card.exp_year", "must be a four-digit year")
    elif card.exp_year < today.year:
        out.add("card.exp_year", "the card has expired")
    elif card.exp_year > today.year + EXPIRY_YEARS_AHEAD_MAX:
        out.add("card.exp_year", f"must be at most {EXPIRY_YEARS_AHEAD_MAX} years ahead")
    elif month_ok and is_expired(card.exp_month, card.exp_year, today=today):
        # This year, an earlier month: the month is the part in the past.
        out.add("card.exp_month", "the card has expired")

    out.text("card.holder_name", card.holder_name, max_chars=HOLDER_NAME_MAX_CHARS, required=False)


def _check_merchant(out: _Collector, merchant: Merchant) -> None:
    out.text(
        "merchant.merchant_id",
        merchant.merchant_id,
        max_chars=MERCHANT_ID_MAX_CHARS,
        required=True,
    )
    out.text("merchant.name", merchant.name, max_chars=MERCHANT_NAME_MAX_CHARS, required=True)
    if not (len(merchant.category_code) == 4 and is_ascii_digits(merchant.category_code)):
        out.add("merchant.category_code", "must be a four-digit merchant category code (MCC)")
    if merchant.country_code not in ISO_3166_ALPHA2:
        out.add(
            "merchant.country_code",
            "must be an upper-case ISO 3166-1 alpha-2 country code, e.g. US",
        )
    out.text("merchant.city", merchant.city, max_chars=MERCHANT_CITY_MAX_CHARS, required=True)
    # NaN compares false with everything, so the finiteness check must be explicit.
    if not (math.isfinite(merchant.latitude) and abs(merchant.latitude) <= LATITUDE_MAX_DEG):
        out.add("merchant.latitude", "must be between -90 and 90 degrees")
    if not (math.isfinite(merchant.longitude) and abs(merchant.longitude) <= LONGITUDE_MAX_DEG):
        out.add("merchant.longitude", "must be between -180 and 180 degrees")


def _card_and_merchant_rules(cmd: CreatePaymentCommand) -> tuple[bool, bool, list[tuple[str, str]]]:
    """Which of card and merchant this kind needs, and the violations about their
    presence. Returns (check_card, check_merchant, violations)."""
    kind = cmd.kind
    problems: list[tuple[str, str]] = []
    if kind is None:
        # Without a kind nothing is required, but whatever was sent is still checked.
        return cmd.card is not None, cmd.merchant is not None, problems
    label = kind.value.lower()
    if kind is PaymentKind.PURCHASE:
        if cmd.merchant is None:
            problems.append(("merchant", "is required for a purchase"))
        wallet = effective_funding_source(kind, cmd.funding_source) is FundingSource.WALLET
        if wallet and cmd.card is not None:
            problems.append(("card", "must not be set for a wallet-funded purchase"))
            return False, cmd.merchant is not None, problems
        if not wallet and cmd.card is None:
            problems.append(("card", "is required for a card-funded purchase"))
        return cmd.card is not None, cmd.merchant is not None, problems
    # DEPOSIT and WITHDRAWAL move money between the wallet and a card.
    if cmd.card is None:
        problems.append(("card", f"is required for a {label}"))
    if cmd.merchant is not None:
        problems.append(("merchant", f"must not be set for a {label}"))
    return cmd.card is not None, False, problems


def validate_create_payment(
    cmd: CreatePaymentCommand,
    *,
    today: datetime.date,
    currencies: Mapping[str, Currency],
    limits: AmountLimits,
) -> list[FieldViolation]:
    """Every violation in the request, in field order; an empty list means valid.

    ``today`` decides card expiry (inject the clock: the date in the caller's chosen
    time zone); ``currencies`` is the configured supported set; ``limits`` the per-payment
    maxima. A currency must be in both to be accepted.
    """
    out = _Collector()
    out.text(
        "idempotency_key",
        cmd.idempotency_key,
        max_chars=IDEMPOTENCY_KEY_MAX_CHARS,
        required=True,
        # Keys are opaque client identifiers; numeric ones may look like PANs by chance.
        refuse_card_numbers=False,
    )
    if "kind" in cmd.unrecognized:
        out.violations.append(unrecognized_value("kind"))
    elif cmd.kind is None:
        out.add("kind", "is required: DEPOSIT, WITHDRAWAL or PURCHASE")
    _check_amount(out, cmd.amount, currencies, limits)

    check_card, check_merchant, presence = _card_and_merchant_rules(cmd)
    for path, description in presence:
        out.add(path, description)
    if check_card and cmd.card is not None:
        _check_card(out, cmd.card, today)
    if check_merchant and cmd.merchant is not None:
        _check_merchant(out, cmd.merchant)

    out.text(
        "description",
        cmd.description,
        max_chars=DESCRIPTION_MAX_CHARS,
        required=False,
        allow="\n\t",
    )
    if "funding_source" in cmd.unrecognized:
        # Refused whatever the kind: deposits and withdrawals ignore an unspecified or
        # known source, never a value that means nothing.
        out.violations.append(unrecognized_value("funding_source"))
    return out.violations


def _canonical_float(value: float) -> str:
    # repr is the shortest exact round-trip form; adding 0.0 folds -0.0 into 0.0.
    return repr(float(value) + 0.0)


def request_fingerprint(cmd: CreatePaymentCommand, *, card_fingerprint: str | None) -> str:
    """SHA-256 (hex) over a canonical encoding of everything that defines the request.

    The same request always gives the same digest; a change to any parameter gives
    another. The card enters only as ``card_fingerprint`` (the vault's keyed HMAC of the
    PAN): an unkeyed hash of a PAN can be reversed by brute force, and this digest is
    stored next to the payment. The CVC is left out on purpose: clients re-enter it on
    retry and it must never influence anything stored. Compute it after validation.
    """
    if (cmd.card is None) != (card_fingerprint is None):
        raise ValueError("card_fingerprint must be given exactly when the request has a card")
    card: dict[str, object] | None = None
    if cmd.card is not None:
        card = {
            "fingerprint": card_fingerprint,
            "exp_month": cmd.card.exp_month,
            "exp_year": cmd.card.exp_year,
            "holder_name": cmd.card.holder_name,
        }
    merchant: dict[str, object] | None = None
    if cmd.merchant is not None:
        m = cmd.merchant
        merchant = {
            "merchant_id": m.merchant_id,
            "name": m.name,
            "category_code": m.category_code,
            "country_code": m.country_code,
            "city": m.city,
            "latitude": _canonical_float(m.latitude),
            "longitude": _canonical_float(m.longitude),
        }
    funding = effective_funding_source(cmd.kind, cmd.funding_source)
    document = {
        "v": REQUEST_FINGERPRINT_VERSION,
        "user_id": cmd.user_id,
        "idempotency_key": cmd.idempotency_key,
        "kind": cmd.kind.value if cmd.kind is not None else None,
        "funding_source": funding.value if funding is not None else None,
        "amount": {
            "currency_code": cmd.amount.currency_code,
            "amount_minor": cmd.amount.amount_minor,
        },
        "card": card,
        "merchant": merchant,
        "description": cmd.description,
    }
    # sort_keys + fixed separators + ASCII escapes: one byte string per document.
    encoded = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256(encoded.encode("ascii")).hexdigest()


__all__ = [
    "DESCRIPTION_MAX_CHARS",
    "HOLDER_NAME_MAX_CHARS",
    "IDEMPOTENCY_KEY_MAX_CHARS",
    "ISO_3166_ALPHA2",
    "MERCHANT_CITY_MAX_CHARS",
    "MERCHANT_ID_MAX_CHARS",
    "MERCHANT_NAME_MAX_CHARS",
    "REQUEST_FINGERPRINT_VERSION",
    "CreatePaymentCommand",
    "Merchant",
    "effective_funding_source",
    "request_fingerprint",
    "unrecognized_value",
    "validate_create_payment",
]
