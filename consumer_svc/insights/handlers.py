"""The two consumer groups' batch handlers: a partition's batch of ``payments.events``
records in, the effects of the whole batch written at once (one transaction), one result
per record out.

Both look only at completed purchases (a ``status_changed`` event whose payment is a
COMPLETED PURCHASE); everything else is "ignored" and leaves no trace, not even an inbox
row. Loyalty counts every completed purchase, wallet-funded ones included; benefits needs
the card, so it skips wallet-funded purchases. A record that cannot be decoded is a
:class:`PoisonMessage` of its own and never holds up the others; an event id seen twice
in one batch is handled once, the second is a "duplicate" as if the inbox had it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from consumer_svc.consuming import Item, PoisonMessage
from consumer_svc.insights.domain import Card
from consumer_svc.insights.store import CardPurchase, Visit
from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2 as pb

EVENTS_TOPIC = "payments.events"

Result = str | PoisonMessage
E = TypeVar("E")


class VisitStore(Protocol):
    async def record_visits(
        self, *, group: str, topic: str, visits: Mapping[str, Visit]
    ) -> Mapping[str, str]:
        """Count each visit once (``visits`` by event id, in batch order); the result
        of each event id."""
        ...


class CardPurchaseStore(Protocol):
    async def record_card_purchases(
        self, *, group: str, topic: str, purchases: Mapping[str, CardPurchase]
    ) -> Mapping[str, str]:
        """Remember the cards and record the tips (``purchases`` by event id, in batch
        order); the result of each event id."""
        ...


def decode(raw: bytes) -> events_pb2.PaymentEvent:
    try:
        return events_pb2.PaymentEvent.FromString(raw)
    except Exception as exc:
        raise PoisonMessage(f"undecodable event: {type(exc).__name__}") from None


def completed_purchase(event: events_pb2.PaymentEvent) -> pb.Payment | None:
    """The payment when the event says a purchase completed, else None. A completed
    purchase without the ids it needs can never be handled: PoisonMessage."""
    if event.WhichOneof("kind") != "status_changed":
        return None
    payment = event.status_changed.payment
    if payment.status != pb.PAYMENT_STATUS_COMPLETED or payment.kind != pb.PAYMENT_KIND_PURCHASE:
        return None
    if not (event.event_id and event.user_id and (event.payment_id or payment.payment_id)):
        raise PoisonMessage("completed purchase without event_id, user_id or payment_id")
    return payment


def _when(event: events_pb2.PaymentEvent, payment: pb.Payment) -> datetime:
    if payment.HasField("update_time"):
        return payment.update_time.ToDatetime(tzinfo=UTC)
    if event.HasField("occur_time"):
        return event.occur_time.ToDatetime(tzinfo=UTC)
    return datetime.now(UTC)


def _brand(payment: pb.Payment) -> str:
    return pb.CardBrand.Name(payment.card.brand).removeprefix("CARD_BRAND_")


def sort_out(
    items: Sequence[Item], effect_of: Callable[[events_pb2.PaymentEvent], E | str]
) -> tuple[list[Result], dict[str, tuple[int, E]]]:
    """Decode every item and ask ``effect_of`` what its event means: a result at once
    ("ignored", ...), or an effect to apply. Returns the results so far (a placeholder
    for the items with an effect) and the effects by event id, each with the position of
    its item — the first item with that event id; a later one is a "duplicate"."""
    results: list[Result] = []
    effects: dict[str, tuple[int, E]] = {}
    for index, item in enumerate(items):
        try:
            event = decode(item.value)
            effect = effect_of(event)
        except PoisonMessage as exc:
            results.append(exc)
            continue
        if isinstance(effect, str):
            results.append(effect)
        elif event.event_id in effects:
            results.append("duplicate")
        else:
            effects[event.event_id] = (index, effect)
            results.append("pending")
    return results, effects


def fill_in(
    results: list[Result], effects: Mapping[str, tuple[int, object]], done: Mapping[str, str]
) -> list[Result]:
    for event_id, (index, _) in effects.items():
        results[index] = done[event_id]
    return results


class LoyaltyHandler:
    """Counts each completed purchase once as a visit to its merchant."""

    def __init__(self, store: VisitStore, *, group: str) -> None:
        self._store = store
        self._group = group

    async def handle_batch(self, items: Sequence[Item]) -> list[Result]:
        results, visits = sort_out(items, self._visit)
        if not visits:
            return results
        done = await self._store.record_visits(
            group=self._group,
            topic=EVENTS_TOPIC,
            visits={event_id: visit for event_id, (_, visit) in visits.items()},
        )
        return fill_in(results, visits, done)

    @staticmethod
    def _visit(event: events_pb2.PaymentEvent) -> Visit | str:
        payment = completed_purchase(event)
        if payment is None:
            return "ignored"
        merchant = payment.merchant
        if not merchant.merchant_id:
            return "no_merchant"
        return Visit(
            payment_id=payment.payment_id or event.payment_id,
            user_id=event.user_id,
            merchant_id=merchant.merchant_id,
            merchant_name=merchant.name or merchant.merchant_id,
            visit_time=_when(event, payment),
        )


class BenefitsHandler:
    """Remembers the card of each completed card purchase and records a tip when another
    of the user's cards would have earned more."""

    def __init__(self, store: CardPurchaseStore, *, group: str) -> None:
        self._store = store
        self._group = group

    async def handle_batch(self, items: Sequence[Item]) -> list[Result]:
        results, purchases = sort_out(items, self._purchase)
        if not purchases:
            return results
        done = await self._store.record_card_purchases(
            group=self._group,
            topic=EVENTS_TOPIC,
            purchases={event_id: purchase for event_id, (_, purchase) in purchases.items()},
        )
        return fill_in(results, purchases, done)

    @staticmethod
    def _purchase(event: events_pb2.PaymentEvent) -> CardPurchase | str:
        payment = completed_purchase(event)
        if payment is None:
            return "ignored"
        if not payment.HasField("card") or not payment.card.masked_number:
            return "no_card"  # wallet-funded: nothing to compare
        if payment.card.brand == pb.CARD_BRAND_UNSPECIFIED:
            return "no_brand"
        merchant = payment.merchant
        return CardPurchase(
            payment_id=payment.payment_id or event.payment_id,
            user_id=event.user_id,
            merchant_id=merchant.merchant_id,
            merchant_name=merchant.name or merchant.merchant_id,
            category_code=merchant.category_code,
            card=Card(_brand(payment), payment.card.masked_number),
            amount_minor=payment.amount.amount_minor,
            currency_code=payment.amount.currency_code,
            purchase_time=_when(event, payment),
        )
