"""The two consumer groups' handlers: ``payments.events`` record in, one effect out.

Both look only at completed purchases (a ``status_changed`` event whose payment is a
COMPLETED PURCHASE); everything else is "ignored" and leaves no trace, not even an inbox
row. Loyalty counts every completed purchase, wallet-funded ones included; benefits needs
the card, so it skips wallet-funded purchases.
"""

from __future__ import annotations

from datetime import UTC, datetime

from consumer_svc.consuming import PoisonMessage
from consumer_svc.insights.domain import Card
from consumer_svc.insights.store import CardPurchase, InsightsStore, Visit
from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2 as pb

EVENTS_TOPIC = "payments.events"


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


class LoyaltyHandler:
    """Counts each completed purchase once as a visit to its merchant."""

    def __init__(self, store: InsightsStore, *, group: str) -> None:
        self._store = store
        self._group = group

    async def handle(self, raw: bytes) -> str:
        event = decode(raw)
        payment = completed_purchase(event)
        if payment is None:
            return "ignored"
        merchant = payment.merchant
        if not merchant.merchant_id:
            return "no_merchant"
        return await self._store.record_visit(
            group=self._group,
            event_id=event.event_id,
            topic=EVENTS_TOPIC,
            visit=Visit(
                payment_id=payment.payment_id or event.payment_id,
                user_id=event.user_id,
                merchant_id=merchant.merchant_id,
                merchant_name=merchant.name or merchant.merchant_id,
                visit_time=_when(event, payment),
            ),
        )


class BenefitsHandler:
    """Remembers the card of each completed card purchase and records a tip when another
    of the user's cards would have earned more."""

    def __init__(self, store: InsightsStore, *, group: str) -> None:
        self._store = store
        self._group = group

    async def handle(self, raw: bytes) -> str:
        event = decode(raw)
        payment = completed_purchase(event)
        if payment is None:
            return "ignored"
        if not payment.HasField("card") or not payment.card.masked_number:
            return "no_card"  # wallet-funded: nothing to compare
        if payment.card.brand == pb.CARD_BRAND_UNSPECIFIED:
            return "no_brand"
        merchant = payment.merchant
        return await self._store.record_card_purchase(
            group=self._group,
            event_id=event.event_id,
            topic=EVENTS_TOPIC,
            purchase=CardPurchase(
                payment_id=payment.payment_id or event.payment_id,
                user_id=event.user_id,
                merchant_id=merchant.merchant_id,
                merchant_name=merchant.name or merchant.merchant_id,
                category_code=merchant.category_code,
                card=Card(_brand(payment), payment.card.masked_number),
                amount_minor=payment.amount.amount_minor,
                currency_code=payment.amount.currency_code,
                purchase_time=_when(event, payment),
            ),
        )
