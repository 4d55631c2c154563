"""End-to-end latency, accepted -> COMPLETED, observed on the ``payments.status`` topic.

One aiokafka consumer (no group; every partition assigned, starting at the end) reads
the status fan-out the platform publishes for every change. That costs the system
nothing extra per payment, unlike one WatchPayment stream per payment, which would add
a stream, a LISTEN/NOTIFY fan-out and several RPC hops per request to the load being
measured. "Accepted" is the moment the client received CreatePayment's OK; "completed"
is the moment the COMPLETED status event reached this consumer. Both are read from the
same (event-loop) clock in the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2

log = logging.getLogger(__name__)

STATUS_TOPIC = "payments.status"
FINAL_FAILURES = {
    payments_pb2.PAYMENT_STATUS_FAILED,
    payments_pb2.PAYMENT_STATUS_DENIED,
    payments_pb2.PAYMENT_STATUS_CANCELED,
    payments_pb2.PAYMENT_STATUS_EXPIRED,
}


@dataclass
class E2ESample:
    accepted_s: float  # loop clock
    latency_s: float
    phase: str
    # Accepted -> PROCESSING seen (risk, routing, dispatch); NaN when not observed. The
    # rest of latency_s is the gateway, its callback and settlement.
    dispatch_s: float = math.nan


@dataclass
class CompletionTracker:
    """Matches accepted payments with their COMPLETED (or other final) status event."""

    bootstrap: str
    phase: str = ""
    samples: list[E2ESample] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)
    # Per phase: payments accepted, and those that ended otherwise than COMPLETED.
    accepted_by_phase: dict[str, int] = field(default_factory=dict)
    failed_by_phase: dict[str, int] = field(default_factory=dict)
    _accepted: dict[str, tuple[float, str]] = field(default_factory=dict)
    # Final events that arrived before the client had read its CreatePayment answer.
    _early: dict[str, float] = field(default_factory=dict)
    # When PROCESSING was seen, for accepted payments not final yet.
    _processing: dict[str, float] = field(default_factory=dict)
    # Set whenever no accepted payment is waiting for its final status.
    _settled: asyncio.Event = field(default_factory=asyncio.Event)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Subscribed without a group: aiokafka assigns every partition of the topic.
        consumer = AIOKafkaConsumer(
            STATUS_TOPIC,
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            # Only matters while idle (data ends a fetch at once); short waits would poll
            # the broker 6 partitions x 50 times a second for nothing.
            fetch_max_wait_ms=200,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            client_id="payrail-bench",
        )
        await consumer.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not consumer.assignment():
            if loop.time() > deadline:
                await consumer.stop()
                raise RuntimeError(f"no partitions of {STATUS_TOPIC} at {self.bootstrap}")
            await asyncio.sleep(0.1)
        tps = sorted(consumer.assignment())
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before any payment is created
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="bench-completions")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    def accepted(self, payment_id: str, at_s: float) -> None:
        self.accepted_by_phase[self.phase] = self.accepted_by_phase.get(self.phase, 0) + 1
        early = self._early.pop(payment_id, None)
        if early is not None:
            self.samples.append(E2ESample(at_s, max(0.0, early - at_s), self.phase))
            return
        self._accepted[payment_id] = (at_s, self.phase)
        self._settled.clear()

    @property
    def outstanding(self) -> int:
        """Accepted payments whose final status has not been seen yet."""
        return len(self._accepted)

    def forget_outstanding(self) -> int:
        count = len(self._accepted)
        self._accepted.clear()
        self._early.clear()
        self._processing.clear()
        self._settled.set()
        return count

    async def wait_settled(self, timeout_s: float) -> int:
        """Wait until every accepted payment reached a final state; return the remainder."""
        if self._accepted:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), timeout=timeout_s)
        return len(self._accepted)

    async def _run(self) -> None:
        assert self._consumer is not None
        loop = asyncio.get_running_loop()
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            now = loop.time()
            for records in batches.values():
                for record in records:
                    self._on_event(record.value, now)
            if not self._accepted:
                self._settled.set()

    def _on_event(self, raw: bytes, now: float) -> None:
        event = events_pb2.PaymentEvent.FromString(raw)
        if event.WhichOneof("kind") != "status_changed":
            return
        status = event.status_changed.payment.status
        if status == payments_pb2.PAYMENT_STATUS_PROCESSING:
            if event.payment_id in self._accepted:
                self._processing[event.payment_id] = now
        elif status == payments_pb2.PAYMENT_STATUS_COMPLETED:
            entry = self._accepted.pop(event.payment_id, None)
            processing = self._processing.pop(event.payment_id, math.nan)
            if entry is None:
                self._early[event.payment_id] = now
                return
            self.samples.append(
                E2ESample(entry[0], now - entry[0], entry[1], processing - entry[0])
            )
        elif status in FINAL_FAILURES:
            name = payments_pb2.PaymentStatus.Name(status).removeprefix("PAYMENT_STATUS_")
            reason = f"{name}:{event.status_changed.payment.failure_code}"
            self._processing.pop(event.payment_id, None)
            entry = self._accepted.pop(event.payment_id, None)
            if entry is not None:
                self.failed[reason] = self.failed.get(reason, 0) + 1
                self.failed_by_phase[entry[1]] = self.failed_by_phase.get(entry[1], 0) + 1

    def phase_samples(self, phase: str) -> list[E2ESample]:
        return [s for s in self.samples if s.phase == phase]

    def completed_between(self, start_s: float, end_s: float) -> int:
        """Payments seen COMPLETED between two loop times (whenever they were accepted)."""
        return sum(1 for s in self.samples if start_s <= s.accepted_s + s.latency_s <= end_s)
