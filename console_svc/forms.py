"""The payment form: what a person typed → CreatePaymentRequest, and the platform's
field violations → the form field they belong next to.

The platform validates every payment itself and answers INVALID_ARGUMENT with one
``BadRequest`` violation per bad field, named by its path in the request
(``card.number``, ``amount.currency_code``); :data:`FIELD_FOR_PATH` says which input of
the form each path belongs to, so the message appears next to the right field. The
console parses only what the contract cannot carry as typed (an amount in major units,
numbers); when that fails it still asks the platform, with the amount forced to 0 (which
the contract always refuses, so nothing can be recorded), to show every other error too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from console_svc.money import CURRENCY_DIGITS, AmountError, parse_major
from payrail.payments.v1 import payments_pb2

__all__ = [
    "FIELD_FOR_PATH",
    "KINDS",
    "PaymentForm",
    "errors_by_field",
    "parse_payment_form",
]

KINDS = {
    "deposit": payments_pb2.PAYMENT_KIND_DEPOSIT,
    "withdrawal": payments_pb2.PAYMENT_KIND_WITHDRAWAL,
    "purchase": payments_pb2.PAYMENT_KIND_PURCHASE,
}
FUNDING = {"card": payments_pb2.FUNDING_SOURCE_CARD, "wallet": payments_pb2.FUNDING_SOURCE_WALLET}

# Request field path (BadRequest.FieldViolation.field) → form input name.
FIELD_FOR_PATH: Mapping[str, str] = {
    "kind": "kind",
    "funding_source": "funding_source",
    "amount": "amount",
    "amount.amount_minor": "amount",
    "amount.currency_code": "currency",
    "card": "card_number",
    "card.number": "card_number",
    "card.exp_month": "card_exp_month",
    "card.exp_year": "card_exp_year",
    "card.cvc": "card_cvc",
    "card.holder_name": "card_holder",
    "merchant": "merchant_id",
    "merchant.merchant_id": "merchant_id",
    "merchant.name": "merchant_name",
    "merchant.category_code": "merchant_category",
    "merchant.country_code": "merchant_country",
    "merchant.city": "merchant_city",
    "merchant.latitude": "merchant_lat",
    "merchant.longitude": "merchant_lon",
    "description": "description",
}
# Errors that belong to no input are shown at the top of the form under this name.
FORM = "_form"


@dataclass
class PaymentForm:
    """A parsed submission: the request to send, and the console's own field errors."""

    request: payments_pb2.CreatePaymentRequest
    errors: dict[str, str] = field(default_factory=dict)


def _int_field(values: Mapping[str, str], name: str, errors: dict[str, str], what: str) -> int:
    raw = values.get(name, "").strip()
    if raw == "":
        return 0
    if not raw.isdigit() or len(raw) > 9:
        errors[name] = f"enter the {what} as a number"
        return 0
    return int(raw)


def _float_field(values: Mapping[str, str], name: str, errors: dict[str, str]) -> float:
    raw = values.get(name, "").strip()
    if raw == "":
        errors[name] = "is required"
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        errors[name] = "enter a number of degrees, e.g. 37.5665"
        return 0.0
    if value != value or value in (float("inf"), float("-inf")):
        errors[name] = "enter a number of degrees, e.g. 37.5665"
        return 0.0
    return value


def parse_payment_form(values: Mapping[str, str]) -> PaymentForm:
    """Build the request from the form's values (strings, as posted)."""
    errors: dict[str, str] = {}
    kind_name = values.get("kind", "")
    kind = KINDS.get(kind_name, payments_pb2.PAYMENT_KIND_UNSPECIFIED)
    if kind == payments_pb2.PAYMENT_KIND_UNSPECIFIED:
        errors["kind"] = "choose deposit, withdrawal or purchase"
    currency = values.get("currency", "").strip().upper()
    amount_minor = 0
    if currency not in CURRENCY_DIGITS:
        errors["currency"] = "choose a currency"
    else:
        try:
            amount_minor = parse_major(values.get("amount", ""), currency)
        except AmountError as exc:
            errors["amount"] = str(exc)
    request = payments_pb2.CreatePaymentRequest(
        idempotency_key=values.get("idempotency_key", ""),
        kind=kind,
        amount=payments_pb2.Money(currency_code=currency, amount_minor=amount_minor),
        description=values.get("description", ""),
    )
    funding = FUNDING.get(values.get("funding_source", "card"), payments_pb2.FUNDING_SOURCE_CARD)
    if kind == payments_pb2.PAYMENT_KIND_PURCHASE:
        request.funding_source = funding
        request.merchant.CopyFrom(
            payments_pb2.Merchant(
                merchant_id=values.get("merchant_id", "").strip(),
                name=values.get("merchant_name", "").strip(),
                category_code=values.get("merchant_category", "").strip(),
                country_code=values.get("merchant_country", "").strip().upper(),
                city=values.get("merchant_city", "").strip(),
                latitude=_float_field(values, "merchant_lat", errors),
                longitude=_float_field(values, "merchant_lon", errors),
            )
        )
    if not (
        kind == payments_pb2.PAYMENT_KIND_PURCHASE and funding == payments_pb2.FUNDING_SOURCE_WALLET
    ):
        request.card.CopyFrom(
            payments_pb2.CardInput(
                number=values.get("card_number", ""),
                exp_month=_int_field(values, "card_exp_month", errors, "month"),
                exp_year=_int_field(values, "card_exp_year", errors, "year"),
                cvc=values.get("card_cvc", "").strip(),
                holder_name=values.get("card_holder", "").strip(),
            )
        )
    if errors:
        # The platform always refuses a zero amount, so this request can only be refused:
        # it is sent to collect the platform's own messages on the other fields.
        request.amount.amount_minor = 0
    return PaymentForm(request=request, errors=errors)


def errors_by_field(
    violations: Iterable[tuple[str, str]], own: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Field violations (path, description) → {form input: message}; ours win."""
    errors: dict[str, str] = {}
    for path, description in violations:
        name = FIELD_FOR_PATH.get(path, FORM)
        message = description if name != FORM else f"{path}: {description}"
        errors[name] = f"{errors[name]}; {message}" if name in errors else message
    errors.update(own or {})
    return errors
