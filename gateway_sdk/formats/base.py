"""What every wire format carries, and the interface each format module implements.

:class:`GatewayRequest` is what payrail sends a gateway on its topic; :class:`GatewayResult`
is what the gateway reports back (it mirrors ``payrail.callbacks.v1.GatewayResult``). Both
check every field on construction, so a decoder only has to turn its format into Python
values of the right type: anything out of range becomes a :class:`FormatError` naming the
field, never echoing its value.

A format module turns these two dataclasses into bytes and back (and a batch of results,
for ``CallbackService/ReportResults``), and nothing else: no other module knows what a
format looks like on the wire.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, get_args

from gateway_sdk.sealing import SealedCard

Kind = Literal["DEPOSIT", "WITHDRAWAL", "PURCHASE"]
Outcome = Literal["APPROVED", "DECLINED"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
OUTCOMES: Final[tuple[str, ...]] = get_args(Outcome)

# Every encoded request or result; the largest legitimate request is under 8 KiB even
# with every text field at its maximum in 4-byte characters and XML escaping.
ENCODED_MAX_BYTES: Final = 16_384
# A batch of results (CallbackService/ReportResults): at most this many results and
# bytes. An ordinary result is about 300 bytes in JSON and 700 in SOAP, so a full batch
# of them fits with room to spare; results with every text field at its maximum take a
# few KiB each, and a gateway sending such results sends fewer per batch (the SDK's
# client halves a batch its format cannot encode within the bound).
BATCH_RESULTS_MAX: Final = 500
BATCH_ENCODED_MAX_BYTES: Final = 1_048_576
ID_MAX_CHARS: Final = 128
DESCRIPTION_MAX_CHARS: Final = 500
FAILURE_CODE_MAX_CHARS: Final = 64
FAILURE_MESSAGE_MAX_CHARS: Final = 500
GATEWAY_REFERENCE_MAX_CHARS: Final = 128
MERCHANT_ID_MAX_CHARS: Final = 64
MERCHANT_NAME_MAX_CHARS: Final = 100
MERCHANT_CITY_MAX_CHARS: Final = 100
BRAND_MAX_CHARS: Final = 32
# Re-dispatch count and amounts are int32 / int64 in payrail's contracts.
ATTEMPT_MAX: Final = 2**31 - 1
AMOUNT_MINOR_MAX: Final = 2**63 - 1
# 9999-12-31T23:59:59Z: every format can represent it, and no deadline is later.
UNIX_SECONDS_MAX: Final = 253_402_300_799

# Visible ASCII: ids travel in headers, logs and URLs of every language.
_ID_RE = re.compile(r"[\x21-\x7e]+")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_BRAND_RE = re.compile(r"[A-Z_]*")
# BIN and last four around 2 to 9 stars (card numbers of 12 to 19 digits), or nothing
# (a wallet-funded purchase): a full card number cannot fit this shape.
_MASKED_NUMBER_RE = re.compile(r"(?:[0-9]{6}\*{2,9}[0-9]{4})?")
_MCC_RE = re.compile(r"(?:[0-9]{4})?")
_COUNTRY_RE = re.compile(r"(?:[A-Z]{2})?")
_FAILURE_CODE_RE = re.compile(r"[A-Za-z0-9_.:-]*")
# Not XML 1.0 characters; refused everywhere so every format can carry every value.
_NONCHARACTERS = frozenset("\ufffe\uffff")

FormatReason = Literal[
    "oversized",
    "malformed",
    "forbidden_markup",
    "missing_field",
    "invalid_field",
    "unknown_format",
]


class FormatError(ValueError):
    """Bytes that are not a valid message of a format, or a field out of its rules.

    ``reason`` is stable (``oversized``, ``malformed``, ``forbidden_markup``,
    ``missing_field``, ``invalid_field``, ``unknown_format``) and ``field`` names the
    offending field when there is one. Neither the message nor the attributes ever
    contain the input itself.
    """

    def __init__(self, reason: FormatReason, field: str = "") -> None:
        super().__init__(f"{reason}: {field}" if field else reason)
        self.reason: FormatReason = reason
        self.field = field


# ----------------------------------------------------------------------- field rules


def _require_text(
    field: str, value: object, *, max_chars: int, allow: str = "", required: bool = False
) -> None:
    if not isinstance(value, str):
        raise FormatError("invalid_field", field)
    if required and not value:
        raise FormatError("missing_field", field)
    if len(value) > max_chars:
        raise FormatError("invalid_field", field)
    for ch in value:
        # Cc: C0/C1 controls (log injection, not XML); Cs: lone surrogates (not UTF-8).
        if (unicodedata.category(ch) in ("Cc", "Cs") and ch not in allow) or ch in _NONCHARACTERS:
            raise FormatError("invalid_field", field)


def _require_match(field: str, value: object, pattern: re.Pattern[str], *, max_chars: int) -> None:
    if not isinstance(value, str):
        raise FormatError("invalid_field", field)
    if len(value) > max_chars or not pattern.fullmatch(value):
        raise FormatError("invalid_field", field)


def _require_id(field: str, value: object) -> None:
    if isinstance(value, str) and not value:
        raise FormatError("missing_field", field)
    _require_match(field, value, _ID_RE, max_chars=ID_MAX_CHARS)


def _require_int(field: str, value: object, *, minimum: int, maximum: int) -> None:
    # bool is an int in Python and a different type everywhere else.
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError("invalid_field", field)
    if not minimum <= value <= maximum:
        raise FormatError("invalid_field", field)


# -------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskedCard:
    """What a gateway may see of the card in clear: brand and BIN + last four."""

    brand: str  # VISA, MASTERCARD, AMERICAN_EXPRESS, DISCOVER, or UNSPECIFIED
    masked_number: str  # e.g. "424242******4242"; empty when there is no card

    def __post_init__(self) -> None:
        _require_match("card.brand", self.brand, _BRAND_RE, max_chars=BRAND_MAX_CHARS)
        _require_match("card.masked_number", self.masked_number, _MASKED_NUMBER_RE, max_chars=19)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayMerchant:
    """Where a purchase is made; every field may be empty."""

    merchant_id: str = ""
    name: str = ""
    category_code: str = ""  # ISO 18245 MCC, four digits
    country_code: str = ""  # ISO 3166-1 alpha-2, upper case
    city: str = ""

    def __post_init__(self) -> None:
        _require_text("merchant.merchant_id", self.merchant_id, max_chars=MERCHANT_ID_MAX_CHARS)
        _require_text("merchant.name", self.name, max_chars=MERCHANT_NAME_MAX_CHARS)
        _require_match("merchant.category_code", self.category_code, _MCC_RE, max_chars=4)
        _require_match("merchant.country_code", self.country_code, _COUNTRY_RE, max_chars=2)
        _require_text("merchant.city", self.city, max_chars=MERCHANT_CITY_MAX_CHARS)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayRequest:
    """One payment handed to a gateway. The card is masked except inside
    ``sealed_card``, which only the gateway's private key opens (associated data: the
    payment id)."""

    request_id: str  # the dispatch's event id: the same on a redelivery, so drop duplicates
    payment_id: str
    attempt: int  # 1 for the first dispatch, more for re-dispatches of the same payment
    kind: str  # one of KINDS: "DEPOSIT", "WITHDRAWAL", "PURCHASE"
    amount_minor: int  # positive, in the currency's minor units
    currency_code: str  # ISO 4217 alphabetic, e.g. "USD"
    card: MaskedCard | None = None
    sealed_card: SealedCard | None = None  # None for wallet-funded purchases
    merchant: GatewayMerchant | None = None  # purchases only
    callback_deadline: int  # unix seconds; report the result before it
    description: str = ""

    def __post_init__(self) -> None:
        _require_id("request_id", self.request_id)
        _require_id("payment_id", self.payment_id)
        _require_int("attempt", self.attempt, minimum=1, maximum=ATTEMPT_MAX)
        if self.kind not in KINDS:
            raise FormatError("invalid_field", "kind")
        _require_int("amount_minor", self.amount_minor, minimum=1, maximum=AMOUNT_MINOR_MAX)
        _require_match("currency_code", self.currency_code, _CURRENCY_RE, max_chars=3)
        if self.card is not None and not isinstance(self.card, MaskedCard):
            raise FormatError("invalid_field", "card")
        if self.sealed_card is not None and not isinstance(self.sealed_card, SealedCard):
            raise FormatError("invalid_field", "sealed_card")
        if self.merchant is not None and not isinstance(self.merchant, GatewayMerchant):
            raise FormatError("invalid_field", "merchant")
        _require_int(
            "callback_deadline", self.callback_deadline, minimum=0, maximum=UNIX_SECONDS_MAX
        )
        _require_text(
            "description", self.description, max_chars=DESCRIPTION_MAX_CHARS, allow="\n\t"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayResult:
    """A gateway's outcome for one payment; mirrors ``payrail.callbacks.v1.GatewayResult``.

    APPROVED carries no failure code or message; DECLINED needs a failure code.
    """

    event_id: str  # unique per callback event, chosen by the gateway; replays are dropped
    payment_id: str
    outcome: Outcome
    failure_code: str = ""  # machine-readable, e.g. "card_declined"
    failure_message: str = ""
    gateway_reference: str = ""  # the provider's own reference for the charge
    occur_time: int  # unix seconds when the provider decided

    def __post_init__(self) -> None:
        _require_id("event_id", self.event_id)
        _require_id("payment_id", self.payment_id)
        if self.outcome not in OUTCOMES:
            raise FormatError("invalid_field", "outcome")
        _require_match(
            "failure_code", self.failure_code, _FAILURE_CODE_RE, max_chars=FAILURE_CODE_MAX_CHARS
        )
        _require_text(
            "failure_message",
            self.failure_message,
            max_chars=FAILURE_MESSAGE_MAX_CHARS,
            allow="\n\t",
        )
        _require_text(
            "gateway_reference", self.gateway_reference, max_chars=GATEWAY_REFERENCE_MAX_CHARS
        )
        _require_int("occur_time", self.occur_time, minimum=0, maximum=UNIX_SECONDS_MAX)
        if self.outcome == "APPROVED" and (self.failure_code or self.failure_message):
            raise FormatError("invalid_field", "failure_code")
        if self.outcome == "DECLINED" and not self.failure_code:
            raise FormatError("missing_field", "failure_code")


def as_outcome(value: object) -> Outcome:
    """Narrow decoded text to an :data:`Outcome`, or refuse it."""
    if value == "APPROVED":
        return "APPROVED"
    if value == "DECLINED":
        return "DECLINED"
    raise FormatError("invalid_field", "outcome")


# ------------------------------------------------------------------------- interface


class WireFormat(Protocol):
    """One wire format. Encoders take valid messages (the dataclasses check themselves);
    decoders refuse anything over :data:`ENCODED_MAX_BYTES`, unparseable, or with a
    missing or ill-typed field, with :class:`FormatError`."""

    @property
    def name(self) -> str:
        """The registry name: ``json``, ``soap`` or ``protobuf``."""
        ...

    @property
    def content_type(self) -> str:
        """The media type of the format's messages."""
        ...

    def encode_request(self, request: GatewayRequest) -> bytes: ...

    def decode_request(self, data: bytes) -> GatewayRequest: ...

    def encode_result(self, result: GatewayResult) -> bytes: ...

    def decode_result(self, data: bytes) -> GatewayResult: ...

    def encode_results(self, results: Sequence[GatewayResult]) -> bytes:
        """A batch of 1 to :data:`BATCH_RESULTS_MAX` results, in order; ``oversized``
        when it would exceed :data:`BATCH_ENCODED_MAX_BYTES` (send fewer per batch)."""
        ...

    def decode_results(self, data: bytes) -> tuple[GatewayResult, ...]:
        """The results of a batch, in order; every result checked like one alone."""
        ...


