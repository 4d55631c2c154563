from __future__ import annotations

import copy
import datetime
import pickle

import pytest

from payment_svc.domain.cards import (
    BRAND_LENGTHS,
    CVC_LENGTHS,
    CardBrand,
    CardInput,
    PanSecret,
    Secret,
    contains_card_number,
    detect_brand,
    is_expired,
    luhn_valid,
    mask_pan,
    normalize_card_number,
)
from payrail.payments.v1 import payments_pb2

TEST_CARDS = [
    ("4242424242424242", CardBrand.VISA),
    ("4000000000000002", CardBrand.VISA),
    ("5555555555554444", CardBrand.MASTERCARD),
    ("2223003122003222", CardBrand.MASTERCARD),
    ("378282246310005", CardBrand.AMERICAN_EXPRESS),
    ("6011111111111117", CardBrand.DISCOVER),
]


@pytest.mark.parametrize(("number", "brand"), TEST_CARDS)
def test_real_test_cards_pass_luhn_and_get_their_brand(number: str, brand: CardBrand) -> None:
    assert luhn_valid(number)
    assert detect_brand(number) is brand


@pytest.mark.parametrize(("number", "_brand"), TEST_CARDS)
def test_a_mistyped_digit_fails_luhn(number: str, _brand: CardBrand) -> None:
    last = int(number[-1])
    assert not luhn_valid(number[:-1] + str((last + 1) % 10))


@pytest.mark.parametrize(
    ("prefix", "brand"),
    [
        ("2221", CardBrand.MASTERCARD),
        ("2720", CardBrand.MASTERCARD),
        ("2220", None),
        ("2721", None),
        ("5100", CardBrand.MASTERCARD),
        ("5599", CardBrand.MASTERCARD),
        ("5600", None),
        ("3400", CardBrand.AMERICAN_EXPRESS),
        ("3700", CardBrand.AMERICAN_EXPRESS),
        ("3600", None),  # Diners Club: not accepted
        ("6011", CardBrand.DISCOVER),
        ("6440", CardBrand.DISCOVER),
        ("6499", CardBrand.DISCOVER),
        ("6500", CardBrand.DISCOVER),
        ("6430", None),
        ("6012", None),
        ("1234", None),
    ],
)
def test_brand_ranges(prefix: str, brand: CardBrand | None) -> None:
    assert detect_brand(prefix + "000000000000") is brand


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("4242 4242 4242 4242", "4242424242424242"),
        ("4242-4242-4242-4242", "4242424242424242"),
        (" 4242424242424242 ", "4242424242424242"),
    ],
)
def test_spaces_and_dashes_are_ignored(raw: str, digits: str) -> None:
    assert normalize_card_number(raw) == digits


@pytest.mark.parametrize(
    "raw",
    ["4242.4242.4242.4242", "4242424242424242x", "", "  ", "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "4" * 65, "4²42"],
)
def test_anything_else_makes_the_number_invalid(raw: str) -> None:
    assert normalize_card_number(raw) is None


def test_card_is_valid_through_the_last_day_of_its_expiry_month() -> None:
    today = datetime.date(2031, 5, 31)
    assert not is_expired(5, 2031, today=today)
    assert is_expired(4, 2031, today=today)
    assert is_expired(12, 2030, today=today)
    assert not is_expired(1, 2032, today=today)
    assert not is_expired(1, 2031, today=datetime.date(2031, 1, 1))
    assert is_expired(12, 2030, today=datetime.date(2031, 1, 1))


@pytest.mark.parametrize(
    ("digits", "masked"),
    [
        ("4242424242424242", "424242******4242"),
        ("378282246310005", "378282*****0005"),
        ("4242424242422", "424242***2422"),
        ("6011000000000000001", "601100*********0001"),
    ],
)
def test_mask_shows_only_bin_and_last_four(digits: str, masked: str) -> None:
    assert mask_pan(digits) == masked


def test_secret_never_shows_its_value() -> None:
    secret = Secret("123")
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert "123" not in shown
    assert "redacted" in repr(secret)
    assert secret.reveal() == "123"


def test_secret_equality_and_copies_without_leaks() -> None:
    assert Secret("123") == Secret("123")
    assert Secret("123") != Secret("124")
    assert copy.deepcopy(Secret("123")).reveal() == "123"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret("123"))
    with pytest.raises(TypeError):
        hash(Secret("123"))


def test_pan_secret_normalises_and_describes_the_card_without_revealing_it() -> None:
    pan = PanSecret.from_input("4242 4242 4242 4242")
    assert pan.reveal() == "4242424242424242"
    assert pan.brand is CardBrand.VISA
    assert (pan.bin6, pan.last4, pan.masked) == ("424242", "4242", "424242******4242")
    assert "4242424242424242" not in repr(pan)
    assert "4242424242424242" not in str(pan)
    assert pan == PanSecret("4242424242424242")


@pytest.mark.parametrize("raw", ["4242x4242424242424242", "42424242", "4" * 20])
def test_pan_secret_refuses_malformed_input_without_echoing_it(raw: str) -> None:
    with pytest.raises(ValueError, match="card number") as caught:
        PanSecret.from_input(raw)
    assert raw not in str(caught.value)


def test_card_input_repr_hides_number_cvc_and_holder() -> None:
    card = CardInput(Secret("4242424242424242"), 12, 2031, Secret("123"), "Jane Roe")
    shown = repr(card)
    assert "4242" not in shown
    assert "123" not in shown
    assert "Jane" not in shown
    assert "2031" in shown


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("my card 4242 4242 4242 4242 thanks", True),
        ("4242-4242-4242-4242", True),
        ("amex 378282246310005", True),
        ("order 4242424242424241", False),  # fails Luhn
        ("order 1234567890123456", False),  # no supported brand
        ("invoice 2031-05 room 12", False),
        ("", False),
    ],
)
def test_card_numbers_are_found_in_free_text(text: str, found: bool) -> None:
    assert contains_card_number(text) is found


def test_brands_mirror_the_protobuf_names_and_all_have_rules() -> None:
    proto_names: list[str] = payments_pb2.CardBrand.keys()
    proto = {name.removeprefix("CARD_BRAND_") for name in proto_names}
    proto.discard("UNSPECIFIED")
    assert {brand.value for brand in CardBrand} == proto
    assert set(BRAND_LENGTHS) == set(CVC_LENGTHS) == set(CardBrand)
