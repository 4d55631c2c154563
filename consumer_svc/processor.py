"""The processing pipeline: ``payments.events`` -> risk -> route -> dispatch.

For every PaymentCreated event the processor runs the risk hook, picks the highest
priority enabled gateway that supports the payment's kind and currency, asks payment_svc
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
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer

from consumer_svc.consuming import PoisonMessage
from gateway_sdk.formats import get as get_format
from gateway_sdk.formats.base import GatewayMerchant, GatewayRequest, MaskedCard
from gateway_sdk.sealing import SealedCard
from payrail.events.v1 import events_pb2
from payrail.internal.v1 import payment_ops_pb2 as ops
from payrail.internal.v1 import payment_ops_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb

log = logging.getLogger(__name__)

DEFAULT_GROUP = "payrail-processor"
EVENTS_TOPIC = "payments.events"


class Decision(enum.Enum):
    APPROVE = "approve"
    REVIEW = "review"
    DENY = "deny"


@dataclass(frozen=True)
class RiskVerdict:
    decision: Decision
    rule: str = ""


RiskCheck = Callable[[events_pb2.PaymentEvent], Awaitable[RiskVerdict]]


async def approve_all(event: events_pb2.PaymentEvent) -> RiskVerdict:
    """The risk hook until the fraud rules land: approves every payment."""
    return RiskVerdict(Decision.APPROVE)


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
        risk: RiskCheck = approve_all,
        rpc_timeout_s: float = 5.0,
        registry_ttl_s: float = 5.0,
        group: str = DEFAULT_GROUP,
    ) -> None:
        self._group = group
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

    async def seen(self, event_id: str) -> bool:
        found = await self._pool.fetchval(
            "SELECT true FROM consumer.inbox WHERE consumer_group = $1 AND event_id = $2",
            self._group,
            event_id,
        )
        return bool(found)

    async def remember(self, event_id: str) -> None:
        await self._pool.execute(
            "INSERT INTO consumer.inbox (consumer_group, event_id, topic) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            self._group,
            event_id,
            EVENTS_TOPIC,
        )

    async def handle(self, raw: bytes) -> str:
        """Process one payments.events message; return what happened (for metrics)."""
        try:
            event = events_pb2.PaymentEvent.FromString(raw)
        except Exception as exc:
            raise PoisonMessage(f"undecodable event: {type(exc).__name__}") from None
        if event.WhichOneof("kind") != "created":
            return "ignored"
        if not event.event_id or not event.payment_id:
            raise PoisonMessage("event without event_id or payment_id")
        if await self.seen(event.event_id):
            return "duplicate"
        payment = event.created.payment
        verdict = await self._risk(event)
        if verdict.decision is not Decision.APPROVE:
            # REVIEW and DENY arrive with the fraud issue; until then the hook approves.
            await self._fail(
                event.payment_id, f"risk_{verdict.rule or 'denied'}", "refused by risk checks"
            )
            await self.remember(event.event_id)
            return "denied"
        gateway = route(payment, await self._registry())
        if gateway is None:
            await self._fail(
                event.payment_id,
                "no_route",
                "no enabled gateway supports this payment's kind and currency",
            )
            await self.remember(event.event_id)
            return "no_route"
        reply = await self._ops.BeginDispatch(
            ops.BeginDispatchRequest(payment_id=event.payment_id, gateway_id=gateway.gateway_id),
            timeout=self._rpc_timeout_s,
        )
        if reply.dispatch:
            await self.publish(reply)
        await self.remember(event.event_id)
        return "dispatched" if reply.dispatch else "not_pending"

    async def _fail(self, payment_id: str, code: str, message: str) -> None:
        await self._ops.FailPayment(
            ops.FailPaymentRequest(
                payment_id=payment_id, failure_code=code, failure_message=message
            ),
            timeout=self._rpc_timeout_s,
        )

    async def publish(self, reply: ops.BeginDispatchResponse) -> None:
        """Encode the dispatch in the gateway's wire format and wait for the broker's ack."""
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
        await self._producer.send_and_wait(
            reply.gateway.topic,
            body,
            key=payment.payment_id.encode(),
            headers=[
                ("request-id", request.request_id.encode()),
                ("wire-format", reply.gateway.wire_format.encode()),
            ],
        )
