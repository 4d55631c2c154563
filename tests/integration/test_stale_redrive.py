"""ListStalePending and the janitor's re-drive against the real payment_svc, PostgreSQL
and Kafka: the same event again, once per interval across janitors, never after the
processor recorded it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer_svc.dlq.kafka import dlq_partitions
from consumer_svc.janitor import StrandedRedriver
from payrail.events.v1 import events_pb2
from payrail.internal.v1 import payment_ops_pb2 as ops
from payrail.internal.v1 import payment_ops_pb2_grpc
from payrail_common.authn import ServiceTokenClientInterceptor
from payrail_common.keys import read_secret_file
from tests.conftest import JwtKeys, StackEnv
from tests.helpers import register_and_login
from tests.integration.conftest import Platform
from tests.integration.test_payments import deposit, stub

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

REDRIVE_AFTER_S = 2


@pytest_asyncio.fixture(loop_scope="session")
async def ops_stub(
    platform: Platform, jwt_keys: JwtKeys
) -> AsyncIterator[payment_ops_pb2_grpc.PaymentOpsServiceStub]:
    token = read_secret_file(jwt_keys.internal_token_path)
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{platform[1].port}", interceptors=[ServiceTokenClientInterceptor(token)]
    ) as channel:
        yield payment_ops_pb2_grpc.PaymentOpsServiceStub(channel)


async def published_payload(
    db: asyncpg.Connection | asyncpg.Pool, payment_id: str
) -> tuple[str, bytes]:
    for _ in range(100):
        row = await db.fetchrow(
            "SELECT event_id, payload FROM payments.outbox WHERE message_key = $1"
            " AND event_type = 'payment.created' AND sent_time IS NOT NULL",
            payment_id,
        )
        if row is not None:
            return str(row["event_id"]), bytes(row["payload"])
        await asyncio.sleep(0.1)
    raise AssertionError("the outbox relay never published the creation event")


async def test_stale_pending_payments_are_listed_with_their_creation_event(
    channel: grpc.aio.Channel,
    stack: StackEnv,
    ops_stub: payment_ops_pb2_grpc.PaymentOpsServiceStub,
) -> None:
    user = await register_and_login(channel)
    created = await stub(channel).CreatePayment(deposit(), metadata=user.metadata)
    payment_id = created.payment.payment_id
    db = await asyncpg.connect(stack.pg_dsn)
    try:
        event_id, payload = await published_payload(db, payment_id)
    finally:
        await db.close()
    fresh = await ops_stub.ListStalePending(
        ops.ListStalePendingRequest(older_than_seconds=3600, page_size=1000), timeout=5
    )
    assert payment_id not in [p.payment_id for p in fresh.payments]
    await asyncio.sleep(1.1)
    found: list[ops.StalePayment] = []
    token, pages = "", 0
    while pages == 0 or token:
        page = await ops_stub.ListStalePending(
            ops.ListStalePendingRequest(older_than_seconds=1, page_size=5, page_token=token),
            timeout=5,
        )
        found += [p for p in page.payments if p.payment_id == payment_id]
        token, pages = page.next_page_token, pages + 1
        assert pages < 10_000
    [ours] = found
    assert (ours.event_id, ours.event) == (event_id, payload)
    assert events_pb2.PaymentEvent.FromString(ours.event).WhichOneof("kind") == "created"
    for bad in (
        ops.ListStalePendingRequest(older_than_seconds=0, page_size=5),
        ops.ListStalePendingRequest(older_than_seconds=1, page_size=0),
        ops.ListStalePendingRequest(older_than_seconds=1, page_size=5, page_token="nonsense"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ops_stub.ListStalePending(bad, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def redriven_records(
    stack: StackEnv, start: dict[TopicPartition, int], key: bytes
) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        end = await consumer.end_offsets(list(start))
        found: list[Any] = []
        while [tp for tp in start if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [r for r in records if r.key == key and dict(r.headers).get("redriven-by")]
        return found
    finally:
        await consumer.stop()


async def test_two_janitors_redrive_a_stranded_payment_once_per_interval(
    channel: grpc.aio.Channel,
    stack: StackEnv,
    ops_stub: payment_ops_pb2_grpc.PaymentOpsServiceStub,
) -> None:
    group = f"it-processor-{uuid.uuid4().hex[:8]}"
    user = await register_and_login(channel)
    created = await stub(channel).CreatePayment(deposit(), metadata=user.metadata)
    payment_id = created.payment.payment_id
    partitions = await dlq_partitions(stack.kafka_bootstrap, ["payments.events"], timeout_s=10)
    probe = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    await probe.start()
    try:
        start = dict(await probe.end_offsets(partitions))
    finally:
        await probe.stop()
    pool = await asyncpg.create_pool(stack.pg_dsn, min_size=1, max_size=4)
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    janitors = [
        StrandedRedriver(
            ops_stub=ops_stub,
            pool=pool,
            producer=producer,
            group=group,
            redrive_after_s=REDRIVE_AFTER_S,
            batch_max=1000,
        )
        for _ in range(2)
    ]

    async def count() -> int:
        value = await pool.fetchval(
            "SELECT redrive_count FROM consumer.stranded_redrives WHERE payment_id = $1",
            payment_id,
        )
        return int(value or 0)

    async def passes(rounds: int) -> None:
        for _ in range(rounds):
            await asyncio.gather(*(j.redrive_once() for j in janitors))

    try:
        event_id, payload = await published_payload(pool, payment_id)
        await asyncio.sleep(REDRIVE_AFTER_S + 0.2)
        for _ in range(50):  # other tests' PENDING payments may come first
            await passes(1)
            if await count():
                break
        await passes(2)  # within the interval: nobody sends it again
        assert await count() == 1
        await asyncio.sleep(REDRIVE_AFTER_S + 0.2)
        await passes(2)  # still unprocessed after an interval: once more
        assert await count() == 2
        await pool.execute(
            "INSERT INTO consumer.inbox (consumer_group, event_id, topic)"
            " VALUES ($1, $2, 'payments.events')",
            group,
            event_id,
        )
        await asyncio.sleep(REDRIVE_AFTER_S + 0.2)
        await passes(2)  # the processor has it now: never again
        assert await count() == 2
        records = await redriven_records(stack, start, payment_id.encode())
    finally:
        await producer.stop()
        await pool.close()
    assert len(records) == 2
    assert all(r.value == payload for r in records)
    assert all(dict(r.headers)["event-id"] == event_id.encode() for r in records)
