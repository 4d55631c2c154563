"""Waiting for a quiet platform: no outbox backlog and no consumer lag.

Payments accepted in one phase keep the pipeline (relay, processor, gateways, callbacks)
busy after the phase ends; measuring the next phase on top of that backlog would charge
it for the previous one. Before each phase the run waits (bounded) until the outbox has
no unsent rows and the processor and sandbox gateway groups have consumed their topics.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

# (consumer group, topic) pairs of the processing pipeline `make up` runs (the processor's
# group as consumer_svc reads it).
PIPELINE_GROUPS = (
    (os.environ.get("PAYRAIL_PROCESSOR_GROUP") or "payrail-processor", "payments.events"),
    ("sandbox-json", "gateway.sandbox-json.requests"),
    ("sandbox-soap", "gateway.sandbox-soap.requests"),
)
_BACKLOG_SQL = "SELECT count(*) FROM payments.outbox WHERE sent_time IS NULL"


async def pipeline_lag(bootstrap: str) -> int:
    """Messages the pipeline's groups have not committed yet, over all their topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        total = 0
        for group, topic in PIPELINE_GROUPS:
            committed = {
                tp: meta.offset
                for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
                if tp.topic == topic
            }
            if not committed:
                continue  # the group never ran (e.g. no SOAP traffic yet)
            ends = await consumer.end_offsets(list(committed))
            total += sum(max(0, ends[tp] - offset) for tp, offset in committed.items())
        return total
    finally:
        await consumer.stop()
        await admin.close()


async def wait_quiet(pg: Any, bootstrap: str, *, timeout_s: float) -> tuple[int, int]:
    """Wait until the outbox is drained and the pipeline groups have no lag.

    Returns the last (outbox backlog, consumer lag) seen; non-zero means the timeout hit.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        backlog: int = await pg.fetchval(_BACKLOG_SQL, timeout=5)
        try:
            lag = await pipeline_lag(bootstrap)
        except Exception:
            lag = -1  # unknown: Kafka did not answer; only the backlog counts
        if (backlog == 0 and lag <= 0) or loop.time() > deadline:
            return backlog, lag
        await asyncio.sleep(1.0)
