"""The janitor: nothing stays non-final forever.

Every ``interval_s`` it asks payment_svc to sweep (expire payments that waited too long,
fail those whose gateway never answered within the allowed attempts) and publishes the
re-dispatches the sweep claimed, with the same payment id and a new attempt, so the
gateway can recognise a retry. Claims are exclusive in payment_svc, so several
consumer_svc replicas may run a janitor each.

Then it re-drives stranded payments (:class:`StrandedRedriver`): a payment still PENDING
after ``redrive_after_s`` whose PaymentCreated event the processor group never recorded
in its inbox was never processed (the event went to a dead-letter topic, or was lost to
a crash). Its creation event, byte for byte as the outbox published it, goes to
``payments.events`` again; the processor de-duplicates on the event id, so a re-drive of
an event that was merely slow costs one inbox lookup. ``redrive_after_s`` stays far
below payment_svc's pending TTL, so the payment is processed long before it would expire.

An infrastructure error (payment_svc, PostgreSQL or Kafka unreachable or slow) never
ends the loop: it is logged once per pass and the pass is retried at the next interval,
backing off while it lasts. Anything else propagates to the loop's supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import asyncpg
import grpc
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from consumer_svc.processor import EVENTS_TOPIC, Processor
from payrail.internal.v1 import payment_ops_pb2 as ops
from payrail.internal.v1 import payment_ops_pb2_grpc
from payrail_common import tracing
from payrail_common.background import BackgroundLoop
from payrail_common.faults import describe, full_jitter_backoff_s, is_transient

log = logging.getLogger(__name__)

SWEEP_ACTIONS = ("redispatched", "expired", "timed_out", "redriven")
SWEPT = Counter("payrail_janitor_payments_total", "Payments the janitor acted on.", ["action"])
# Longest wait between two passes while a dependency stays down.
BACKOFF_MAX_S = 60.0
# Rows of consumer.stranded_redrives older than this are forgotten (the payment expired
# or was processed long ago).
_REDRIVES_KEPT_S = 86_400
_PURGE_EVERY_S = 3_600.0

# Claims, in one statement, the candidates the processor group has no inbox row for and
# that were not re-driven within the interval; returns what this janitor may re-drive.
_CLAIM_SQL = """
WITH candidate AS (
    SELECT * FROM unnest($1::text[], $2::text[]) AS c(payment_id, event_id)
    WHERE NOT EXISTS (
        SELECT 1 FROM consumer.inbox i WHERE i.consumer_group = $3 AND i.event_id = c.event_id
    )
)
INSERT INTO consumer.stranded_redrives AS r (payment_id, event_id)
SELECT payment_id, event_id FROM candidate
ON CONFLICT (payment_id) DO UPDATE
    SET redrive_time = now(), redrive_count = r.redrive_count + 1, event_id = EXCLUDED.event_id
    WHERE r.redrive_time < now() - make_interval(secs => $4)
