"""The real test stack answers: a Kafka round trip, a PostgreSQL query, a Redis PING."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from tests.conftest import StackEnv

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_postgres_query(stack: StackEnv) -> None:
    conn = await asyncpg.connect(stack.pg_dsn, timeout=5)
    try:
        assert await conn.fetchval("SELECT 40 + 2") == 42
        schemas = {r["nspname"] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
    finally:
        await conn.close()
    # make test applied the migrations before the suite.
    assert {"auth", "payments", "consumer"} <= schemas


async def test_redis_ping(stack: StackEnv) -> None:
    client = Redis.from_url(stack.redis_url, socket_timeout=2)
    try:
        assert await client.ping() is True
        key = f"test:{uuid.uuid4()}"
        await client.set(key, "v", ex=10)
        assert await client.get(key) == b"v"
    finally:
        await client.aclose()


async def test_topics_exist_with_explicit_partitions(stack: StackEnv) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        described = await admin.describe_topics(["payments.events", "payments.status"])
    finally:
        await admin.close()
    partitions = {t["topic"]: len(t["partitions"]) for t in described}
    assert partitions == {"payments.events": 6, "payments.status": 6}


async def test_kafka_produce_consume_round_trip(stack: StackEnv) -> None:
    topic = "payments.events"
    key = str(uuid.uuid4()).encode()
    value = b"round-trip " + key
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=10_000,
    )
    await producer.start()
    try:
        meta = await asyncio.wait_for(
            producer.send_and_wait(topic, value, key=key, headers=[("event-type", b"test")]),
            timeout=20,
        )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
    )
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        record = await asyncio.wait_for(consumer.getone(), timeout=20)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (key, value)
    assert dict(record.headers) == {"event-type": b"test"}
