from __future__ import annotations

import ast
import dataclasses
import datetime
import sys
from pathlib import Path

import pytest

from payment_svc.domain.cards import CardInput, Secret
from payment_svc.domain.money import CURRENCIES, AmountLimits, Money, select_currencies
from payment_svc.domain.status import FundingSource, PaymentKind
from payment_svc.domain.validation import (
    CreatePaymentCommand,
    Merchant,
    request_fingerprint,
    validate_create_payment,
)
from payrail_common.fields import FieldViolation

TODAY = datetime.date(2031, 5, 15)
VISA = "4242424242424242"
AMEX = "378282246310005"


def card(
    number: str = VISA, cvc: str = "123", exp_month: int = 12, exp_year: int = 2033
) -> CardInput:
    return CardInput(Secret(number), exp_month, exp_year, Secret(cvc), "Jane Roe")


def merchant(**changes: object) -> Merchant:
    base = Merchant("m-100", "Blue Bottle", "5814", "KR", "Seoul", 37.5665, 126.978)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def deposit(**changes: object) -> CreatePaymentCommand:
    base = CreatePaymentCommand(
        user_id="user-1",
        idempotency_key="key-1",
        kind=PaymentKind.DEPOSIT,
        amount=Money("USD", 1000),
        card=card(),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def purchase(**changes: object) -> CreatePaymentCommand:
    return deposit(**{"kind": PaymentKind.PURCHASE, "merchant": merchant(), **changes})


def validate(cmd: CreatePaymentCommand) -> list[FieldViolation]:
    return validate_create_payment(cmd, today=TODAY, currencies=CURRENCIES, limits=AmountLimits())


def fields(cmd: CreatePaymentCommand) -> set[str]:
    return {v.field for v in validate(cmd)}


@pytest.mark.parametrize(
    "cmd",
    [
        deposit(),
        deposit(card=card("4242 4242 4242 4242")),
        deposit(kind=PaymentKind.WITHDRAWAL),
        purchase(),
        purchase(funding_source=FundingSource.CARD),
        purchase(funding_source=FundingSource.WALLET, card=None),
        deposit(amount=Money("JPY", 1000), description="line one\nline two"),
    ],
)
def test_valid_requests_have_no_violations(cmd: CreatePaymentCommand) -> None:
    assert validate(cmd) == []


@pytest.mark.parametrize(
    "number",
    [
        "4242424242424242",
        "4000000000000002",
        "5555555555554444",
        "2223003122003222",
        "6011111111111117",
    ],
)
def test_real_test_cards_are_accepted(number: str) -> None:
    assert validate(deposit(card=card(number))) == []


def test_amex_needs_a_four_digit_cvc() -> None:
    assert validate(deposit(card=card(AMEX, cvc="1234"))) == []
    violations = validate(deposit(card=card(AMEX, cvc="123")))
    assert violations == [FieldViolation("card.cvc", "must be 4 digits for American Express")]


def test_other_brands_need_a_three_digit_cvc() -> None:
    assert fields(deposit(card=card(VISA, cvc="1234"))) == {"card.cvc"}
    assert fields(deposit(card=card(VISA, cvc="12a"))) == {"card.cvc"}
    assert fields(deposit(card=card(VISA, cvc=""))) == {"card.cvc"}


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("4242424242424241", "check digit"),
        ("424242424242424", "13, 16 or 19 digits long for Visa"),  # 15 digits, Luhn-valid
        ("3782822463100052", "15 digits long for American Express"),  # 16, Luhn-valid
        ("36000000000008", "supported brand"),  # Diners Club
        ("4242.4242.4242.4242", "only digits, spaces and dashes"),
        ("", "is required"),
    ],
)
def test_bad_card_numbers_name_card_number(number: str, message: str) -> None:
    cvc = "1234" if number.startswith("37") else "123"
    violations = validate(deposit(card=card(number, cvc=cvc)))
    assert [v.field for v in violations] == ["card.number"]
    assert message in violations[0].description


def test_expiry_this_month_is_accepted_and_last_month_refused() -> None:
    assert validate(deposit(card=card(exp_month=5, exp_year=2031))) == []
    assert validate(deposit(card=card(exp_month=4, exp_year=2031))) == [
        FieldViolation("card.exp_month", "the card has expired")
    ]
    assert validate(deposit(card=card(exp_month=12, exp_year=2030))) == [
        FieldViolation("card.exp_year", "the card has expired")
    ]


@pytest.mark.parametrize(
    ("exp_month", "exp_year", "bad"),
    [
        (0, 2033, {"card.exp_month"}),
        (13, 2033, {"card.exp_month"}),
        (12, 33, {"card.exp_year"}),
        (13, 2020, {"card.exp_month", "card.exp_year"}),
        (12, 2052, {"card.exp_year"}),  # more than 20 years ahead
    ],
)
def test_bad_expiry(exp_month: int, exp_year: int, bad: set[str]) -> None:
    assert fields(deposit(card=card(exp_month=exp_month, exp_year=exp_year))) == bad


