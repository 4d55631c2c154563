"""The risk gate of the processor: facts from the event, history from the store, the
rules' decision recorded once per payment (a redelivered event gets the same answer).
It also learns from each card deposit's final status whether the card funded the
wallet (what the withdrawal_card rule asks)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from consumer_svc.risk.rules import (
    Assessment,
    DecisionDeferred,
    Location,
    PaymentFacts,
    RiskPolicy,
    assess,
)
from consumer_svc.risk.store import RiskStore, location_subjects
from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2 as pb


def card_present_location(payment: pb.Payment) -> Location | None:
    """Where a card purchase happened; None for other payments, wallet purchases and
    merchants without coordinates (0, 0 is treated as unknown)."""
    if (
        payment.kind != pb.PAYMENT_KIND_PURCHASE
        or payment.funding_source == pb.FUNDING_SOURCE_WALLET
        or not payment.HasField("merchant")
    ):
        return None
    m = payment.merchant
    if m.latitude == 0 and m.longitude == 0:
        return None
    return Location(
        latitude=m.latitude,
        longitude=m.longitude,
        at=payment.create_time.ToDatetime(tzinfo=UTC),
        city=m.city,
        country_code=m.country_code,
        payment_id=payment.payment_id,
    )


# A deposit's final statuses: only COMPLETED funded the wallet.
_DEPOSIT_FINAL = frozenset(
    {
        pb.PAYMENT_STATUS_COMPLETED,
        pb.PAYMENT_STATUS_FAILED,
        pb.PAYMENT_STATUS_DENIED,
        pb.PAYMENT_STATUS_CANCELED,
        pb.PAYMENT_STATUS_EXPIRED,
    }
)


def _final_deposit(event: events_pb2.PaymentEvent) -> tuple[str, bool, datetime] | None:
    """(payment id, completed, when) of a card deposit's final status event; None for
    every other status change."""
    payment = event.status_changed.payment
    if payment.kind != pb.PAYMENT_KIND_DEPOSIT or payment.status not in _DEPOSIT_FINAL:
        return None
    try:
        payment_id = str(uuid.UUID(event.payment_id or payment.payment_id))
    except ValueError:
        return None
    at = (
        payment.update_time.ToDatetime(tzinfo=UTC)
        if payment.HasField("update_time")
        else event.occur_time.ToDatetime(tzinfo=UTC)
    )
    return payment_id, payment.status == pb.PAYMENT_STATUS_COMPLETED, at


def facts_from_event(event: events_pb2.PaymentEvent) -> PaymentFacts:
    payment = event.created.payment
    return PaymentFacts(
        payment_id=event.payment_id,
        user_id=event.user_id,
        card_fingerprint=event.created.card_fingerprint,
        amount_minor=payment.amount.amount_minor,
        currency_code=payment.amount.currency_code,
        at=payment.create_time.ToDatetime(tzinfo=UTC),
        location=card_present_location(payment),
        kind=pb.PaymentKind.Name(payment.kind).removeprefix("PAYMENT_KIND_"),
    )


class RiskEngine:
    def __init__(self, store: RiskStore, policy: RiskPolicy) -> None:
        self._store = store
        self._policy = policy

    async def assess_many(
        self, events: Sequence[events_pb2.PaymentEvent]
    ) -> list[Assessment | DecisionDeferred]:
        """:meth:`assess` for a batch, in one transaction, in batch order."""
        if not events:
            return []
        return await self._store.decide_many(
            [facts_from_event(event) for event in events],
            lambda facts, history: assess(facts, history, self._policy),
            window_s=self._policy.velocity_window_s,
            amounts_max=self._policy.amount_history,
            card_per_user=self._policy.velocity_card_scope == "user",
            check_funding=self._policy.withdrawal_funding_card_only,
        )

    async def settled(self, event: events_pb2.PaymentEvent) -> str:
        """Learn a card deposit's outcome from its final status event (idempotent);
        every other status change is "ignored"."""
        (result,) = await self.settled_many([event])
        return result

    async def settled_many(self, events: Sequence[events_pb2.PaymentEvent]) -> list[str]:
        """:meth:`settled` for a batch, in one statement."""
        outcomes: list[tuple[str, bool, datetime]] = []
        results: list[str] = []
        for event in events:
            deposit = _final_deposit(event)
            results.append("ignored" if deposit is None else "deposit_settled")
            if deposit is not None:
                outcomes.append(deposit)
        await self._store.settle_deposits(outcomes)
        return results

    async def verified(self, event: events_pb2.PaymentEvent) -> None:
        """The owner confirmed a flagged payment: its place becomes the last known one."""
        location = card_present_location(event.verified.payment)
        if location is not None:
            fingerprint = await self._store.card_fingerprint(event.payment_id)
            await self._remember(event.user_id, fingerprint, location)

    async def _remember(self, user_id: str, fingerprint: str, location: Location) -> None:
        card_per_user = self._policy.velocity_card_scope == "user"
        for subject in location_subjects(user_id, fingerprint, card_per_user=card_per_user):
            await self._store.remember_location(subject, location)
