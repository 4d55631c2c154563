"""The withdrawal_card rule and the velocity card scope as pure functions, and the
settings that turn them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from consumer_svc.config import Settings
from consumer_svc.risk.rules import (
    Decision,
    DecisionDeferred,
    Funding,
    History,
    PaymentFacts,
    RiskPolicy,
    assess,
)
from payrail_common.config import ConfigError

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
POLICY = RiskPolicy()


def payment(kind: str, card: str = "fp-b") -> PaymentFacts:
    return PaymentFacts(
        payment_id="p-now",
        user_id="u-1",
        card_fingerprint=card,
        amount_minor=4000,
        currency_code="USD",
        at=T0,
        kind=kind,
    )


def test_a_withdrawal_to_a_card_that_never_funded_the_wallet_is_denied_and_says_why() -> None:
    assessment = assess(payment("WITHDRAWAL"), History(funding=Funding.NEVER), POLICY)
    assert assessment.decision is Decision.DENY
    assert assessment.rule == "withdrawal_card"
    assert assessment.explanation == (
        "withdrawal_card: withdrawals are paid out only to a card that has funded this"
        " wallet, and no deposit with this card has completed for this user (withdraw to a"
        " card you deposited with)"
    )


def test_a_withdrawal_to_a_funding_card_is_approved() -> None:
    assessment = assess(payment("WITHDRAWAL"), History(funding=Funding.FUNDED), POLICY)
    assert assessment.decision is Decision.APPROVE


def test_unknown_funding_is_not_funded() -> None:
    # Not looked up while the rule is on (a bug elsewhere) must not open the cash-out path.
    assessment = assess(payment("WITHDRAWAL"), History(), POLICY)
    assert (assessment.decision, assessment.rule) == (Decision.DENY, "withdrawal_card")


def test_a_withdrawal_while_a_deposit_with_its_card_is_under_way_waits() -> None:
    with pytest.raises(DecisionDeferred):
        assess(payment("WITHDRAWAL"), History(funding=Funding.IN_FLIGHT), POLICY)


def test_a_deferral_gives_way_to_a_denial_by_another_rule() -> None:
    history = History(funding=Funding.IN_FLIGHT, recent_user_payments=POLICY.velocity_max_per_user)
    assessment = assess(payment("WITHDRAWAL"), history, POLICY)
    assert (assessment.decision, assessment.rule) == (Decision.DENY, "velocity")


@pytest.mark.parametrize("kind", ["DEPOSIT", "PURCHASE", ""])
def test_only_withdrawals_are_judged_by_their_card(kind: str) -> None:
    assert assess(payment(kind), History(funding=Funding.NEVER), POLICY).decision is (
        Decision.APPROVE
    )


def test_the_rule_can_be_turned_off() -> None:
    off = replace(POLICY, withdrawal_funding_card_only=False)
    assert assess(payment("WITHDRAWAL"), History(funding=Funding.NEVER), off).decision is (
        Decision.APPROVE
    )


def test_velocity_says_whose_payments_with_the_card_it_counted() -> None:
    over = History(recent_card_payments=POLICY.velocity_max_per_card)
    per_user = assess(payment("DEPOSIT"), over, replace(POLICY, velocity_card_scope="user"))
    assert per_user.explanation == (
        "velocity: 6 payments with this card by this user within 10 min (at most 5 allowed)"
    )
    everyone = assess(payment("DEPOSIT"), over, POLICY)  # the default: all users
    assert everyone.explanation == (
        "velocity: 6 payments with this card within 10 min (at most 5 allowed)"
    )


def test_settings_default_to_production_and_take_the_development_scope() -> None:
    defaults = Settings.from_env({})
    assert defaults.risk.velocity_card_scope == "all_users"
    assert defaults.risk.withdrawal_funding_card_only is True
    development = Settings.from_env(
        {
            "PAYRAIL_RISK_VELOCITY_CARD_SCOPE": "user",
            "PAYRAIL_RISK_WITHDRAWAL_FUNDING_CARD_ONLY": "0",
        }
    )
    assert development.risk.velocity_card_scope == "user"
    assert development.risk.withdrawal_funding_card_only is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PAYRAIL_RISK_VELOCITY_CARD_SCOPE", "everyone"),
        ("PAYRAIL_RISK_WITHDRAWAL_FUNDING_CARD_ONLY", "maybe"),
    ],
)
def test_bad_risk_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
