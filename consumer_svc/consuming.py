"""Running a handler over a Kafka topic in a consumer group, safely.

Every consumer group of consumer_svc (the processor, loyalty, benefits, the notification
sink) runs through :class:`ConsumerLoop`: records of a batch are handled concurrently
(bounded), the offset is committed only after every record of the batch had its effect,
failures are retried a bounded number of times with jittered backoff, and a record that
keeps failing, or can never succeed, is parked on ``<topic>.dlq`` with the error so the
group moves on. The lag behind the log end is exported per group.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import Counter, Gauge

from payrail_common.background import BackgroundLoop

log = logging.getLogger(__name__)

PROCESSED = Counter(
    "payrail_consumer_events_total",
    "Records handled, by consumer group and result.",
    ["group", "result"],
)
LAG = Gauge("payrail_consumer_lag_messages", "Messages behind the log end.", ["group"])
LAG_INTERVAL_S = 5.0


class PoisonMessage(Exception):
    """The record cannot be processed however often it is retried."""


TRANSIENT = (grpc.aio.AioRpcError, asyncpg.PostgresError, OSError, asyncio.TimeoutError)
# gRPC codes worth retrying; any other answer from payment_svc is final for this event.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


class ConsumerLoop(BackgroundLoop):
    """Runs a handler over a topic in a consumer group with bounded retries and a DLQ."""

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        handler: Callable[[bytes], Awaitable[str]],
        group: str,
        retries_max: int = 5,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 5.0,
        batch_max: int = 100,
        concurrency_max: int = 16,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._handler = handler
        self._group = group
        self._retries_max = retries_max
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._batch_max = batch_max
        # Records of one batch are handled concurrently (each event is about its own
        # payment); the semaphore bounds the RPCs in flight.
        self._slots = asyncio.Semaphore(concurrency_max)
        self.task_name = f"consumer-{group}"

    async def _run(self) -> None:
        lag_time = 0.0
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000, max_records=self._batch_max)
            for tp, records in batches.items():
                await asyncio.gather(*(self._process(record) for record in records))
                # Commit only after every record of the batch had its effect (or its DLQ).
                await self._consumer.commit({tp: records[-1].offset + 1})
            # The lag of this member's partitions, after work and at least every few
            # seconds while idle (a quiet group reports 0, not its last busy value).
            if batches or time.monotonic() - lag_time > LAG_INTERVAL_S:
                lag_time = time.monotonic()
                await self._report_lag()

    async def _report_lag(self) -> None:
        partitions = list(self._consumer.assignment())
        if not partitions:
            return
        end = await self._consumer.end_offsets(partitions)
        behind = 0
        for tp in partitions:
            behind += max(0, end[tp] - await self._consumer.position(tp))
        LAG.labels(self._group).set(behind)

    async def _process(self, record: Any) -> None:
        async with self._slots:
            await self._process_one(record)

    async def _process_one(self, record: Any) -> None:
        for attempt in range(1, self._retries_max + 1):
            try:
                result = await self._handler(record.value)
                PROCESSED.labels(self._group, result).inc()
                return
            except PoisonMessage as exc:
                await self._dead_letter(record, str(exc))
                return
            except TRANSIENT as exc:
                error = (
                    exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
                )
                if isinstance(exc, grpc.aio.AioRpcError) and exc.code() not in RETRYABLE_CODES:
                    await self._dead_letter(record, f"payment_svc answered {error}")
                    return
                if attempt == self._retries_max:
                    await self._dead_letter(record, f"{error} after {attempt} tries")
                    return
                delay = min(self._backoff_max_s, self._backoff_base_s * 2 ** (attempt - 1))
                log.warning(
                    "event failed; retrying",
                    extra={
                        "topic": record.topic,
                        "offset": record.offset,
                        "attempt": attempt,
                        "error": error,
                    },
                )
                await asyncio.sleep(random.uniform(0, delay))  # noqa: S311 - jitter only

    async def _dead_letter(self, record: Any, error: str) -> None:
        PROCESSED.labels(self._group, "dead_letter").inc()
        log.error(
            "event dead-lettered",
            extra={"topic": record.topic, "offset": record.offset, "error": error},
        )
        await self._producer.send_and_wait(
            f"{record.topic}.dlq",
            record.value,
            key=record.key,
            headers=[
                *(record.headers or ()),
                ("error", error.encode()[:500]),
                ("source-offset", str(record.offset).encode()),
                ("source-partition", str(record.partition).encode()),
            ],
        )
