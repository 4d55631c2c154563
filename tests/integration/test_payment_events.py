"""CreatePayment -> outbox -> Kafka, through the real payment_svc relay and broker."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from grpc_health.v1 import health_pb2, health_pb2_grpc

from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2 as pb
from tests.conftest import StackEnv
from tests.helpers import register_and_login
from tests.integration.conftest import Platform
from tests.integration.test_payments import deposit, stub
from tests.stack_control import kafka_pid, pid_running, stack_up

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

TOPIC = "payments.events"
TOPIC_PARTITIONS = 6  # deploy/local/topics.txt
KAFKA = "payrail.dependency.kafka"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def end_offsets(stack: StackEnv) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
    )
    await consumer.start()
    try:
        parts = [TopicPartition(TOPIC, p) for p in range(TOPIC_PARTITIONS)]
        return dict(await asyncio.wait_for(consumer.end_offsets(parts), timeout=20))
    finally:
        await consumer.stop()


async def events_since(
    stack: StackEnv,
    start: dict[TopicPartition, int],
    user_id: str,
    *,
    want: int,
    timeout_s: float = 60,
) -> list[events_pb2.PaymentEvent]:
    """The user's events published after ``start``; waits (bounded) until ``want`` arrived,
    then reads on briefly so that any extra (unexpected) event is seen too."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[events_pb2.PaymentEvent] = []
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    event = events_pb2.PaymentEvent.FromString(record.value)
                    assert record.key == event.payment_id.encode()
                    headers = dict(record.headers)
                    assert headers["event-id"] == event.event_id.encode()
                    if event.user_id == user_id:
                        found.append(event)
            if len(found) >= want and settle_until is None:
                settle_until = time.monotonic() + 1.0
            if settle_until is not None and time.monotonic() >= settle_until:
                break
    finally:
        await consumer.stop()
    return found


async def wait_for(check: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.2)


async def health(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
    return int(reply.status)


async def test_exactly_the_committed_payments_are_published(
    channel: grpc.aio.Channel, stack: StackEnv
) -> None:
    user = await register_and_login(channel)
    start = await end_offsets(stack)
    accepted = []
    for i in range(5):
        reply = await stub(channel).CreatePayment(
            deposit(amount_minor=100 + i), metadata=user.metadata, timeout=5
        )
        accepted.append(reply.payment.payment_id)
    # Rejected requests (invalid; a key reused with other parameters) publish nothing,
    # and a replay publishes nothing new.
    with pytest.raises(grpc.aio.AioRpcError):
        await stub(channel).CreatePayment(
            deposit(number="4242424242424241"), metadata=user.metadata
        )
    key = str(uuid.uuid4())
    await stub(channel).CreatePayment(deposit(key), metadata=user.metadata)
    await stub(channel).CreatePayment(deposit(key), metadata=user.metadata)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub(channel).CreatePayment(deposit(key, amount_minor=5), metadata=user.metadata)
    events = await events_since(stack, start, user.user_id, want=6)
    created = [e for e in events if e.WhichOneof("kind") == "created"]
    assert len(created) == len(events) == 6
    assert len({e.event_id for e in events}) == 6
    assert set(accepted) < {e.payment_id for e in created}
    for event in created:
        assert event.version == 1
        assert event.created.payment.status == pb.PAYMENT_STATUS_PENDING
        assert event.created.payment.card.masked_number == "424242******4242"
        assert len(event.created.card_fingerprint) == 64


async def test_payments_are_accepted_while_kafka_is_down_and_published_after(
    platform: Platform, channel: grpc.aio.Channel, stack: StackEnv
) -> None:
    _, payment = platform
    user = await register_and_login(channel)
    db = await asyncpg.connect(stack.pg_dsn)
    start = await end_offsets(stack)
    pid = kafka_pid()
    os.kill(pid, signal.SIGTERM)
    kafka_down = True
    try:

        async def broker_gone() -> bool:
            return not pid_running(pid)

        await wait_for(broker_gone, timeout_s=60, what="the broker to exit")
        accepted = []
        started = time.monotonic()
        for _ in range(10):
            reply = await stub(channel).CreatePayment(deposit(), metadata=user.metadata, timeout=5)
            accepted.append(reply.payment.payment_id)
        accept_s = time.monotonic() - started

        async def degraded() -> bool:
            return bool(await health(payment.port, KAFKA) == NOT_SERVING)

        await wait_for(degraded, timeout_s=60, what="health to report Kafka degraded")
        assert await health(payment.port, "") == SERVING  # degraded, still taking payments
        unsent = await db.fetchval(
            "SELECT count(*) FROM payments.outbox"
            " WHERE sent_time IS NULL AND message_key = ANY($1)",
            accepted,
        )
        assert unsent == 10
        await stack_up()
        kafka_down = False

        async def drained() -> bool:
            left = await db.fetchval(
                "SELECT count(*) FROM payments.outbox"
                " WHERE sent_time IS NULL AND message_key = ANY($1)",
                accepted,
            )
            return int(left) == 0

        await wait_for(drained, timeout_s=120, what="the backlog to drain")

        async def recovered() -> bool:
            return bool(await health(payment.port, KAFKA) == SERVING)

        await wait_for(recovered, timeout_s=60, what="health to recover")
    finally:
        if kafka_down:
            await stack_up()
        await db.close()
    events = await events_since(stack, start, user.user_id, want=10)
    assert sorted(e.payment_id for e in events) == sorted(accepted)
    # Accepting did not wait on Kafka: ten payments well inside one request timeout each.
    assert accept_s < 10 * 5
