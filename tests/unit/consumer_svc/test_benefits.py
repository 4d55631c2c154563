"""Benefits' pure parts: the catalog's rate (exact category beats "*"), the best card,
the extra reward in integer minor units, and the tip's message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumer_svc.insights.domain import (
    Benefit,
    Card,
    InvalidArgument,
    KnownCard,
    advise,
    best_card,
    brand_alias,
    extra_reward_minor,
    percent,
    rate_bps,
    tip_message,
    validate_benefit,
)

CATALOG = [
    Benefit("VISA", "5812", "CASHBACK", 300),
    Benefit("VISA", "*", "CASHBACK", 50),
    Benefit("MASTERCARD", "*", "CASHBACK", 100),
    Benefit("AMERICAN_EXPRESS", "5812", "POINTS", 400),
]
VISA = Card("VISA", "424242******4242")
MASTERCARD = Card("MASTERCARD", "555555******4444")
AMEX = Card("AMERICAN_EXPRESS", "378282*****0005")
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def known(*cards: Card) -> list[KnownCard]:
    return [KnownCard(card, T0 + timedelta(minutes=i)) for i, card in enumerate(cards)]


def test_exact_category_beats_the_wildcard() -> None:
    assert rate_bps("VISA", "5812", CATALOG) == 300
    assert rate_bps("VISA", "5411", CATALOG) == 50
    assert rate_bps("MASTERCARD", "5812", CATALOG) == 100
    assert rate_bps("AMERICAN_EXPRESS", "5411", CATALOG) == 0
    assert rate_bps("DISCOVER", "5812", CATALOG) == 0
    # Order in the catalog does not matter.
    assert rate_bps("VISA", "5812", list(reversed(CATALOG))) == 300


def test_best_card_is_the_highest_rate_for_the_category() -> None:
    assert best_card(known(VISA, MASTERCARD, AMEX), "5812", CATALOG) == (AMEX, 400)
    assert best_card(known(VISA, MASTERCARD, AMEX), "5411", CATALOG) == (MASTERCARD, 100)
    assert best_card(known(AMEX), "5411", CATALOG) is None
    assert best_card([], "5812", CATALOG) is None


def test_best_card_among_equals_is_the_most_recently_used() -> None:
    other_visa = Card("VISA", "400000******0077")
    assert best_card(known(VISA, other_visa), "5812", CATALOG) == (other_visa, 300)
    assert best_card(known(other_visa, VISA), "5812", CATALOG) == (VISA, 300)


def test_extra_reward_is_the_difference_of_rounded_down_rewards() -> None:
    assert extra_reward_minor(10_000, 100, 300) == 200
    # 1050 at 3% = 31.5 -> 31; at 1% = 10.5 -> 10.
    assert extra_reward_minor(1050, 100, 300) == 21
    # 75 at 3% = 2.25 -> 2; at 1% = 0.75 -> 0: the user would really have got 2 more.
    assert extra_reward_minor(75, 100, 300) == 2
    assert extra_reward_minor(10, 100, 300) == 0
    assert extra_reward_minor(9_223_372_036_854, 0, 10_000) == 9_223_372_036_854
    assert isinstance(extra_reward_minor(1, 1, 2), int)


def test_percent_and_message() -> None:
    assert [percent(r) for r in (0, 1, 50, 100, 125, 150, 300, 10_000)] == [
        "0%",
        "0.01%",
        "0.5%",
        "1%",
        "1.25%",
        "1.5%",
        "3%",
        "100%",
    ]
    card = Card("VISA", "411111******1234")
    assert (
        tip_message(card, 300, 100, points=False)
        == "The card ending 1234 would have earned 3% here (you earned 1%)"
    )
    assert tip_message(card, 400, 0, points=True) == (
        "The card ending 1234 would have earned 4% in points here (you earned 0%)"
    )


def test_a_tip_when_a_card_used_before_earns_more() -> None:
    tip = advise(
        used=MASTERCARD,
        known=known(VISA, MASTERCARD),
        category_code="5812",
        amount_minor=5000,
        catalog=CATALOG,
    )
    assert tip is not None
    assert (tip.better_card, tip.better_rate_bps, tip.used_rate_bps) == (VISA, 300, 100)
    assert tip.extra_reward_minor == 100
    assert tip.message == "The card ending 4242 would have earned 3% here (you earned 1%)"


def test_no_tip_when_the_card_used_is_the_best_or_the_only_one() -> None:
    for used, cards in ((VISA, known(VISA, MASTERCARD)), (MASTERCARD, known(MASTERCARD))):
        assert (
            advise(used=used, known=cards, category_code="5812", amount_minor=5000, catalog=CATALOG)
            is None
        )
    # An equally good other card is no tip either.
    assert (
        advise(
            used=VISA,
            known=known(Card("VISA", "400000******0077")),
            category_code="5812",
            amount_minor=5000,
            catalog=CATALOG,
        )
        is None
    )


def test_no_tip_when_the_difference_rounds_down_to_nothing() -> None:
    assert (
        advise(
            used=MASTERCARD,
            known=known(VISA),
            category_code="5812",
            amount_minor=10,
            catalog=CATALOG,
        )
        is None
    )


def test_points_tip_names_points() -> None:
    tip = advise(
        used=VISA, known=known(AMEX), category_code="5812", amount_minor=2000, catalog=CATALOG
    )
    assert tip is not None
    assert tip.better_card == AMEX
    assert tip.extra_reward_minor == 20  # 80 points (worth 80 minor units) - 60 cashback
    assert tip.message == "The card ending 0005 would have earned 4% in points here (you earned 3%)"


@pytest.mark.parametrize(
    ("benefit", "field"),
    [
        (Benefit("PAYPAL", "5812", "CASHBACK", 100), "benefit.brand"),
        (Benefit("VISA", "58", "CASHBACK", 100), "benefit.category_code"),
        (Benefit("VISA", "**", "CASHBACK", 100), "benefit.category_code"),
        (Benefit("VISA", "5812", "MILES", 100), "benefit.reward_kind"),
        (Benefit("VISA", "5812", "CASHBACK", 0), "benefit.rate_bps"),
        (Benefit("VISA", "5812", "CASHBACK", 10_001), "benefit.rate_bps"),
        (Benefit("VISA", "5812", "CASHBACK", 100, "x" * 201), "benefit.description"),
    ],
)
def test_catalog_entries_are_validated(benefit: Benefit, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_benefit(benefit)
    assert [v.field for v in caught.value.violations] == [field]


def test_valid_entries_and_brand_spellings() -> None:
    validate_benefit(Benefit("VISA", "*", "POINTS", 10_000))
    validate_benefit(Benefit("DISCOVER", "0742", "CASHBACK", 1))
    assert brand_alias("amex") == "AMERICAN_EXPRESS"
    assert brand_alias("CARD_BRAND_VISA") == "VISA"
    assert brand_alias("Mastercard") == "MASTERCARD"
