"""No card number and no CVC, anywhere: PostgreSQL, Kafka, Redis, or the service logs.

Payments are submitted through the real processes with a distinctive card; then every
place the platform writes to is scanned for it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.conftest import StackEnv
from tests.e2e.conftest import Running
from tests.helpers import register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

# A Luhn-valid Visa number used nowhere else in the suite, and a four-digit Amex CVC.
PAN = "4000056655665556"
AMEX_PAN = "371449635398431"
AMEX_CVC = "7193"
SCHEMAS = ("payments", "auth", "consumer", "public")


def pan_forms(pan: str) -> list[str]:
    grouped = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
    return [pan, grouped, grouped.replace(" ", "-")]


def values(node: Any) -> Iterator[str]:
    """Every key and string inside a decoded JSON document. Numbers are left out: a
    serial id or an amount may equal a CVC's digits by chance, a stored CVC is text."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from values(value)
    elif isinstance(node, list):
        for item in node:
            yield from values(item)
    elif isinstance(node, str):
        yield node


async def database_rows(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY($1)", list(SCHEMAS)
        )
        rows: list[str] = []
        for t in tables:
            rows += [
                r[0]
                for r in await conn.fetch(
                    f'SELECT row_to_json(x)::text FROM "{t[0]}"."{t[1]}" x'  # noqa: S608
                )
            ]
        return rows
    finally:
        await conn.close()


async def topic_messages(bootstrap: str, topic: str, partition_count: int = 6) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        out: list[bytes] = []
        for _ in range(1000):  # bounded: a few thousand test messages at most
            positions = [await consumer.position(tp) for tp in partitions]
            if all(pos >= end[tp] for pos, tp in zip(positions, partitions, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                out += [(r.key or b"") + b"|" + (r.value or b"") for r in records]
        return out
    finally:
        await consumer.stop()


async def test_no_pan_or_cvc_in_database_kafka_redis_or_logs(
    services: list[Running], stack: StackEnv
) -> None:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        user = await register_and_login(channel)
        payments = payments_pb2_grpc.PaymentServiceStub(channel)
        created = []
        for number, cvc in ((PAN, "123"), (AMEX_PAN, AMEX_CVC)):
            reply = await payments.CreatePayment(
                pb.CreatePaymentRequest(
                    idempotency_key=str(uuid.uuid4()),
                    kind=pb.PAYMENT_KIND_DEPOSIT,
                    amount=pb.Money(currency_code="USD", amount_minor=1234),
                    card=pb.CardInput(number=number, exp_month=11, exp_year=2031, cvc=cvc),
                ),
                metadata=user.metadata,
                timeout=10,
            )
            created.append(reply.payment.payment_id)
        # Rejected input carrying a card number must not leak either.
        with pytest.raises(grpc.aio.AioRpcError):
            await payments.CreatePayment(
                pb.CreatePaymentRequest(
                    idempotency_key=str(uuid.uuid4()),
                    kind=pb.PAYMENT_KIND_DEPOSIT,
                    amount=pb.Money(currency_code="USD", amount_minor=1),
                    card=pb.CardInput(number=PAN, exp_month=13, exp_year=2031, cvc="12"),
                    description=f"card {PAN}",
                ),
                metadata=user.metadata,
                timeout=10,
            )

    # The relay publishes the created events; wait (bounded) until both are on Kafka.
    messages: list[bytes] = []
    for _ in range(60):
        messages = await topic_messages(stack.kafka_bootstrap, "payments.events")
        if all(any(pid.encode() in m for m in messages) for pid in created):
            break
        await asyncio.sleep(0.5)
    assert all(any(pid.encode() in m for m in messages) for pid in created), "not published"

    rows = await database_rows(stack.pg_dsn)
    logs = "\n".join(s.log_path.read_text() for s in services)
    forms = pan_forms(PAN) + pan_forms(AMEX_PAN)
    for form in forms:
        assert not any(form in row for row in rows), f"PAN in PostgreSQL ({form})"
        assert not any(form.encode() in m for m in messages), f"PAN on Kafka ({form})"
        assert form not in logs, f"PAN in a log ({form})"

    # The CVC: no stored value, log field or event field equals it.
    assert not any(AMEX_CVC in values(json.loads(row)) for row in rows)
    for line in logs.splitlines():
        if line.startswith("{"):
            assert AMEX_CVC not in values(json.loads(line))
    assert not any(
        AMEX_CVC.encode() in m.split(b"|", 1)[1] for m in messages if created[1].encode() in m
    )

    # Redis: no card number anywhere, and the CVC, held only sealed until the dispatch
    # used it (tests/integration/test_payments.py opens a sealed one), is gone after it.
    redis = Redis.from_url(stack.redis_url)
    try:
        for _ in range(100):
            if await redis.get(f"cvc:{created[1]}") is None:
                break
            await asyncio.sleep(0.2)
        leftover = await redis.get(f"cvc:{created[1]}")
        keys = [k async for k in redis.scan_iter(count=1000)]
        stored = [await redis.get(k) for k in keys if (await redis.type(k)) == b"string"]
    finally:
        await redis.aclose()
    assert leftover is None, "the CVC outlived its dispatch"
    for value in stored:
        for form in forms:
            assert form.encode() not in (value or b""), "PAN in Redis"
        assert b'"' + AMEX_CVC.encode() + b'"' not in (value or b""), "CVC in Redis"
