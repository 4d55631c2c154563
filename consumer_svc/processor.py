"""The processing pipeline: ``payments.events`` -> risk -> route -> dispatch.

For every PaymentCreated event the processor asks the risk gate. DENY ends the payment
(DENIED, the rule as failure code); REVIEW holds it for its owner (REQUIRES_VERIFICATION)
and sends them a one-time code on the ``notifications`` topic; APPROVE — or a
PaymentVerified event, once the owner answered with the right code — dispatches: pick the
highest priority enabled gateway that supports the payment's kind and currency, ask payment_svc
to mark the payment PROCESSING (BeginDispatch returns the card sealed to that gateway's
public key), encodes the request in the gateway's wire format and publishes it to the
gateway's topic. consumer_svc never writes payment_svc's tables.

Delivery: the Kafka offset is committed only after the event's effect is done and its
inbox row written, so nothing is lost if the process dies. A redelivered event is a
no-op: the inbox knows it, and BeginDispatch itself is idempotent (a payment already
PROCESSING at that gateway gets the same attempt back, so a re-published request carries
the same request id and the gateway drops the duplicate). An event that keeps failing is
retried a bounded number of times with backoff, then parked on ``<topic>.dlq`` with the
error, and the consumer moves on.

A deposit's final status event teaches risk whether its card funded the wallet. A
withdrawal the rules cannot decide yet (a deposit with its card is still under way:
DecisionDeferred) is left undecided, without an inbox row: its event is re-published
behind the deposit's outcome for a short while, and after that the janitor's re-drive of
stranded payments brings it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
from aiokafka import AIOKafkaProducer

from consumer_svc.consuming import Item, PoisonMessage
from consumer_svc.notifications import NOTIFICATIONS_TOPIC, verification_notification
from consumer_svc.risk.rules import Assessment, Decision, DecisionDeferred
from gateway_sdk.formats import get as get_format
from gateway_sdk.formats.base import GatewayMerchant, GatewayRequest, MaskedCard
from gateway_sdk.sealing import SealedCard
from payrail.events.v1 import events_pb2
from payrail.internal.v1 import payment_ops_pb2 as ops
from payrail.internal.v1 import payment_ops_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail_common import tracing
from payrail_common.failure_codes import NO_ROUTE

log = logging.getLogger(__name__)

DEFAULT_GROUP = "payrail-processor"
EVENTS_TOPIC = "payments.events"
# A deferred decision: how long to wait before re-publishing the event, and for how long
# after the payment's creation to do so (later, the janitor's re-drive takes over).
DEFER_DELAY_S = 0.5
DEFER_REPUBLISH_MAX_S = 30.0
# Dispatches per BeginDispatches call (payment_svc's bound).
DISPATCH_BATCH_MAX = 500


class RiskGate(Protocol):
    async def verified(self, event: events_pb2.PaymentEvent) -> None:
        """Learn from a payment its owner confirmed at step-up verification."""

    async def assess_many(
        self, events: Sequence[events_pb2.PaymentEvent]
    ) -> list[Assessment | DecisionDeferred]:
        """Decisions for a batch, in one transaction, in batch order."""

    async def settled_many(self, events: Sequence[events_pb2.PaymentEvent]) -> list[str]:
        """:meth:`settled` for a batch."""


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def route(payment: pb.Payment, gateways: Sequence[ops.Gateway]) -> ops.Gateway | None:
    """The highest-priority enabled gateway supporting the kind and currency (the list
    comes ordered by priority)."""
    for gateway in gateways:
        if payment.kind in gateway.kinds and payment.amount.currency_code in gateway.currency_codes:
            return gateway
    return None


class Processor:
    def __init__(
        self,
        *,
        ops_stub: payment_ops_pb2_grpc.PaymentOpsServiceStub,
        producer: AIOKafkaProducer,
        pool: asyncpg.Pool,
        risk: RiskGate,
        rpc_timeout_s: float = 5.0,
        registry_ttl_s: float = 5.0,
        group: str = DEFAULT_GROUP,
    ) -> None:
        self._group = group
        # The service behind ops_stub, as dead-letter errors name it.
        self._upstream = "payment_svc"
        self._ops = ops_stub
        self._producer = producer
        self._pool = pool
        self._risk = risk
        self._rpc_timeout_s = rpc_timeout_s
        self._registry_ttl_s = registry_ttl_s
        self._gateways: tuple[float, Sequence[ops.Gateway]] | None = None

    async def _registry(self) -> Sequence[ops.Gateway]:
        now = time.monotonic()
        if self._gateways is None or now - self._gateways[0] > self._registry_ttl_s:
            reply = await self._ops.ListGateways(
                ops.ListGatewaysRequest(), timeout=self._rpc_timeout_s
            )
            self._gateways = (now, tuple(reply.gateways))
        return self._gateways[1]

    async def handle_batch(self, items: Sequence[Item]) -> list[str | PoisonMessage]:
        """Process one poll's batch of payments.events (every partition's records, each
        partition's in order); one result per item.

        Reads and writes for the whole batch at once: one inbox read; deposits'
        outcomes learnt in one statement; risk decided for every new payment in one
        transaction; one BeginDispatches call for every approved or verified payment;
        their gateway requests produced together and their acknowledgments awaited
        together; one inbox write. Denials and step-up challenges (rare) go one by one.
        Every effect is idempotent, so a batch that fails part-way is simply run again."""
        results: list[str | PoisonMessage | None] = [None] * len(items)
        events: dict[int, events_pb2.PaymentEvent] = {}
        for index, item in enumerate(items):
            try:
                event = events_pb2.PaymentEvent.FromString(item.value)
            except Exception as exc:
                results[index] = PoisonMessage(f"undecodable event: {type(exc).__name__}")
                continue
            kind = event.WhichOneof("kind")
            if kind == "status_changed":
                events[index] = event
            elif kind not in ("created", "verified"):
                results[index] = "ignored"
            elif (
                not event.event_id or not _is_uuid(event.payment_id) or not _is_uuid(event.user_id)
            ):
                results[index] = PoisonMessage(
                    "event without event_id, or payment_id/user_id not a UUID"
                )
            else:
                events[index] = event
        settled = [i for i, e in events.items() if e.WhichOneof("kind") == "status_changed"]
        for index, result in zip(
            settled, await self._risk.settled_many([events[i] for i in settled]), strict=True
        ):
            results[index] = result
        rest = [i for i in events if i not in settled]
        seen = await self._seen_many([events[i].event_id for i in rest])
        first_of: dict[str, int] = {}
        created: list[int] = []
        dispatch: list[tuple[int, pb.Payment]] = []
        for index in rest:
            event = events[index]
            if event.event_id in seen or event.event_id in first_of:
                results[index] = "duplicate"
                continue
            first_of[event.event_id] = index
            if event.WhichOneof("kind") == "verified":
                # The owner passed step-up verification: dispatch without asking risk again.
                with tracing.bind(items[index].request_id):
                    await self._risk.verified(event)
                dispatch.append((index, event.verified.payment))
            else:
                created.append(index)
        decisions = await self._risk.assess_many([events[i] for i in created])
        for index, decision in zip(created, decisions, strict=True):
            event = events[index]
            with tracing.bind(items[index].request_id):
                if isinstance(decision, DecisionDeferred):
                    results[index] = await self._defer(event, items[index].value, str(decision))
                    continue
                self._log_decision(event, decision)
                if decision.decision is Decision.APPROVE:
                    dispatch.append((index, event.created.payment))
                else:
                    results[index] = await self._hold_or_deny(event, decision)
        for index, outcome in zip(
            [i for i, _ in dispatch], await self._dispatch_many(items, dispatch), strict=True
        ):
            results[index] = outcome
        # The inbox, last: an event is remembered only once its effect is done (a
        # deferred one is not: it is decided again when it comes back).
        await self._remember_many(
            [
                events[i].event_id
                for i in rest
                if results[i] not in ("duplicate", "deferred")
                and not isinstance(results[i], PoisonMessage)
            ]
        )
        assert all(result is not None for result in results)
        return [r for r in results if r is not None]

    async def _seen_many(self, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        rows = await self._pool.fetch(
            "SELECT event_id FROM consumer.inbox WHERE consumer_group = $1"
            " AND event_id = ANY($2::text[])",
            self._group,
            list(event_ids),
        )
        return {row["event_id"] for row in rows}

    async def _remember_many(self, event_ids: Sequence[str]) -> None:
        if not event_ids:
            return
        await self._pool.execute(
            "INSERT INTO consumer.inbox (consumer_group, event_id, topic)"
            " SELECT $1, e, $3 FROM unnest($2::text[]) AS e ORDER BY e ON CONFLICT DO NOTHING",
            self._group,
            sorted(set(event_ids)),
            EVENTS_TOPIC,
        )

    async def _dispatch_many(
        self, items: Sequence[Item], dispatch: Sequence[tuple[int, pb.Payment]]
    ) -> list[str | PoisonMessage]:
        """Route, mark PROCESSING (one BeginDispatches call) and publish the gateway
        requests of many payments; one result per entry."""
        if not dispatch:
            return []
        registry = await self._registry()
        results: list[str | PoisonMessage | None] = [None] * len(dispatch)
        routed: list[tuple[int, ops.BeginDispatchRequest]] = []
        for slot, (index, payment) in enumerate(dispatch):
            gateway = route(payment, registry)
            if gateway is None:
                with tracing.bind(items[index].request_id):
                    await self._fail(
                        payment.payment_id,
                        NO_ROUTE,
                        "no enabled gateway supports this payment's kind and currency",
                    )
                results[slot] = "no_route"
                continue
            routed.append(
                (
                    slot,
                    ops.BeginDispatchRequest(
                        payment_id=payment.payment_id,
                        gateway_id=gateway.gateway_id,
                        request_id=items[index].request_id,
                    ),
                )
            )
        futures: list[asyncio.Future[Any]] = []
        for chunk_start in range(0, len(routed), DISPATCH_BATCH_MAX):
            chunk = routed[chunk_start : chunk_start + DISPATCH_BATCH_MAX]
            reply = await self._ops.BeginDispatches(
                ops.BeginDispatchesRequest(items=[request for _, request in chunk]),
                timeout=self._rpc_timeout_s,
            )
            for (slot, request), answer in zip(chunk, reply.items, strict=True):
                if answer.not_found:
                    results[slot] = PoisonMessage(f"{self._upstream} answered NOT_FOUND")
                elif not answer.dispatch:
                    results[slot] = "not_pending"
                else:
                    with tracing.bind(request.request_id or None):
                        futures.append(await self._send_request(answer))
                    results[slot] = "dispatched"
        # Every request enqueued; now the broker's acknowledgments, together.
        if futures:
            await asyncio.gather(*futures)
        assert all(result is not None for result in results)
        return [r for r in results if r is not None]

    def _log_decision(self, event: events_pb2.PaymentEvent, assessment: Assessment) -> None:
        # A lifecycle step: one line per payment, whatever the decision.
        log.info(
            "payment risk decided",
            extra={
                "payment_id": event.payment_id,
                "user_id": event.user_id,
                "decision": assessment.decision.value,
                "rule": assessment.rule,
                "explanation": assessment.explanation,
            },
        )

    async def _defer(self, event: events_pb2.PaymentEvent, raw: bytes, why: str) -> str:
        """Leave the payment undecided (no inbox row) and bring its event back later."""
        created = event.created.payment.create_time.ToDatetime(tzinfo=UTC)
        age_s = (datetime.now(UTC) - created).total_seconds()
        log.info(
            "risk decision deferred",
            extra={"payment_id": event.payment_id, "reason": why, "age_s": round(age_s, 1)},
        )
        if age_s > DEFER_REPUBLISH_MAX_S:
            return "deferred"  # the janitor re-drives it while it stays PENDING
        await asyncio.sleep(DEFER_DELAY_S)
        await self._producer.send_and_wait(
            EVENTS_TOPIC,
            raw,
            key=event.payment_id.encode(),
            headers=[
                ("event-type", b"payment.created"),
                ("event-id", event.event_id.encode()),
                ("redriven-by", b"risk-deferral"),
                *tracing.kafka_headers(),
            ],
        )
        return "deferred"

    async def _hold_or_deny(self, event: events_pb2.PaymentEvent, assessment: Assessment) -> str:
        """DENY ends the payment; REVIEW holds it and sends its owner a one-time code."""
        if assessment.decision is Decision.DENY:
            await self._ops.DenyPayment(
                ops.DenyPaymentRequest(
                    payment_id=event.payment_id,
                    failure_code=assessment.rule,
                    failure_message=assessment.explanation,
                ),
                timeout=self._rpc_timeout_s,
            )
            return "denied"
        reply = await self._ops.RequireVerification(
            ops.RequireVerificationRequest(
                payment_id=event.payment_id, reason=assessment.explanation
            ),
            timeout=self._rpc_timeout_s,
        )
        if not reply.code:
            return "not_pending"
        # The code travels only here and on the notifications topic; payment_svc keeps
        # its hash. A crash before the offset commit re-issues a fresh code on redelivery.
        notification = verification_notification(reply, event.user_id)
        await self._producer.send_and_wait(
            NOTIFICATIONS_TOPIC,
            notification.SerializeToString(),
            key=notification.user_id.encode(),
            headers=[
                ("notification-id", notification.notification_id.encode()),
                *tracing.kafka_headers(),
            ],
        )
        return "verification"

    async def _fail(self, payment_id: str, code: str, message: str) -> None:
        await self._ops.FailPayment(
            ops.FailPaymentRequest(
                payment_id=payment_id, failure_code=code, failure_message=message
            ),
            timeout=self._rpc_timeout_s,
        )

    async def publish(self, reply: ops.BeginDispatchResponse) -> None:
        """Encode the dispatch in the gateway's wire format and wait for the broker's ack."""
        await await_ack(await self._send_request(reply))

    async def _send_request(self, reply: ops.BeginDispatchResponse) -> asyncio.Future[Any]:
        """Encode the dispatch in the gateway's wire format and hand it to the producer;
        the future completes with the broker's acknowledgment."""
        payment = reply.payment
        merchant = None
        if payment.HasField("merchant"):
            m = payment.merchant
            merchant = GatewayMerchant(
                merchant_id=m.merchant_id,
                name=m.name,
                category_code=m.category_code,
                country_code=m.country_code,
                city=m.city,
            )
        request = GatewayRequest(
            request_id=f"{payment.payment_id}:{reply.attempt}",
            payment_id=payment.payment_id,
            attempt=reply.attempt,
            kind=pb.PaymentKind.Name(payment.kind).removeprefix("PAYMENT_KIND_"),
            amount_minor=payment.amount.amount_minor,
            currency_code=payment.amount.currency_code,
            card=MaskedCard(
                brand=pb.CardBrand.Name(payment.card.brand).removeprefix("CARD_BRAND_"),
                masked_number=payment.card.masked_number,
            )
            if payment.HasField("card")
            else None,
            sealed_card=SealedCard.from_bytes(reply.sealed_card) if reply.sealed_card else None,
            merchant=merchant,
            callback_deadline=reply.callback_deadline.seconds,
            description=payment.description,
        )
        body = get_format(reply.gateway.wire_format).encode_request(request)
        future: asyncio.Future[Any] = await self._producer.send(
            reply.gateway.topic,
            body,
            key=payment.payment_id.encode(),
            headers=[
                ("request-id", request.request_id.encode()),
                ("wire-format", reply.gateway.wire_format.encode()),
                *tracing.kafka_headers(),
            ],
        )
        return future


async def await_ack(future: asyncio.Future[Any]) -> None:
    """Wait for a produced record's acknowledgment (raises what the broker answered)."""
    await future
