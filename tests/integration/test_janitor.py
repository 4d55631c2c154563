"""The janitor's expiry against the real PostgreSQL: nothing waits forever."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest

from payment_svc.adapters.processing import PostgresSweeper
from payrail.payments.v1 import payments_pb2 as pb
from tests.conftest import StackEnv
from tests.helpers import register_and_login
from tests.integration.test_payments import deposit, fund_wallet, stub, withdrawal

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_pending_payments_expire_and_release_their_holds(
    channel: grpc.aio.Channel, stack: StackEnv
) -> None:
    user = await register_and_login(channel)
    db = await asyncpg.connect(stack.pg_dsn)
    pool = await asyncpg.create_pool(stack.pg_dsn, min_size=1, max_size=2)
    try:
        await fund_wallet(db, user, 1000)
        held = await stub(channel).CreatePayment(withdrawal(600), metadata=user.metadata)
        plain = await stub(channel).CreatePayment(deposit(), metadata=user.metadata)
        ids = [uuid.UUID(held.payment.payment_id), uuid.UUID(plain.payment.payment_id)]
        # Other tests' PENDING payments are in this database too: sweep with a limit large
        # enough for all of them, then look at ours.
        sweeper = PostgresSweeper(pool)
        for _ in range(100):
            expired = await sweeper.expire_due(
                datetime.now(UTC), pending_ttl_s=0, verification_ttl_s=0, limit=500
            )
            if not expired:
                break
        rows = await db.fetch(
            "SELECT status, failure_code, version FROM payments.payments WHERE id = ANY($1)", ids
        )
        events = await db.fetch(
            "SELECT topic FROM payments.outbox WHERE message_key = $1 AND event_type ="
            " 'payment.status_changed'",
            held.payment.payment_id,
        )
    finally:
        await pool.close()
        await db.close()
    assert {(r["status"], r["failure_code"], r["version"]) for r in rows} == {
        ("EXPIRED", "expired", 2)
    }
    # One outbox row per change (the relay also publishes it to payments.status).
    assert [r["topic"] for r in events] == ["payments.events"]
    balance = await stub(channel).GetBalance(pb.GetBalanceRequest(), metadata=user.metadata)
    assert [(b.available_minor, b.held_minor) for b in balance.balances] == [(1000, 0)]
