"""A burst of payments settles through the sandboxes' batched callbacks: results that are
ready together reach payment_svc in one signed ReportResults call, are applied in one
transaction, each exactly once, each traced under its own payment's request id, and the
ledger balances after all of it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
import pytest_asyncio

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.conftest import StackEnv
from tests.e2e.conftest import Running
from tests.e2e.test_processing import (
    APPROVE,
    DECLINE,
    assert_ledger_invariants,
    request,
    settle,
)
from tests.helpers import User, register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

_LETTERS = str.maketrans("0123456789", "ghijklmnop")


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


async def submit_traced(
    channel: grpc.aio.Channel, user: User, message: pb.CreatePaymentRequest, request_id: str
) -> str:
    reply: pb.CreatePaymentResponse = await payments_pb2_grpc.PaymentServiceStub(
        channel
    ).CreatePayment(message, metadata=(*user.metadata, ("x-request-id", request_id)), timeout=10)
    return reply.payment.payment_id


async def test_a_burst_settles_through_batched_callbacks(
    edge: grpc.aio.Channel, services: list[Running], stack: StackEnv
) -> None:
    users = [await register_and_login(edge) for _ in range(4)]
    plan: list[tuple[User, pb.CreatePaymentRequest, str]] = []
    for i in range(40):
        user = users[i % len(users)]
        card = DECLINE if i % 7 == 3 else APPROVE
        currency = "EUR" if i % 5 == 4 else "USD"  # EUR goes to the SOAP sandbox
        message = request(pb.PAYMENT_KIND_DEPOSIT, card, 100 + i, currency)
        # Letters only: a long run of digits would be masked in logs as a card number.
        plan.append((user, message, f"e2e-batch-{uuid.uuid4().hex.translate(_LETTERS)}"))
    payment_ids = await asyncio.gather(
        *(submit_traced(edge, user, message, rid) for user, message, rid in plan)
    )
    finals = await asyncio.gather(
        *(settle(edge, user, pid) for (user, _, _), pid in zip(plan, payment_ids, strict=True))
    )
    for (_, message, _), payment in zip(plan, finals, strict=True):
        declined = message.card.number == DECLINE
        assert payment.status == (
            pb.PAYMENT_STATUS_FAILED if declined else pb.PAYMENT_STATUS_COMPLETED
        ), payment
        assert payment.version == 3  # PENDING -> PROCESSING -> final, once
        expected_gateway = (
            "sandbox-soap" if message.amount.currency_code == "EUR" else "sandbox-json"
        )
        assert payment.gateway_id == expected_gateway
        if declined:
            assert payment.failure_code == "card_declined"
    for user in users:
        mine = [m for u, m, _ in plan if u is user]
        expected = {
            currency: sum(
                m.amount.amount_minor
                for m in mine
                if m.amount.currency_code == currency and m.card.number == APPROVE
            )
            for currency in ("USD", "EUR")
        }
        balances = await payments_pb2_grpc.PaymentServiceStub(edge).GetBalance(
            pb.GetBalanceRequest(), metadata=user.metadata, timeout=5
        )
        got = {b.currency_code: b.available_minor for b in balances.balances}
        assert got == {c: v for c, v in expected.items() if v}

    # Results were applied in batches: several of them in one transaction.
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT gateway_id, xmin::text AS tx FROM payments.callback_events"
            " WHERE payment_id = ANY($1::uuid[])",
            [uuid.UUID(p) for p in payment_ids],
        )
    finally:
        await conn.close()
    assert len(rows) == len(payment_ids)  # one recorded result per payment
    per_transaction = Counter((r["gateway_id"], r["tx"]) for r in rows)
    assert max(n for (g, _), n in per_transaction.items() if g == "sandbox-json") >= 2, (
        per_transaction
    )

    # Each payment's final step is logged under its own request id, batch or not.
    payment_log = next(s for s in services if s.name == "payment").log_path
    final_lines: dict[str, list[str | None]] = {}
    for line in payment_log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("msg") in (
            "payment completed",
            "payment failed",
        ):
            final_lines.setdefault(record["payment_id"], []).append(record.get("request_id"))
    for (_, _, request_id), payment_id in zip(plan, payment_ids, strict=True):
        assert final_lines.get(payment_id) == [request_id], payment_id
    await assert_ledger_invariants(stack.pg_dsn)
