"""The risk rules as pure functions: each decision and its explanation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumer_svc.risk.rules import (
    Decision,
    History,
    Location,
    PaymentFacts,
    RiskPolicy,
    assess,
    haversine_km,
)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SEOUL = (37.5665, 126.9780)
NEW_YORK = (40.7128, -74.0060)
POLICY = RiskPolicy()


def facts(
    *, at: datetime = T0, where: tuple[float, float] | None = None, amount: int = 1000
) -> PaymentFacts:
    location = None
    if where is not None:
        location = Location(where[0], where[1], at, "New York", "US", "p-now")
    return PaymentFacts(
        payment_id="p-now",
        user_id="u-1",
        card_fingerprint="fp-1",
        amount_minor=amount,
        currency_code="USD",
        at=at,
        location=location,
    )


def seoul(at: datetime) -> Location:
    return Location(SEOUL[0], SEOUL[1], at, "Seoul", "KR", "p-before")


def test_haversine_seoul_to_new_york() -> None:
    # The great-circle distance is about 11,050 km.
    assert haversine_km(*SEOUL, *NEW_YORK) == pytest.approx(11_050, rel=0.01)
    assert haversine_km(*SEOUL, *SEOUL) == 0


def test_nothing_known_is_approved_with_no_findings() -> None:
    assessment = assess(facts(where=NEW_YORK), History(), POLICY)
    assert assessment.decision is Decision.APPROVE
    assert assessment.findings == ()
    assert assessment.rule == ""


def test_seoul_then_new_york_ten_minutes_later_needs_review() -> None:
    history = History(last_user_location=seoul(T0 - timedelta(minutes=10)))
    assessment = assess(facts(where=NEW_YORK), history, POLICY)
    assert assessment.decision is Decision.REVIEW
    assert assessment.rule == "impossible_travel"
    # The explanation names the place, the distance, the time and the speed.
    assert "Seoul, KR" in assessment.explanation
    assert "11,0" in assessment.explanation
    assert "10 min" in assessment.explanation
    assert "66,3" in assessment.explanation  # ~66,300 km/h
    assert "900 km/h" in assessment.explanation


def test_a_plausible_flight_is_approved() -> None:
    # 11,050 km in 15 hours is ~737 km/h: an airliner.
    history = History(last_user_location=seoul(T0 - timedelta(hours=15)))
    assert assess(facts(where=NEW_YORK), history, POLICY).decision is Decision.APPROVE


def test_the_speed_limit_is_configurable() -> None:
    history = History(last_user_location=seoul(T0 - timedelta(hours=15)))
    slow = RiskPolicy(max_speed_kmh=500)
    assert assess(facts(where=NEW_YORK), history, slow).decision is Decision.REVIEW


def test_the_same_card_elsewhere_counts_too() -> None:
    history = History(last_card_location=seoul(T0 - timedelta(minutes=1)))
    assessment = assess(facts(where=NEW_YORK), history, POLICY)
    assert assessment.decision is Decision.REVIEW
    assert "card's purchase in Seoul" in assessment.explanation


def test_same_instant_far_away_is_reviewed_and_said_so() -> None:
    history = History(last_user_location=seoul(T0))
    assessment = assess(facts(where=NEW_YORK), history, POLICY)
    assert assessment.decision is Decision.REVIEW
    assert "instantly" in assessment.explanation


def test_travel_is_not_judged_without_a_card_present_location() -> None:
    history = History(last_user_location=seoul(T0 - timedelta(minutes=1)))
    assert assess(facts(where=None), history, POLICY).decision is Decision.APPROVE


def test_nearby_shops_are_not_travel() -> None:
    near = Location(SEOUL[0] + 0.05, SEOUL[1], T0, "Seoul", "KR", "p-now")
    history = History(last_user_location=seoul(T0 - timedelta(seconds=5)))
    payment = facts(where=(near.latitude, near.longitude))
    assert assess(payment, history, POLICY).decision is Decision.APPROVE


def test_velocity_per_card_denies_above_the_limit() -> None:
    at_limit = History(recent_card_payments=POLICY.velocity_max_per_card - 1)
    assert assess(facts(), at_limit, POLICY).decision is Decision.APPROVE
    over = History(recent_card_payments=POLICY.velocity_max_per_card)
    assessment = assess(facts(), over, POLICY)
    assert assessment.decision is Decision.DENY
    assert assessment.rule == "velocity"
    assert assessment.explanation == (
        "velocity: 6 payments with this card within 10 min (at most 5 allowed)"
    )


def test_velocity_per_user_denies_above_the_limit() -> None:
    over = History(recent_user_payments=POLICY.velocity_max_per_user)
    assessment = assess(facts(), over, POLICY)
    assert assessment.decision is Decision.DENY
    assert "11 payments by this user" in assessment.explanation


def test_amount_far_above_usual_needs_review() -> None:
    usual = History(recent_amounts=[1000, 1200, 900, 1100])
    assert assess(facts(amount=10_500), usual, POLICY).decision is Decision.APPROVE
    assessment = assess(facts(amount=50_000), usual, POLICY)
    assert assessment.decision is Decision.REVIEW
    assert assessment.rule == "amount_outlier"
    assert "47.6x" in assessment.explanation
    assert "median of the last 4: 1050" in assessment.explanation


def test_amount_rule_waits_for_enough_history() -> None:
    thin = History(recent_amounts=[100, 100])
    assert assess(facts(amount=1_000_000), thin, POLICY).decision is Decision.APPROVE


def test_deny_wins_over_review_and_both_are_kept() -> None:
    history = History(
        last_user_location=seoul(T0 - timedelta(minutes=1)),
        recent_card_payments=POLICY.velocity_max_per_card,
    )
    assessment = assess(facts(where=NEW_YORK), history, POLICY)
    assert assessment.decision is Decision.DENY
    assert assessment.rule == "velocity"
    assert {f.rule for f in assessment.findings} == {"velocity", "impossible_travel"}
    assert assessment.explanation.startswith("velocity:")


def test_user_and_card_travel_findings_are_not_repeated() -> None:
    before = seoul(T0 - timedelta(minutes=1))
    history = History(last_user_location=before, last_card_location=before)
    assessment = assess(facts(where=NEW_YORK), history, POLICY)
    assert [f.rule for f in assessment.findings] == ["impossible_travel"]
