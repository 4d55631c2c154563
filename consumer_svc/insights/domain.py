"""The pure rules of loyalty and benefits (standard library only): tiers, the catalog's
rate for a card in a category, the best card, the extra reward and the tip's message."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from payrail_common.fields import FieldViolation, storable_text_violation
from payrail_common.reasons import Reason

# ---------------------------------------------------------------- errors


class InsightsError(Exception):
    """Base of the insights process's domain errors (mapped to gRPC in api.py), each
    with the reason a client hears (payrail_common.reasons)."""

    # A subclass that no mapping names is a fault of the server: INTERNAL.
    reason: Reason = Reason.INTERNAL_ERROR


class InvalidArgument(InsightsError):
    reason = Reason.VALIDATION_FAILED

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = tuple(violations)


def invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation(field, description)])


class NotFound(InsightsError):
    reason = Reason.NOT_FOUND


class PermissionDenied(InsightsError):
    reason = Reason.ADMIN_ROLE_REQUIRED


# ---------------------------------------------------------------- paging

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100


def page_size(requested: int) -> int:
    """0 means the default; 1..100 is taken as is; anything else is refused."""
    if requested == 0:
        return PAGE_SIZE_DEFAULT
    if not 1 <= requested <= PAGE_SIZE_MAX:
        raise invalid("page_size", f"must be between 0 and {PAGE_SIZE_MAX}")
    return requested


# ---------------------------------------------------------------- loyalty


class TierConfigError(ValueError):
    """PAYRAIL_LOYALTY_TIERS cannot be used."""


@dataclass(frozen=True)
class Tier:
    name: str
    # Visits needed to reach this tier (at least 1).
    visits_min: int


_TIER_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")


def parse_tiers(spec: str) -> tuple[Tier, ...]:
    """``"MEMBER:1,VIP:5"`` -> tiers in ascending order of visits; refuses duplicates,
    unordered thresholds and names that are not upper-case words."""
    tiers: list[Tier] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, raw = item.partition(":")
        name = name.strip()
        if not sep or not _TIER_NAME.match(name):
            raise TierConfigError(f"tier {item!r} must look like NAME:visits, e.g. VIP:5")
        try:
            visits_min = int(raw.strip())
        except ValueError:
            raise TierConfigError(f"tier {item!r}: visits must be an integer") from None
        if visits_min < 1:
            raise TierConfigError(f"tier {item!r}: visits must be at least 1")
        if tiers and visits_min <= tiers[-1].visits_min:
            raise TierConfigError("tiers must be listed in increasing order of visits")
        if any(t.name == name for t in tiers):
            raise TierConfigError(f"tier {name} is listed twice")
        tiers.append(Tier(name, visits_min))
    if not tiers:
        raise TierConfigError("at least one tier is needed, e.g. MEMBER:1,VIP:5")
    return tuple(tiers)


@dataclass(frozen=True)
class TierStanding:
    tier: str
    next_tier: str
    visits_to_next_tier: int


def tier_standing(visits: int, tiers: Sequence[Tier]) -> TierStanding:
    """The tier reached with this many visits, and what the next one needs."""
    reached = ""
    for tier in tiers:
        if visits >= tier.visits_min:
            reached = tier.name
        else:
            return TierStanding(reached, tier.name, tier.visits_min - visits)
    return TierStanding(reached, "", 0)


# ---------------------------------------------------------------- benefits

BRANDS = ("VISA", "MASTERCARD", "AMERICAN_EXPRESS", "DISCOVER")
REWARD_KINDS = ("CASHBACK", "POINTS")
WILDCARD = "*"
BPS_PER_UNIT = 10_000
RATE_BPS_MAX = 10_000
DESCRIPTION_MAX = 200
_CATEGORY = re.compile(r"^[0-9]{4}$")


@dataclass(frozen=True)
class Benefit:
    brand: str  # one of BRANDS
    category_code: str  # four digits or "*"
    reward_kind: str  # one of REWARD_KINDS
    rate_bps: int
    description: str = ""
    update_time: datetime | None = None


def validate_benefit(benefit: Benefit) -> None:
    """Refuse a catalog entry the catalog cannot hold, naming every bad field."""
    violations: list[FieldViolation] = []
    if benefit.brand not in BRANDS:
        violations.append(FieldViolation("benefit.brand", "must be a card brand"))
    if benefit.category_code != WILDCARD and not _CATEGORY.match(benefit.category_code):
        violations.append(
            FieldViolation("benefit.category_code", 'must be four digits (an MCC) or "*"')
        )
    if benefit.reward_kind not in REWARD_KINDS:
        violations.append(FieldViolation("benefit.reward_kind", "must be CASHBACK or POINTS"))
    if not 1 <= benefit.rate_bps <= RATE_BPS_MAX:
        violations.append(FieldViolation("benefit.rate_bps", "must be between 1 and 10000"))
    if len(benefit.description) > DESCRIPTION_MAX:
        violations.append(
            FieldViolation("benefit.description", f"must be at most {DESCRIPTION_MAX} characters")
        )
    elif (
        unstorable := storable_text_violation("benefit.description", benefit.description)
    ) is not None:
        violations.append(unstorable)
    if violations:
        raise InvalidArgument(violations)


def benefit_for(brand: str, category_code: str, catalog: Iterable[Benefit]) -> Benefit | None:
    """The entry that applies to a card of ``brand`` in ``category_code``: the exact
    category beats the "*" entry."""
    wildcard: Benefit | None = None
    for benefit in catalog:
        if benefit.brand != brand:
            continue
        if benefit.category_code == category_code and category_code != WILDCARD:
            return benefit
        if benefit.category_code == WILDCARD:
            wildcard = benefit
    return wildcard


def rate_bps(brand: str, category_code: str, catalog: Iterable[Benefit]) -> int:
    """What a card of ``brand`` earns in the category, in basis points (0 for nothing).
    Cashback and points compare alike: one point is worth one minor unit."""
    benefit = benefit_for(brand, category_code, catalog)
    return 0 if benefit is None else benefit.rate_bps


def reward_minor(amount_minor: int, rate: int) -> int:
    """The reward on an amount, in minor units, rounded down (integers only)."""
    return max(0, amount_minor) * rate // BPS_PER_UNIT


def extra_reward_minor(amount_minor: int, used_rate_bps: int, better_rate_bps: int) -> int:
    """What the better card would have earned minus what the card used earned, each
    rounded down as it would have been paid."""
    return reward_minor(amount_minor, better_rate_bps) - reward_minor(amount_minor, used_rate_bps)


@dataclass(frozen=True)
class Card:
    """A card as tips show it: brand and masked number, never the number."""

    brand: str
    masked_number: str

    @property
    def last4(self) -> str:
        return self.masked_number[-4:]


@dataclass(frozen=True)
class KnownCard:
    card: Card
    last_use_time: datetime


def best_card(
    known: Iterable[KnownCard], category_code: str, catalog: Sequence[Benefit]
) -> tuple[Card, int] | None:
    """The user's card that earns most in the category, with its rate; among equals the
    most recently used, then the smallest (brand, number) so the choice is stable. None
    when no card earns anything."""
    ranked = sorted(
        ((rate_bps(k.card.brand, category_code, catalog), k.last_use_time, k.card) for k in known),
        key=lambda r: (-r[0], -r[1].timestamp(), r[2].brand, r[2].masked_number),
    )
    if not ranked or ranked[0][0] == 0:
        return None
    return ranked[0][2], ranked[0][0]


def percent(rate: int) -> str:
    """Basis points as a short percentage: 300 -> "3%", 150 -> "1.5%", 125 -> "1.25%"."""
    whole, rest = divmod(rate, 100)
    if rest == 0:
        return f"{whole}%"
    return f"{whole}.{rest:02d}".rstrip("0") + "%"


def tip_message(better: Card, better_rate_bps: int, used_rate_bps: int, points: bool) -> str:
    """E.g. "The card ending 1234 would have earned 3% here (you earned 1%)"."""
    kind = " in points" if points else ""
    return (
        f"The card ending {better.last4} would have earned {percent(better_rate_bps)}{kind}"
        f" here (you earned {percent(used_rate_bps)})"
    )


@dataclass(frozen=True)
class Tip:
    used_card: Card
    used_rate_bps: int
    better_card: Card
    better_rate_bps: int
    extra_reward_minor: int
    message: str


def advise(
    *,
    used: Card,
    known: Iterable[KnownCard],
    category_code: str,
    amount_minor: int,
    catalog: Sequence[Benefit],
) -> Tip | None:
    """A tip when another card the user has paid with would have earned more on this
    purchase; None when the card used was (one of) the best, or the difference rounds
    down to nothing."""
    others = [k for k in known if k.card != used]
    best = best_card(others, category_code, catalog)
    if best is None:
        return None
    better, better_rate = best
    used_rate = rate_bps(used.brand, category_code, catalog)
    extra = extra_reward_minor(amount_minor, used_rate, better_rate)
    if better_rate <= used_rate or extra <= 0:
        return None
    benefit = benefit_for(better.brand, category_code, catalog)
    points = benefit is not None and benefit.reward_kind == "POINTS"
    return Tip(
        used_card=used,
        used_rate_bps=used_rate,
        better_card=better,
        better_rate_bps=better_rate,
        extra_reward_minor=extra,
        message=tip_message(better, better_rate, used_rate, points),
    )


@dataclass(frozen=True)
class CardUse:
    """A purchase paid with a card, as the benefit rules look at it."""

    user_id: str
    card: Card
    category_code: str
    amount_minor: int
    use_time: datetime


def advise_in_turn(
    uses: Sequence[CardUse],
    known: Mapping[str, Iterable[KnownCard]],
    catalog: Sequence[Benefit],
) -> list[Tip | None]:
    """The tip (or None) for each purchase of ``uses``, as if they were handled one after
    another: each is compared with the cards its user had paid with before it — those in
    ``known`` (by user id) and those of the earlier purchases in ``uses`` — and a card's
    last use only ever moves forward, as it does in the store."""
    cards: dict[str, dict[Card, KnownCard]] = {
        user_id: {k.card: k for k in user_cards} for user_id, user_cards in known.items()
    }
    tips: list[Tip | None] = []
    for use in uses:
        mine = cards.setdefault(use.user_id, {})
        tips.append(
            advise(
                used=use.card,
                known=mine.values(),
                category_code=use.category_code,
                amount_minor=use.amount_minor,
                catalog=catalog,
            )
        )
        before = mine.get(use.card)
        if before is None or use.use_time > before.last_use_time:
            mine[use.card] = KnownCard(use.card, use.use_time)
    return tips


def brand_alias(name: str) -> str:
    """Operator spellings of a brand -> the catalog's name (``amex`` -> AMERICAN_EXPRESS)."""
    upper = name.strip().upper().replace(" ", "_").removeprefix("CARD_BRAND_")
    aliases: Mapping[str, str] = {"AMEX": "AMERICAN_EXPRESS", "MC": "MASTERCARD"}
    return aliases.get(upper, upper)
