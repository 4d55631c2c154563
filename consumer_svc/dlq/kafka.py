"""Reading dead-letter topics and re-driving letters, over Kafka.

Reading uses manually assigned partitions and no consumer group: listing commits
nothing and never moves anyone's offsets. Re-driving uses an idempotent producer with
``acks="all"`` and waits for each acknowledgment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumer_svc.dlq.letters import DLQ_SUFFIX, DeadLetter, LetterId, redrive_headers

CLIENT_ID = "payrail-dlq-cli"
# Letters read per fetch, and the most one listing holds in memory.
FETCH_MAX = 500
LETTERS_MAX = 100_000


class DeadLetterError(Exception):
    """A request the dead-letter topics cannot answer (no such topic or partition)."""


def _record(record: Any) -> DeadLetter:
    return DeadLetter(
        id=LetterId(record.topic, record.partition, record.offset),
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value or b"",
        headers=tuple((k, bytes(v)) for k, v in (record.headers or ())),
    )


async def dlq_partitions(
    bootstrap: str, topics: Sequence[str] | None, *, timeout_s: float
) -> list[TopicPartition]:
    """The partitions of ``topics`` (every ``*.dlq`` topic of the cluster when None)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id=CLIENT_ID, request_timeout_ms=int(timeout_s * 1000)
    )
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = await asyncio.wait_for(admin.list_topics(), timeout_s)
        if topics is None:
            wanted = sorted(t for t in existing if t.endswith(DLQ_SUFFIX))
        else:
            missing = sorted(set(topics) - set(existing))
            if missing:
                raise DeadLetterError(f"no such topic: {', '.join(missing)}")
            wanted = sorted(set(topics))
        if not wanted:
            return []
        described = await asyncio.wait_for(admin.describe_topics(wanted), timeout_s)
    finally:
        await admin.close()
    return sorted(
        TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
    )


def _consumer(bootstrap: str, timeout_s: float) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        client_id=CLIENT_ID,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=int(timeout_s * 1000),
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )


async def read_letters(
    bootstrap: str, partitions: Sequence[TopicPartition], *, timeout_s: float
) -> list[DeadLetter]:
    """Every letter of ``partitions``, from the beginning up to the end offsets seen when
    the read started (a letter parked meanwhile is left for the next listing)."""
    if not partitions:
        return []
    consumer = _consumer(bootstrap, timeout_s)
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        consumer.assign(list(partitions))
        end = await asyncio.wait_for(consumer.end_offsets(list(partitions)), timeout_s)
        await consumer.seek_to_beginning(*partitions)
        letters: list[DeadLetter] = []
        async with asyncio.timeout(timeout_s):
            while True:
                pending = [tp for tp in partitions if await consumer.position(tp) < end[tp]]
                if not pending or len(letters) >= LETTERS_MAX:
                    return letters
                batch = await consumer.getmany(*pending, timeout_ms=500, max_records=FETCH_MAX)
                for tp, records in batch.items():
                    letters += [_record(r) for r in records if r.offset < end[tp]]
    finally:
        await consumer.stop()


async def fetch_letters(
    bootstrap: str, ids: Sequence[LetterId], *, timeout_s: float
) -> list[DeadLetter]:
    """The letters at ``ids``; an id past the end of its partition, or compacted away, is
    simply not in the answer."""
    if not ids:
        return []
    wanted = {(i.topic, i.partition, i.offset) for i in ids}
    partitions = sorted({TopicPartition(i.topic, i.partition) for i in ids})
    consumer = _consumer(bootstrap, timeout_s)
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        consumer.assign(partitions)
        end = await asyncio.wait_for(consumer.end_offsets(partitions), timeout_s)
        found: list[DeadLetter] = []
        async with asyncio.timeout(timeout_s):
            for tp in partitions:
                offsets = sorted(i.offset for i in ids if (i.topic, i.partition) == tuple(tp))
                for offset in offsets:
                    if offset >= end[tp] or LetterId(tp.topic, tp.partition, offset) in {
                        letter.id for letter in found
                    }:
                        continue
                    consumer.seek(tp, offset)
                    while await consumer.position(tp) <= offset < end[tp]:
                        batch = await consumer.getmany(tp, timeout_ms=500, max_records=FETCH_MAX)
                        found += [
                            _record(r)
                            for r in batch.get(tp, [])
                            if (r.topic, r.partition, r.offset) in wanted
                        ]
        return found
    finally:
        await consumer.stop()


class Redriver:
    """An idempotent, acks=all producer that sends letters back to their topic."""

    def __init__(self, bootstrap: str, *, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=CLIENT_ID,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=int(timeout_s * 1000),
        )

    async def __aenter__(self) -> Redriver:
        await asyncio.wait_for(self._producer.start(), self._timeout_s)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, letter: DeadLetter) -> None:
        """Send ``letter`` to its source topic and wait for the acknowledgment."""
        await asyncio.wait_for(
            self._producer.send_and_wait(
                letter.source_topic,
                letter.value,
                key=letter.key,
                headers=redrive_headers(letter),
            ),
            self._timeout_s,
        )