RETURNING payment_id, redrive_count
"""


class StrandedRedriver:
    """Re-publishes the creation event of PENDING payments the processor never handled."""

    def __init__(
        self,
        *,
        ops_stub: payment_ops_pb2_grpc.PaymentOpsServiceStub,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        group: str,
        redrive_after_s: int,
        batch_max: int,
        rpc_timeout_s: float = 10.0,
        send_timeout_s: float = 30.0,
    ) -> None:
        self._ops = ops_stub
        self._pool = pool
        self._producer = producer
        self._group = group
        self._redrive_after_s = redrive_after_s
        self._batch_max = batch_max
        self._rpc_timeout_s = rpc_timeout_s
        self._send_timeout_s = send_timeout_s
        # Pages through the stale payments across passes, so a long list of candidates
        # that must not be re-driven yet never hides the ones after it.
        self._page_token = ""
        self._purged_at = 0.0
        self._unimplemented = False

    async def redrive_once(self) -> int:
        """One page of stale PENDING payments; returns how many were re-driven."""
        if self._unimplemented:
            return 0
        try:
            reply = await self._ops.ListStalePending(
                ops.ListStalePendingRequest(
                    older_than_seconds=self._redrive_after_s,
                    page_size=self._batch_max,
                    page_token=self._page_token,
                ),
                timeout=self._rpc_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            # An older payment_svc during a rolling upgrade: the sweep still runs.
            log.warning("payment_svc cannot list stale payments; re-drive disabled")
            self._unimplemented = True
            return 0
        self._page_token = reply.next_page_token
        stale = [p for p in reply.payments if p.event and p.event_id]
        if not stale:
            return 0
        claimed = await self._claim(stale)
        chosen = [p for p in stale if p.payment_id in claimed]
        # Enqueue all, then wait for every acknowledgment (acks=all, idempotent producer).
        futures = [
            await self._producer.send(
                EVENTS_TOPIC,
                p.event,
                key=p.payment_id.encode(),
                headers=[
                    ("event-type", b"payment.created"),
                    ("event-id", p.event_id.encode()),
                    ("redriven-by", b"janitor"),
                    *tracing.kafka_headers(),
                ],
            )
            for p in chosen
        ]
        async with asyncio.timeout(self._send_timeout_s):
            await asyncio.gather(*futures)
        for p in chosen:
            log.info(
                "re-drove stranded payment",
                extra={
                    "payment_id": p.payment_id,
                    "event_id": p.event_id,
                    "redrive_count": claimed[p.payment_id],
                },
            )
        SWEPT.labels("redriven").inc(len(chosen))
        return len(chosen)

    async def _claim(self, stale: Sequence[ops.StalePayment]) -> dict[str, int]:
        """payment id -> its re-drive count, for the payments this janitor may re-drive."""
        async with self._pool.acquire() as conn:
            if time.monotonic() - self._purged_at > _PURGE_EVERY_S:
                await conn.execute(
                    "DELETE FROM consumer.stranded_redrives"
                    " WHERE redrive_time < now() - make_interval(secs => $1)",
                    _REDRIVES_KEPT_S,
                )
                self._purged_at = time.monotonic()
            rows = await conn.fetch(
                _CLAIM_SQL,
                [p.payment_id for p in stale],
                [p.event_id for p in stale],
                self._group,
                float(self._redrive_after_s),
            )
        return {row["payment_id"]: row["redrive_count"] for row in rows}


class Janitor(BackgroundLoop):
    task_name = "janitor"

    def __init__(
        self,
        *,
        ops_stub: payment_ops_pb2_grpc.PaymentOpsServiceStub,
        processor: Processor,
        interval_s: float,
        batch_max: int,
        rpc_timeout_s: float = 10.0,
        redriver: StrandedRedriver | None = None,
    ) -> None:
        self._ops = ops_stub
        self._processor = processor
        self._interval_s = interval_s
        self._batch_max = batch_max
        self._rpc_timeout_s = rpc_timeout_s
        self._redriver = redriver
        for action in SWEEP_ACTIONS:
            SWEPT.labels(action)  # every series exported from the start, at 0

    async def sweep_once(self) -> int:
        """One pass; returns how many payments it acted on. The pass has a request id of
        its own (``janitor-...``): its RPCs, records and log lines carry it."""
        with tracing.bind(tracing.new_request_id("janitor-")):
            return await self._sweep_once()

    async def _sweep_once(self) -> int:
        reply = await self._ops.Sweep(
            ops.SweepRequest(limit=self._batch_max), timeout=self._rpc_timeout_s
        )
        for dispatch in reply.redispatches:
            if dispatch.dispatch:
                await self._processor.publish(dispatch)
        SWEPT.labels("redispatched").inc(len(reply.redispatches))
        SWEPT.labels("expired").inc(reply.expired_count)
        SWEPT.labels("timed_out").inc(reply.timed_out_count)
        acted = len(reply.redispatches) + int(reply.expired_count) + int(reply.timed_out_count)
        if acted:
            log.info(
                "janitor sweep",
                extra={
                    "redispatched": len(reply.redispatches),
                    "expired": reply.expired_count,
                    "timed_out": reply.timed_out_count,
                },
            )
        # After the sweep: a payment past its TTL expires rather than being re-driven.
        if self._redriver is not None:
            acted += await self._redriver.redrive_once()
        return acted

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                acted = await self.sweep_once()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                log.warning(
                    "janitor pass failed; retrying",
                    extra={"error": describe(exc), "failures": failures},
                )
                # The next interval, later each time while the dependency stays down.
                await asyncio.sleep(
                    self._interval_s
                    + full_jitter_backoff_s(failures, base_s=self._interval_s, max_s=BACKOFF_MAX_S)
                )
                continue
            failures = 0
            # A full pass suggests more work waiting: go again at once.
            if acted < self._batch_max:
                await asyncio.sleep(self._interval_s)
