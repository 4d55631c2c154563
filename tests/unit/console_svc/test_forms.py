"""The payment form → CreatePaymentRequest, and violations → the right form field."""

from __future__ import annotations

from console_svc.forms import FIELD_FOR_PATH, errors_by_field, parse_payment_form
from payrail.payments.v1 import payments_pb2 as pb

CARD = {
    "card_number": "4242 4242 4242 4242",
    "card_exp_month": "12",
    "card_exp_year": "2031",
    "card_cvc": "123",
}


def test_a_deposit() -> None:
    form = parse_payment_form(
        {"idempotency_key": "k1", "kind": "deposit", "currency": "USD", "amount": "10.00", **CARD}
    )
    assert form.errors == {}
    r = form.request
    assert r.idempotency_key == "k1"
    assert r.kind == pb.PAYMENT_KIND_DEPOSIT
    assert (r.amount.currency_code, r.amount.amount_minor) == ("USD", 1000)
    assert (r.card.number, r.card.exp_month, r.card.exp_year, r.card.cvc) == (
        "4242 4242 4242 4242",
        12,
        2031,
        "123",
    )
    assert not r.HasField("merchant")


def test_a_wallet_purchase_sends_no_card() -> None:
    form = parse_payment_form(
        {
            "idempotency_key": "k2",
            "kind": "purchase",
            "funding_source": "wallet",
            "currency": "JPY",
            "amount": "1500",
            "merchant_id": "m-1",
            "merchant_name": "Cafe",
            "merchant_category": "5812",
            "merchant_country": "jp",
            "merchant_city": "Tokyo",
            "merchant_lat": "35.68",
            "merchant_lon": "139.69",
            **CARD,
        }
    )
    assert form.errors == {}
    r = form.request
    assert r.funding_source == pb.FUNDING_SOURCE_WALLET
    assert not r.HasField("card")
    assert r.amount.amount_minor == 1500
    assert (r.merchant.country_code, r.merchant.latitude) == ("JP", 35.68)


def test_own_errors_force_a_request_the_platform_must_refuse() -> None:
    form = parse_payment_form(
        {
            "idempotency_key": "k3",
            "kind": "purchase",
            "currency": "USD",
            "amount": "5",
            "merchant_lat": "north",
            "merchant_lon": "",
            **CARD,
        }
    )
    assert set(form.errors) == {"merchant_lat", "merchant_lon"}
    assert form.request.amount.amount_minor == 0


def test_bad_amount_and_kind() -> None:
    form = parse_payment_form({"kind": "gift", "currency": "JPY", "amount": "1.5"})
    assert "kind" in form.errors
    assert "no minor units" in form.errors["amount"]
    assert form.request.amount.amount_minor == 0


def test_violations_land_on_their_fields_and_ours_win() -> None:
    errors = errors_by_field(
        [
            ("card.number", "is not a valid card number"),
            ("amount.amount_minor", "must be greater than zero"),
            ("merchant.latitude", "must be between -90 and 90 degrees"),
            ("something.else", "is odd"),
        ],
        {"amount": "JPY has no minor units"},
    )
    assert errors == {
        "card_number": "is not a valid card number",
        "amount": "JPY has no minor units",
        "merchant_lat": "must be between -90 and 90 degrees",
        "_form": "something.else: is odd",
    }


def test_two_violations_of_one_field_are_both_shown() -> None:
    errors = errors_by_field([("card.cvc", "is required"), ("card.cvc", "must be 3 digits")])
    assert errors == {"card_cvc": "is required; must be 3 digits"}


def test_every_mapped_field_is_an_input_of_the_form() -> None:
    inputs = {
        "kind", "funding_source", "amount", "currency", "card_number", "card_exp_month",
        "card_exp_year", "card_cvc", "card_holder", "merchant_id", "merchant_name",
        "merchant_category", "merchant_country", "merchant_city", "merchant_lat",
        "merchant_lon", "description",
    }  # fmt: skip
    assert set(FIELD_FOR_PATH.values()) <= inputs