def check_encoded(data: bytes, *, max_bytes: int = ENCODED_MAX_BYTES) -> bytes:
    """The checks every decoder starts with (and every encoder ends with): bytes, and
    not more than ``max_bytes`` (:data:`ENCODED_MAX_BYTES` for one message) of them."""
    if not isinstance(data, bytes):
        raise TypeError("a wire message is bytes")
    if len(data) > max_bytes:
        raise FormatError("oversized")
    return data


def check_batch_encoded(data: bytes) -> bytes:
    """:func:`check_encoded` for a batch of results."""
    return check_encoded(data, max_bytes=BATCH_ENCODED_MAX_BYTES)


def check_batch(results: Sequence[GatewayResult]) -> tuple[GatewayResult, ...]:
    """The results of a batch, checked for count and type (encoders and decoders both:
    an empty batch or one of more than :data:`BATCH_RESULTS_MAX` is refused)."""
    items: object = results  # checked at run time too: callers may not be type-checked
    if not isinstance(items, list | tuple):
        raise TypeError("a batch is a list or tuple of GatewayResult")
    if not 1 <= len(items) <= BATCH_RESULTS_MAX:
        raise FormatError("invalid_field", "results")
    if not all(isinstance(result, GatewayResult) for result in items):
        raise TypeError("a batch is a list or tuple of GatewayResult")
    return tuple(results)


__all__ = [
    "BATCH_ENCODED_MAX_BYTES",
    "BATCH_RESULTS_MAX",
    "ENCODED_MAX_BYTES",
    "KINDS",
    "OUTCOMES",
    "FormatError",
    "FormatReason",
    "GatewayMerchant",
    "GatewayRequest",
    "GatewayResult",
    "Kind",
    "MaskedCard",
    "Outcome",
    "WireFormat",
    "as_outcome",
    "check_batch",
    "check_batch_encoded",
    "check_encoded",
]
