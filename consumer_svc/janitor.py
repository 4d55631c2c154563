"""The janitor: nothing stays non-final forever.

Every ``interval_s`` it asks payment_svc to sweep (expire payments that waited too long,
fail those whose gateway never answered within the allowed attempts) and publishes the
re-dispatches the sweep claimed, with the same payment id and a new attempt, so the
gateway can recognise a retry. Claims are exclusive in payment_svc, so several
consumer_svc replicas may run a janitor each.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from prometheus_client import Counter

from consumer_svc.processor import Processor
from payrail.internal.v1 import payment_ops_pb2 as ops
from payrail.internal.v1 import payment_ops_pb2_grpc
from payrail_common.background import BackgroundLoop

log = logging.getLogger(__name__)

SWEPT = Counter("payrail_janitor_payments_total", "Payments the janitor acted on.", ["action"])


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
    ) -> None:
        self._ops = ops_stub
        self._processor = processor
        self._interval_s = interval_s
        self._batch_max = batch_max
        self._rpc_timeout_s = rpc_timeout_s

    async def sweep_once(self) -> int:
        """One pass; returns how many payments it acted on."""
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
        return acted

    async def _run(self) -> None:
        while True:
            try:
                acted = await self.sweep_once()
            except (grpc.aio.AioRpcError, OSError) as exc:
                log.warning("janitor sweep failed", extra={"error": type(exc).__name__})
                acted = 0
            # A full pass suggests more work waiting: go again at once.
            if acted < self._batch_max:
                await asyncio.sleep(self._interval_s)