def test_every_bad_field_is_reported_not_just_the_first() -> None:
    cmd = purchase(
        idempotency_key="",
        amount=Money("usd", 0),
        card=CardInput(Secret("4242424242424241"), 13, 2020, Secret("12"), "x" * 101),
        merchant=Merchant("", "", "58A4", "kr", "", 91.0, -180.5),
        description="d" * 501,
    )
    assert fields(cmd) == {
        "idempotency_key",
        "amount.currency_code",
        "amount.amount_minor",
        "card.number",
        "card.cvc",
        "card.exp_month",
        "card.exp_year",
        "card.holder_name",
        "merchant.merchant_id",
        "merchant.name",
        "merchant.category_code",
        "merchant.country_code",
        "merchant.city",
        "merchant.latitude",
        "merchant.longitude",
        "description",
    }


@pytest.mark.parametrize(
    ("number", "cvc"),
    [
        ("4242424242424241", "9876"),
        ("424242424242424", "987"),
        (AMEX, "987"),
        ("4242x424242424242", "98a"),
        ("5555555555554444", "98765"),
    ],
)
def test_descriptions_never_contain_the_card_number_or_cvc(number: str, cvc: str) -> None:
    # The PAN also lands in fields where it does not belong, as users do.
    cmd = purchase(
        idempotency_key=number,
        card=card(number, cvc=cvc),
        merchant=merchant(name=number, city=cvc),
        description=f"paid with {number} cvc {cvc}",
    )
    violations = validate(cmd)
    assert violations
    for violation in violations:
        assert number not in violation.description
        assert number[-4:] not in violation.description
        assert cvc not in violation.description


def test_a_card_number_in_free_text_is_refused() -> None:
    assert fields(deposit(description="card 4242 4242 4242 4242")) == {"description"}
    assert fields(purchase(merchant=merchant(city="4242424242424242"))) == {"merchant.city"}


@pytest.mark.parametrize(
    ("cmd", "bad"),
    [
        (deposit(card=None), {"card"}),
        (deposit(kind=PaymentKind.WITHDRAWAL, card=None), {"card"}),
        (deposit(merchant=merchant()), {"merchant"}),
        (deposit(kind=PaymentKind.WITHDRAWAL, merchant=merchant()), {"merchant"}),
        (purchase(merchant=None), {"merchant"}),
        (purchase(card=None), {"card"}),
        (purchase(card=None, funding_source=FundingSource.CARD), {"card"}),
        (purchase(funding_source=FundingSource.WALLET), {"card"}),
        (deposit(kind=None), {"kind"}),
    ],
)
def test_kind_specific_requirements(cmd: CreatePaymentCommand, bad: set[str]) -> None:
    assert fields(cmd) == bad


def test_without_a_kind_whatever_was_sent_is_still_checked() -> None:
    cmd = deposit(kind=None, card=card("4242424242424241"), merchant=merchant(latitude=-91.0))
    assert fields(cmd) == {"kind", "card.number", "merchant.latitude"}


@pytest.mark.parametrize(
    ("amount", "bad", "message"),
    [
        (Money("USD", 0), "amount.amount_minor", "greater than zero"),
        (Money("USD", -100), "amount.amount_minor", "greater than zero"),
        (Money("USD", 10_000_001), "amount.amount_minor", "at most 10000000 (100000.00 USD)"),
        (Money("XYZ", 100), "amount.currency_code", "not supported"),
        (Money("usd", 100), "amount.currency_code", "three-letter upper-case"),
        (Money("", 100), "amount.currency_code", "is required"),
    ],
)
def test_amount_rules(amount: Money, bad: str, message: str) -> None:
    violations = validate(deposit(amount=amount))
    assert [v.field for v in violations] == [bad]
    assert message in violations[0].description


def test_amount_at_the_limit_is_accepted() -> None:
    assert validate(deposit(amount=Money("USD", 10_000_000))) == []
    assert validate(deposit(amount=Money("USD", 1))) == []


def test_configured_currencies_and_limits_are_honoured() -> None:
    only_krw = select_currencies(["KRW"])
    cmd = deposit(amount=Money("USD", 1000))
    violations = validate_create_payment(
        cmd, today=TODAY, currencies=only_krw, limits=AmountLimits()
    )
    assert violations == [
        FieldViolation("amount.currency_code", "is not supported; supported: KRW")
    ]
    # Supported but without a configured limit: refused, never unlimited.
    no_usd_limit = AmountLimits({"EUR": 100})
    violations = validate_create_payment(
        cmd, today=TODAY, currencies=CURRENCIES, limits=no_usd_limit
    )
    assert [v.field for v in violations] == ["amount.currency_code"]
    tight = AmountLimits({"USD": 999})
    violations = validate_create_payment(cmd, today=TODAY, currencies=CURRENCIES, limits=tight)
    assert violations == [FieldViolation("amount.amount_minor", "must be at most 999 (9.99 USD)")]


