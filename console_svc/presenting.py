"""How the pages show the contracts' values: pure functions, used as template filters."""

from __future__ import annotations

import datetime as dt
from typing import Any

from console_svc.money import format_minor
from payrail.payments.v1 import payments_pb2

__all__ = [
    "FINAL_STATUSES",
    "STATUS_FILTERS",
    "filters",
    "iso_time",
    "kind_label",
    "safe_next",
    "status_label",
]

_STATUS_NAMES: dict[int, str] = {
    payments_pb2.PAYMENT_STATUS_PENDING: "Pending",
    payments_pb2.PAYMENT_STATUS_REQUIRES_VERIFICATION: "Needs your verification",
    payments_pb2.PAYMENT_STATUS_PROCESSING: "Processing",
    payments_pb2.PAYMENT_STATUS_COMPLETED: "Completed",
    payments_pb2.PAYMENT_STATUS_FAILED: "Failed",
    payments_pb2.PAYMENT_STATUS_DENIED: "Denied",
    payments_pb2.PAYMENT_STATUS_CANCELED: "Canceled",
    payments_pb2.PAYMENT_STATUS_EXPIRED: "Expired",
}
FINAL_STATUSES = frozenset(
    {
        payments_pb2.PAYMENT_STATUS_COMPLETED,
        payments_pb2.PAYMENT_STATUS_FAILED,
        payments_pb2.PAYMENT_STATUS_DENIED,
        payments_pb2.PAYMENT_STATUS_CANCELED,
        payments_pb2.PAYMENT_STATUS_EXPIRED,
    }
)
# Filter values in URLs (?status=completed) → enum values.
STATUS_FILTERS: dict[str, Any] = {
    name.removeprefix("PAYMENT_STATUS_").lower(): value
    for name, value in payments_pb2.PaymentStatus.items()
    if value != payments_pb2.PAYMENT_STATUS_UNSPECIFIED
}
KIND_FILTERS: dict[str, Any] = {
    name.removeprefix("PAYMENT_KIND_").lower(): value
    for name, value in payments_pb2.PaymentKind.items()
    if value != payments_pb2.PAYMENT_KIND_UNSPECIFIED
}
_BRANDS: dict[int, str] = {
    payments_pb2.CARD_BRAND_VISA: "Visa",
    payments_pb2.CARD_BRAND_MASTERCARD: "Mastercard",
    payments_pb2.CARD_BRAND_AMERICAN_EXPRESS: "American Express",
    payments_pb2.CARD_BRAND_DISCOVER: "Discover",
}


def status_label(status: int) -> str:
    return _STATUS_NAMES.get(status, "Unknown")


def status_key(status: int) -> str:
    """The status as a lower-case word, for CSS classes and data attributes."""
    try:
        return str(payments_pb2.PaymentStatus.Name(status)).removeprefix("PAYMENT_STATUS_").lower()
    except ValueError:
        return "unspecified"


def kind_label(kind: int) -> str:
    try:
        name = str(payments_pb2.PaymentKind.Name(kind)).removeprefix("PAYMENT_KIND_")
    except ValueError:
        return "Unknown"
    return name.capitalize()


def brand_label(brand: int) -> str:
    return _BRANDS.get(brand, "Card")


def card_label(card: payments_pb2.CardSummary) -> str:
    """BIN and last four as the platform masks them, never more."""
    if not card.masked_number:
        return ""
    return f"{brand_label(card.brand)} {card.masked_number}"


def iso_time(value: Any) -> str:
    """A protobuf Timestamp (or datetime) as ISO 8601 UTC; "" when unset."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        moment = value
    else:
        if not value.seconds and not value.nanos:
            return ""
        moment = value.ToDatetime(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_text(value: Any) -> str:
    """The fallback text of a <time> element before the script shows local time."""
    iso = iso_time(value)
    return iso.replace("T", " ").replace("Z", " UTC") if iso else ""


def money(amount: payments_pb2.Money) -> str:
    return format_minor(amount.amount_minor, amount.currency_code)


def safe_next(target: str) -> str:
    """Only a path on this console (no scheme, no host, no //) may be a redirect target."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/dashboard"
    return target


def filters() -> dict[str, Any]:
    return {
        "money": money,
        "minor": format_minor,
        "status_label": status_label,
        "status_key": status_key,
        "kind_label": kind_label,
        "card_label": card_label,
        "brand_label": brand_label,
        "iso": iso_time,
        "utc": utc_text,
    }
