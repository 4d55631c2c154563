"""The risk rules: pure functions from a payment and what is known before it to a
decision that explains itself.

- impossible_travel: two consecutive card-present purchases (of the same user, or of the
  same card) whose distance over the time between them means travelling faster than
  ``max_speed_kmh`` -> REVIEW (the owner may really be there: ask them).
- velocity: more than ``velocity_max_per_card`` payments with one card, or more than
  ``velocity_max_per_user`` payments of one user, within ``velocity_window_s`` -> DENY.
  A card's payments are counted across all users (``velocity_card_scope="all_users"``,
  the default: one card used from many accounts is card testing) or per user
  (``"user"``, which ``make up`` sets for development: a shared sandbox test card is not
  one person's burst).
- withdrawal_card: a withdrawal is paid out only to a card that funded this user's wallet
  (one of their deposits with it COMPLETED) -> DENY otherwise, the classic stolen-card
  cash-out. While a deposit with that card is still under way the rules cannot tell yet:
  :class:`DecisionDeferred` (nothing is recorded; the payment is decided again later).
- amount_outlier: an amount above ``amount_factor`` x the user's usual amount (the median
  of their recent payments in that currency, once there are ``amount_min_history``) ->
  REVIEW.

The strictest finding wins (DENY over REVIEW over APPROVE); every finding is kept on the
assessment with a sentence saying why. A denying rule's name is the payment's
``failure_code`` (:mod:`payrail_common.failure_codes`).
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from payrail_common import failure_codes

EARTH_RADIUS_KM = 6371.0088


class Decision(enum.Enum):
    APPROVE = "APPROVE"
    REVIEW = "REVIEW"
    DENY = "DENY"


_SEVERITY = {Decision.APPROVE: 0, Decision.REVIEW: 1, Decision.DENY: 2}

CARD_SCOPES = ("user", "all_users")


class Funding(enum.Enum):
    """What is known of a withdrawal's card as a source of its user's funds."""

    NOT_CHECKED = "NOT_CHECKED"  # not looked up (not a withdrawal, or the rule is off)
    FUNDED = "FUNDED"  # a deposit of this user with this card COMPLETED
    IN_FLIGHT = "IN_FLIGHT"  # none completed, but one is still under way
    NEVER = "NEVER"  # no deposit of this user with this card completed or is under way


class DecisionDeferred(Exception):
    """The rules cannot decide yet: a fact they need is still being settled."""


@dataclass(frozen=True)
class RiskPolicy:
    max_speed_kmh: float = 900.0
    velocity_window_s: int = 600
    velocity_max_per_card: int = 5
    velocity_max_per_user: int = 10
    # Whose payments with a card count towards velocity_max_per_card: "all_users"
    # (everyone's, the safe default) or "user" (this user's; development sets it).
    velocity_card_scope: str = "all_users"
    # Withdrawals only to a card with a COMPLETED deposit of the same user.
    withdrawal_funding_card_only: bool = True
    amount_factor: float = 10.0
    amount_min_history: int = 3
    # How many recent payments make up "usual".
    amount_history: int = 20


@dataclass(frozen=True)
class Location:
    """Where and when a card-present purchase happened."""

    latitude: float
    longitude: float
    at: datetime
    city: str = ""
    country_code: str = ""
    payment_id: str = ""

    @property
    def place(self) -> str:
        if self.city and self.country_code:
            return f"{self.city}, {self.country_code}"
        return self.city or self.country_code or f"({self.latitude:.4f}, {self.longitude:.4f})"


@dataclass(frozen=True)
class PaymentFacts:
    """What the rules look at of the payment being assessed."""

    payment_id: str
    user_id: str
    card_fingerprint: str  # "" for wallet-funded payments
    amount_minor: int
    currency_code: str
    at: datetime
    # Set for card-present purchases (a card purchase at a merchant with coordinates).
    location: Location | None = None
    # DEPOSIT, WITHDRAWAL or PURCHASE ("" when unknown).
    kind: str = ""


@dataclass(frozen=True)
class History:
    """What was known before the payment (never including the payment itself)."""

    last_user_location: Location | None = None
    last_card_location: Location | None = None
    # Payments within the velocity window before this one.
    recent_card_payments: int = 0
    recent_user_payments: int = 0
    # The user's recent amounts in the payment's currency, newest first.
    recent_amounts: Sequence[int] = ()
    # Whether the withdrawal's card funded the user's wallet.
    funding: Funding = Funding.NOT_CHECKED


@dataclass(frozen=True)
class Finding:
    rule: str
    decision: Decision
    explanation: str


@dataclass(frozen=True)
class Assessment:
    decision: Decision
    findings: tuple[Finding, ...]

    @property
    def rule(self) -> str:
        """The rule that decided: the first finding as severe as the decision."""
        for finding in self.findings:
            if finding.decision is self.decision:
                return finding.rule
        return ""

    @property
    def explanation(self) -> str:
        deciding = [f for f in self.findings if f.decision is self.decision]
        if not deciding:
            return "no rule raised a concern"
        return "; ".join(f"{f.rule}: {f.explanation}" for f in deciding)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def impossible_travel(
    facts: PaymentFacts, previous: Location | None, policy: RiskPolicy, subject: str
) -> Finding | None:
    here = facts.location
    if here is None or previous is None or previous.payment_id == facts.payment_id:
        return None
    distance = haversine_km(previous.latitude, previous.longitude, here.latitude, here.longitude)
    # Same town: GPS noise and neighbouring shops are not travel.
    if distance < 50:
        return None
    seconds = abs((here.at - previous.at).total_seconds())
    speed = math.inf if seconds == 0 else distance / (seconds / 3600)
    if speed <= policy.max_speed_kmh:
        return None
    shown_speed = "instantly" if math.isinf(speed) else f"{speed:,.0f} km/h"
    return Finding(
        "impossible_travel",
        Decision.REVIEW,
        f"{distance:,.0f} km from the {subject}'s purchase in {previous.place}"
        f" {_duration(seconds)} earlier ({shown_speed}; at most"
        f" {policy.max_speed_kmh:,.0f} km/h is plausible)",
    )


def velocity(facts: PaymentFacts, history: History, policy: RiskPolicy) -> Finding | None:
    window = _duration(policy.velocity_window_s)
    card_count = history.recent_card_payments + 1
    if facts.card_fingerprint and card_count > policy.velocity_max_per_card:
        whose = " by this user" if policy.velocity_card_scope == "user" else ""
        return Finding(
            failure_codes.VELOCITY,
            Decision.DENY,
            f"{card_count} payments with this card{whose} within {window}"
            f" (at most {policy.velocity_max_per_card} allowed)",
        )
    user_count = history.recent_user_payments + 1
    if user_count > policy.velocity_max_per_user:
        return Finding(
            failure_codes.VELOCITY,
            Decision.DENY,
            f"{user_count} payments by this user within {window}"
            f" (at most {policy.velocity_max_per_user} allowed)",
        )
    return None


def withdrawal_card(facts: PaymentFacts, history: History, policy: RiskPolicy) -> Finding | None:
    """DENY a withdrawal to a card that never funded the user's wallet; raise
    DecisionDeferred while a deposit with it is still under way."""
    if (
        not policy.withdrawal_funding_card_only
        or facts.kind != "WITHDRAWAL"
        or not facts.card_fingerprint
        or history.funding is Funding.FUNDED
    ):
        return None
    if history.funding is Funding.IN_FLIGHT:
        raise DecisionDeferred("a deposit of this user with this card is still under way")
    # NOT_CHECKED with the rule on is treated as NEVER: unknown is not funded.
    return Finding(
        failure_codes.WITHDRAWAL_CARD,
        Decision.DENY,
        "withdrawals are paid out only to a card that has funded this wallet, and no"
        " deposit with this card has completed for this user (withdraw to a card you"
        " deposited with)",
    )


def usual_amount(amounts: Sequence[int]) -> int:
    return int(statistics.median(amounts))


def amount_outlier(facts: PaymentFacts, history: History, policy: RiskPolicy) -> Finding | None:
    amounts = list(history.recent_amounts)[: policy.amount_history]
    if len(amounts) < policy.amount_min_history:
        return None
    usual = usual_amount(amounts)
    if usual <= 0 or facts.amount_minor <= policy.amount_factor * usual:
        return None
    return Finding(
        "amount_outlier",
        Decision.REVIEW,
        f"{facts.amount_minor / usual:,.1f}x the user's usual {facts.currency_code} amount"
        f" (median of the last {len(amounts)}: {usual} minor units; more than"
        f" {policy.amount_factor:g}x needs the owner's confirmation)",
    )


def assess(facts: PaymentFacts, history: History, policy: RiskPolicy) -> Assessment:
    """The decision, or DecisionDeferred when a rule needs a fact still being settled and
    no other rule denies the payment anyway."""
    deferred: DecisionDeferred | None = None
    try:
        funding = withdrawal_card(facts, history, policy)
    except DecisionDeferred as exc:
        deferred, funding = exc, None
    candidates = (
        velocity(facts, history, policy),
        funding,
        impossible_travel(facts, history.last_user_location, policy, "user"),
        impossible_travel(facts, history.last_card_location, policy, "card"),
        amount_outlier(facts, history, policy),
    )
    findings: list[Finding] = []
    for finding in candidates:
        # One travel finding is enough when the user's and the card's last place agree.
        if finding is not None and finding.rule not in {f.rule for f in findings}:
            findings.append(finding)
    decision = max(
        (f.decision for f in findings), key=_SEVERITY.__getitem__, default=Decision.APPROVE
    )
    if deferred is not None and decision is not Decision.DENY:
        raise deferred
    return Assessment(decision, tuple(findings))
