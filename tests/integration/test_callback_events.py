"""Gateway callbacks through the edge: event ids are scoped to the gateway that chose them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest
import pytest_asyncio

from gateway_sdk import CallbackSecret, get_format
from gateway_sdk.formats.base import GatewayResult
from gateway_sdk.signing import signature_metadata
from payment_svc.adapters.processing import PostgresProcessingRepository
from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.conftest import StackEnv
from tests.helpers import register_and_login

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def pool(stack: StackEnv) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(stack.pg_dsn, min_size=1, max_size=2) as created:
        yield created


async def register_gateway(pool: asyncpg.Pool, wire_format: str) -> tuple[str, CallbackSecret]:
    """A gateway of this test only. It supports no real currency and has the lowest
    priority, so nothing else sharing the test database is ever routed to it."""
    gateway_id = f"t-{wire_format}-{uuid.uuid4().hex[:12]}"
    secret = CallbackSecret.generate()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO payments.gateways (id, wire_format, topic, kinds, currency_codes,"
            " priority, public_key) VALUES ($1, $2, $3, $4, $5, -1000, $6)",
            gateway_id,
            wire_format,
            f"gateway.{gateway_id}.requests",
            ["DEPOSIT"],
            ["XTS"],
            bytes(range(1, 33)),
        )
        await conn.execute(
            "INSERT INTO payments.gateway_secrets (gateway_id, secret_id, secret)"
            " VALUES ($1, 's1', $2)",
            gateway_id,
            secret.reveal(),
        )
    return gateway_id, secret


async def test_two_gateways_may_use_the_same_event_id_and_both_results_apply(
    channel: grpc.aio.Channel, pool: asyncpg.Pool
) -> None:
    user = await register_and_login(channel)
    payments = payments_pb2_grpc.PaymentServiceStub(channel)
    callbacks = callbacks_pb2_grpc.CallbackServiceStub(channel)
    repository = PostgresProcessingRepository(pool)
    gateways = [await register_gateway(pool, "json"), await register_gateway(pool, "soap")]
    try:
        payment_ids = []
        for gateway_id, _ in gateways:
            created = await payments.CreatePayment(
                pb.CreatePaymentRequest(
                    idempotency_key=str(uuid.uuid4()),
                    kind=pb.PAYMENT_KIND_DEPOSIT,
                    amount=pb.Money(currency_code="USD", amount_minor=1500),
                    card=pb.CardInput(
                        number="4242424242424242", exp_month=12, exp_year=2031, cvc="123"
                    ),
                ),
                metadata=user.metadata,
                timeout=5,
            )
            payment_id = created.payment.payment_id
            record = await repository.begin_dispatch(payment_id, gateway_id, datetime.now(UTC))
            assert record.dispatch
            payment_ids.append(payment_id)

        # Both gateways pick the same event id for their own payment's approval.
        event_id = f"evt-{uuid.uuid4()}"
        for (gateway_id, secret), payment_id in zip(gateways, payment_ids, strict=True):
            wire_format = "json" if gateway_id.startswith("t-json") else "soap"
            payload = get_format(wire_format).encode_result(
                GatewayResult(
                    event_id=event_id,
                    payment_id=payment_id,
                    outcome="APPROVED",
                    occur_time=int(time.time()),
                )
            )
            reply: callbacks_pb2.ReportResultResponse = await callbacks.ReportResult(
                callbacks_pb2.ReportResultRequest(gateway_id=gateway_id, payload=payload),
                metadata=signature_metadata(payload, [secret], timestamp=int(time.time())),
                timeout=5,
            )
            assert not reply.duplicate, gateway_id

        for payment_id in payment_ids:
            got = await payments.GetPayment(
                pb.GetPaymentRequest(payment_id=payment_id), metadata=user.metadata, timeout=5
            )
            assert got.payment.status == pb.PAYMENT_STATUS_COMPLETED
        applied = await pool.fetch(
            "SELECT gateway_id, payment_id FROM payments.callback_events WHERE event_id = $1",
            event_id,
        )
        assert sorted((r["gateway_id"], str(r["payment_id"])) for r in applied) == sorted(
            (gateway_id, payment_id)
            for (gateway_id, _), payment_id in zip(gateways, payment_ids, strict=True)
        )

        # The same event from the same gateway is still a replay: OK, duplicate, no effect.
        gateway_id, secret = gateways[0]
        payload = get_format("json").encode_result(
            GatewayResult(
                event_id=event_id,
                payment_id=payment_ids[0],
                outcome="DECLINED",
                failure_code="card_declined",
                occur_time=int(time.time()),
            )
        )
        replay = await callbacks.ReportResult(
            callbacks_pb2.ReportResultRequest(gateway_id=gateway_id, payload=payload),
            metadata=signature_metadata(payload, [secret], timestamp=int(time.time())),
            timeout=5,
        )
        assert replay.duplicate
    finally:
        await pool.execute(
            "UPDATE payments.gateways SET enabled = false WHERE id = ANY($1::text[])",
            [gateway_id for gateway_id, _ in gateways],
        )
