"""The loyalty and benefits groups a batch at a time, on in-memory stores that keep the
same rules as PostgreSQL (an inbox per group, one visit and one tip per payment): one
store call per batch, poison isolated per item, an event twice in one batch counted once,
and the benefit rules applied in batch order as if each purchase were handled alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from consumer_svc.consuming import Item, PoisonMessage
from consumer_svc.insights.domain import (
    Benefit,
    Card,
    CardUse,
    KnownCard,
    Tip,
    advise,
    advise_in_turn,
)
from consumer_svc.insights.handlers import BenefitsHandler, LoyaltyHandler
from consumer_svc.insights.store import CardPurchase, Visit
from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2 as pb

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
VISA = Card("VISA", "424242******4242")
MASTERCARD = Card("MASTERCARD", "555555******4444")
CATALOG = [Benefit("VISA", "5812", "CASHBACK", 300), Benefit("MASTERCARD", "*", "CASHBACK", 100)]
BRANDS = {"VISA": pb.CARD_BRAND_VISA, "MASTERCARD": pb.CARD_BRAND_MASTERCARD}


def completed(
    event_id: str,
    payment_id: str,
    *,
    user_id: str = "user-1",
    merchant_id: str = "cafe",
    card: Card | None = VISA,
    minutes: int = 0,
) -> bytes:
    payment = pb.Payment(
        payment_id=payment_id,
        kind=pb.PAYMENT_KIND_PURCHASE,
        status=pb.PAYMENT_STATUS_COMPLETED,
        amount=pb.Money(currency_code="USD", amount_minor=5000),
        merchant=pb.Merchant(merchant_id=merchant_id, name="Cafe", category_code="5812"),
    )
    if card is not None:
        payment.card.brand = BRANDS[card.brand]
        payment.card.masked_number = card.masked_number
    payment.update_time.FromDatetime(T0 + timedelta(minutes=minutes))
    event = events_pb2.PaymentEvent(event_id=event_id, payment_id=payment_id, user_id=user_id)
    event.status_changed.payment.CopyFrom(payment)
    return event.SerializeToString()


def created(event_id: str, payment_id: str) -> bytes:
    event = events_pb2.PaymentEvent(event_id=event_id, payment_id=payment_id, user_id="user-1")
    event.created.payment.payment_id = payment_id
    return event.SerializeToString()


def batch(*values: bytes) -> list[Item]:
    return [Item(value, f"req-{i}") for i, value in enumerate(values)]


@dataclass
class FakeStore:
    """The insights store's rules in memory: an inbox per group, one visit per payment
    (standings counted from them), one tip per payment."""

    inbox: set[tuple[str, str]] = field(default_factory=set)
    visits: dict[str, Visit] = field(default_factory=dict)
    cards: dict[str, dict[Card, KnownCard]] = field(default_factory=dict)
    tips: dict[str, Tip] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)

    def _fresh(self, group: str, event_id: str) -> bool:
        if (group, event_id) in self.inbox:
            return False
        self.inbox.add((group, event_id))
        return True

    async def record_visits(
        self, *, group: str, topic: str, visits: Mapping[str, Visit]
    ) -> dict[str, str]:
        self.calls.append(list(visits))
        results = {}
        for event_id, visit in visits.items():
            if not self._fresh(group, event_id):
                results[event_id] = "duplicate"
            elif visit.payment_id in self.visits:
                results[event_id] = "duplicate_payment"
            else:
                self.visits[visit.payment_id] = visit
                results[event_id] = "counted"
        return results

    def standing(self, user_id: str, merchant_id: str) -> int:
        return sum(
            1 for v in self.visits.values() if (v.user_id, v.merchant_id) == (user_id, merchant_id)
        )

    async def record_card_purchases(
        self, *, group: str, topic: str, purchases: Mapping[str, CardPurchase]
    ) -> dict[str, str]:
        # One purchase at a time, as the store's one transaction must behave.
        self.calls.append(list(purchases))
        results = {}
        for event_id, p in purchases.items():
            if not self._fresh(group, event_id):
                results[event_id] = "duplicate"
                continue
            mine = self.cards.setdefault(p.user_id, {})
            tip = advise(
                used=p.card,
                known=list(mine.values()),
                category_code=p.category_code,
                amount_minor=p.amount_minor,
                catalog=CATALOG,
            )
            before = mine.get(p.card)
            if before is None or p.purchase_time > before.last_use_time:
                mine[p.card] = KnownCard(p.card, p.purchase_time)
            if tip is None:
                results[event_id] = "no_tip"
            elif p.payment_id in self.tips:
                results[event_id] = "duplicate_payment"
            else:
                self.tips[p.payment_id] = tip
                results[event_id] = "tip"
        return results


def names(results: list[str | PoisonMessage]) -> list[str]:
    return [f"poison: {r}" if isinstance(r, PoisonMessage) else r for r in results]


@pytest.mark.asyncio
async def test_loyalty_handles_a_batch_in_one_store_call_and_isolates_poison() -> None:
    store = FakeStore()
    loyalty = LoyaltyHandler(store, group="loyalty")
    no_user = events_pb2.PaymentEvent.FromString(completed("e-x", "p-x"))
    no_user.user_id = ""
    results = await loyalty.handle_batch(
        batch(
            completed("e1", "p1"),
            b"\xff not an event",
            completed("e1", "p1"),  # the same event again, in the same batch
            created("e2", "p2"),
            completed("e3", "p3", merchant_id=""),
            no_user.SerializeToString(),
            completed("e4", "p1"),  # another event about a payment counted above
            completed("e5", "p5"),
        )
    )
    assert names(results) == [
        "counted",
        "poison: undecodable event: DecodeError",
        "duplicate",
        "ignored",
        "no_merchant",
        "poison: completed purchase without event_id, user_id or payment_id",
        "duplicate_payment",
        "counted",
    ]
    # One call for the batch, each event id once, in batch order.
    assert store.calls == [["e1", "e4", "e5"]]
    assert store.standing("user-1", "cafe") == 2


@pytest.mark.asyncio
async def test_a_redelivered_loyalty_batch_changes_nothing() -> None:
    store = FakeStore()
    loyalty = LoyaltyHandler(store, group="loyalty")
    values = batch(completed("e1", "p1"), completed("e2", "p2", merchant_id="bakery"))
    assert await loyalty.handle_batch(values) == ["counted", "counted"]
    assert await loyalty.handle_batch(values) == ["duplicate", "duplicate"]
    assert (store.standing("user-1", "cafe"), store.standing("user-1", "bakery")) == (1, 1)


@pytest.mark.asyncio
async def test_a_batch_without_completed_purchases_never_reaches_the_store() -> None:
    store = FakeStore()
    results = await LoyaltyHandler(store, group="loyalty").handle_batch(
        batch(created("e1", "p1"), b"\x00\x01garbage")
    )
    assert names(results)[0] == "ignored"
    assert isinstance(results[1], PoisonMessage)
    assert store.calls == []


@pytest.mark.asyncio
async def test_benefits_tip_sees_the_cards_of_earlier_purchases_in_the_same_batch() -> None:
    store = FakeStore()
    benefits = BenefitsHandler(store, group="benefits")
    results = await benefits.handle_batch(
        batch(
            completed("e1", "p1", card=VISA),
            completed("e2", "p2", card=None),  # wallet-funded
            completed("e3", "p3", card=MASTERCARD, minutes=1),
            completed("e3", "p3", card=MASTERCARD, minutes=1),
            completed("e4", "p3", card=MASTERCARD, minutes=1),
            b"garbage\xff",
        )
    )
    assert names(results)[:5] == ["no_tip", "no_card", "tip", "duplicate", "duplicate_payment"]
    assert isinstance(results[5], PoisonMessage)
    assert store.calls == [["e1", "e3", "e4"]]
    assert store.tips["p3"].better_card == VISA
    # The same batch again changes nothing.
    again = await benefits.handle_batch(batch(completed("e3", "p3", card=MASTERCARD)))
    assert again == ["duplicate"]
    assert len(store.tips) == 1


# ---------------------------------------------------------------- advise_in_turn (pure)


def use(card: Card, minutes: int, *, user_id: str = "u1", amount_minor: int = 5000) -> CardUse:
    return CardUse(user_id, card, "5812", amount_minor, T0 + timedelta(minutes=minutes))


def test_advise_in_turn_is_advise_one_purchase_after_another() -> None:
    tips = advise_in_turn(
        [use(MASTERCARD, 0), use(VISA, 1), use(MASTERCARD, 2), use(MASTERCARD, 3, user_id="u2")],
        known={},
        catalog=CATALOG,
    )
    # The first Mastercard purchase knows no other card; the second knows the Visa used
    # in between; another user's Visa is not this user's.
    assert [t is not None for t in tips] == [False, False, True, False]
    tip = tips[2]
    assert tip is not None
    assert (tip.better_card, tip.extra_reward_minor) == (VISA, 100)


def test_advise_in_turn_starts_from_the_known_cards_and_only_moves_last_use_forward() -> None:
    other_visa = Card("VISA", "400000******0077")
    known = {"u1": [KnownCard(VISA, T0 + timedelta(minutes=10))]}
    # other_visa is used at minute 5, then VISA "again" at minute 1 (an older event):
    # VISA's last use stays at minute 10, so among the two equal Visas VISA is the most
    # recently used and is the one the Mastercard purchase is told about.
    tips = advise_in_turn(
        [use(other_visa, 5), use(VISA, 1), use(MASTERCARD, 20)], known=known, catalog=CATALOG
    )
    assert tips[:2] == [None, None]
    tip = tips[2]
    assert tip is not None
    assert tip.better_card == VISA
    # The known cards given in are not changed.
    assert known == {"u1": [KnownCard(VISA, T0 + timedelta(minutes=10))]}