@pytest.mark.parametrize(
    ("key", "ok"),
    [("k" * 255, True), ("k" * 256, False), ("", False), ("   ", False), ("a\nb", False)],
)
def test_idempotency_key_is_required_and_bounded(key: str, ok: bool) -> None:
    assert fields(deposit(idempotency_key=key)) == (set() if ok else {"idempotency_key"})


@pytest.mark.parametrize(
    ("description", "ok"),
    [("d" * 500, True), ("d" * 501, False), ("", True), ("tab\tok", True), ("bell\a", False)],
)
def test_description_is_bounded(description: str, ok: bool) -> None:
    assert fields(deposit(description=description)) == (set() if ok else {"description"})


@pytest.mark.parametrize(
    ("changes", "bad"),
    [
        ({"latitude": 90.0, "longitude": -180.0}, None),
        ({"latitude": -90.0001}, "merchant.latitude"),
        ({"latitude": float("nan")}, "merchant.latitude"),
        ({"longitude": float("inf")}, "merchant.longitude"),
        ({"longitude": 180.5}, "merchant.longitude"),
        ({"category_code": "581"}, "merchant.category_code"),
        ({"category_code": "58123"}, "merchant.category_code"),
        ({"country_code": "XX"}, "merchant.country_code"),
        ({"country_code": "KOR"}, "merchant.country_code"),
        ({"merchant_id": "m" * 65}, "merchant.merchant_id"),
    ],
)
def test_merchant_rules(changes: dict[str, object], bad: str | None) -> None:
    assert fields(purchase(merchant=merchant(**changes))) == ({bad} if bad else set())


def test_empty_user_id_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="user_id"):
        deposit(user_id="")


FP = "a" * 64


def digest(cmd: CreatePaymentCommand, card_fingerprint: str | None = FP) -> str:
    return request_fingerprint(cmd, card_fingerprint=card_fingerprint)


def test_the_same_request_gives_the_same_fingerprint() -> None:
    assert digest(purchase()) == digest(purchase())
    assert len(digest(purchase())) == 64
    # Re-entered CVC and card number formatting do not make it another request.
    assert digest(deposit(card=card(cvc="999"))) == digest(deposit())
    # A purchase without a funding source is paid by card.
    assert digest(purchase(funding_source=FundingSource.CARD)) == digest(purchase())
    # -0.0 and 0.0 are the same coordinate.
    assert digest(purchase(merchant=merchant(latitude=-0.0))) == digest(
        purchase(merchant=merchant(latitude=0.0))
    )


@pytest.mark.parametrize(
    "changed",
    [
        purchase(user_id="user-2"),
        purchase(idempotency_key="key-2"),
        purchase(amount=Money("USD", 1001)),
        purchase(amount=Money("EUR", 1000)),
        purchase(description="gift"),
        purchase(card=card(exp_month=11)),
        purchase(card=card(exp_year=2034)),
        purchase(card=dataclasses.replace(card(), holder_name="John Roe")),
        purchase(merchant=merchant(merchant_id="m-101")),
        purchase(merchant=merchant(name="Green Bottle")),
        purchase(merchant=merchant(category_code="5812")),
        purchase(merchant=merchant(country_code="JP")),
        purchase(merchant=merchant(city="Busan")),
        purchase(merchant=merchant(latitude=37.5666)),
        purchase(merchant=merchant(longitude=126.979)),
        deposit(merchant=merchant()),
    ],
)
def test_any_parameter_change_gives_another_fingerprint(changed: CreatePaymentCommand) -> None:
    assert digest(changed) != digest(purchase())


def test_the_card_enters_the_fingerprint_only_through_its_keyed_fingerprint() -> None:
    assert digest(purchase(), "b" * 64) != digest(purchase(), "a" * 64)
    wallet = purchase(funding_source=FundingSource.WALLET, card=None)
    assert digest(wallet, None) != digest(purchase())
    with pytest.raises(ValueError, match="card_fingerprint"):
        request_fingerprint(purchase(), card_fingerprint=None)
    with pytest.raises(ValueError, match="card_fingerprint"):
        request_fingerprint(wallet, card_fingerprint=FP)


def test_domain_imports_only_the_standard_library() -> None:
    # payrail_common modules that are standard library only themselves.
    allowed_prefixes = (
        "payment_svc.domain",
        "payrail_common.fields",
        "payrail_common.reasons",
        "payrail_common.failure_codes",
    )
    domain_dir = Path(__file__).resolve().parents[3] / "payment_svc" / "domain"
    modules = sorted(domain_dir.glob("*.py"))
    assert modules
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or name.startswith(allowed_prefixes), (
                    f"{module.name} imports {name}"
                )
