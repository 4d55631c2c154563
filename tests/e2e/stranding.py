"""Making a payment whose creation event the processor never sees, on the real stack.

consumer_svc is stopped (SIGTERM: it leaves its group), a payment is accepted and its
PaymentCreated event published, the processor group's offsets are moved past it, and
consumer_svc starts again: the event is in Kafka, the group never reads it, and the
payment waits in PENDING, exactly as when the event went to a dead-letter topic.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumer_svc.dlq.kafka import dlq_partitions
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.conftest import StackEnv
from tests.e2e.conftest import Running
from tests.helpers import User

EVENTS_TOPIC = "payments.events"


@dataclass(frozen=True)
class Stranded:
    payment_id: str
    event_id: str
    # The record of the creation event on payments.events.
    record: Any


async def _events_end(stack: StackEnv) -> dict[TopicPartition, int]:
    partitions = await dlq_partitions(stack.kafka_bootstrap, [EVENTS_TOPIC], timeout_s=10)
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def _find_record(stack: StackEnv, start: dict[TopicPartition, int], key: bytes) -> Any:
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.key == key:
                        return record
        raise AssertionError("the creation event never reached payments.events")
    finally:
        await consumer.stop()


async def _skip_group_past(stack: StackEnv, group: str, end: dict[TopicPartition, int]) -> None:
    """Commit ``end`` for ``group``; retried while the stopped member is still leaving."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(end))
        deadline = time.monotonic() + 30
        while True:
            try:
                await consumer.commit(end)
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)
    finally:
        await consumer.stop()


async def strand_payment(
    edge: grpc.aio.Channel,
    stack: StackEnv,
    consumer: Running,
    user: User,
    message: pb.CreatePaymentRequest,
) -> Stranded:
    """Accept ``message`` while the processor cannot see its creation event; consumer_svc
    runs again (its group past the event) when this returns."""
    assert consumer.env is not None
    group = consumer.env["PAYRAIL_PROCESSOR_GROUP"]
    consumer.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(consumer.process.wait, 30)
    start = await _events_end(stack)
    reply = await payments_pb2_grpc.PaymentServiceStub(edge).CreatePayment(
        message, metadata=user.metadata, timeout=5
    )
    payment_id = reply.payment.payment_id
    record = await _find_record(stack, start, payment_id.encode())
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        event_id = await conn.fetchval(
            "SELECT event_id FROM payments.outbox WHERE message_key = $1"
            " AND event_type = 'payment.created'",
            payment_id,
        )
    finally:
        await conn.close()
    await _skip_group_past(stack, group, await _events_end(stack))
    await asyncio.to_thread(consumer.restart)
    return Stranded(payment_id, str(uuid.UUID(str(event_id))), record)


async def inbox_has(stack: StackEnv, group: str, event_id: str) -> bool:
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        return bool(
            await conn.fetchval(
                "SELECT true FROM consumer.inbox WHERE consumer_group = $1 AND event_id = $2",
                group,
                event_id,
            )
        )
    finally:
        await conn.close()
