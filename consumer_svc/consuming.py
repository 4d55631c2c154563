"""Running a handler over a Kafka topic in a consumer group, safely.

Every consumer group of payrail (the processor, loyalty, benefits, the notification sink)
runs through :class:`ConsumerLoop`:

* Records of a batch are handled concurrently (bounded); the offset of a partition is
  committed only after every record of its batch had its effect (or its dead letter).
* Errors are classified by what they mean (:mod:`payrail_common.faults`). A dependency
  that is down or slow (payment_svc UNAVAILABLE, PostgreSQL restarting, a broker gone) is
  **waited for**: the record is retried with capped, jittered backoff for as long as it
  takes, the dependency shows as degraded in the process's health meanwhile, and nothing
  is dead-lettered. Only a record that can never succeed (undecodable, permanently
  invalid: :class:`PoisonMessage`, or a final answer such as FAILED_PRECONDITION) goes to
  ``<topic>.dlq`` with the error; an error nobody can classify is retried a bounded number
  of times first. Producing the dead letter is itself retried until the broker takes it.
* Partition revocation: a batch whose partition was revoked while it was being handled
  (a rebalance, or a member kicked out after a long outage) is not committed — the new
  owner reads it again, and every handler is idempotent.
* Anything unexpected ends ``_run``; the supervisor (:class:`BackgroundLoop`) logs it and
  restarts the loop from the last committed offsets.

Two kinds of handler. A record handler (``handler``) takes one record's bytes; the records
of a batch run concurrently. A batch handler (``batch_handler``) takes the whole batch of
a partition as :class:`Item` values and answers one result per item (a result name, or a
:class:`PoisonMessage` for an item that can never succeed): it can read and write for the
batch at once (one inbox read, one transaction, one RPC...). A transient error of the
whole batch is waited out like a record's; any other error of a batch of several items
falls back to handling the items one at a time (each as a batch of one, with the record
rules above), so one bad record is dead-lettered alone and never holds up the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import Counter, Gauge

from payrail_common import tracing
from payrail_common.background import BackgroundLoop
from payrail_common.faults import Backoff, Fault, classify, dependency_of, describe
from payrail_common.supervision import Supervision, supervision

log = logging.getLogger(__name__)

PROCESSED = Counter(
    "payrail_consumer_events_total",
    "Records handled, by consumer group and result.",
    ["group", "result"],
)
RETRIES = Counter(
    "payrail_consumer_retries_total",
    "Handler retries, by consumer group and what the error meant.",
    ["group", "fault"],
)
WAITING = Gauge(
    "payrail_consumer_waiting_records",
    "Records currently waiting for a dependency to come back.",
    ["group"],
)
LAG = Gauge("payrail_consumer_lag_messages", "Messages behind the log end.", ["group"])
LAG_INTERVAL_S = 5.0


class PoisonMessage(Exception):
    """The record cannot be processed however often it is retried."""


@dataclass(frozen=True)
class Item:
    """One record as a batch handler sees it."""

    value: bytes
    # The request id the record carries (or one made for it): bind it while logging or
    # writing on this item's behalf (payrail_common.tracing).
    request_id: str


BatchHandler = Callable[[Sequence[Item]], Awaitable[Sequence["str | PoisonMessage"]]]


class KafkaConsumer(Protocol):
    """What the loop needs of an AIOKafkaConsumer (the seam for in-memory tests)."""

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = ..., max_records: int | None = ...
    ) -> dict[TopicPartition, list[Any]]: ...

    async def commit(self, offsets: dict[TopicPartition, int] | None = ...) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...

    async def position(self, partition: TopicPartition) -> int: ...


class KafkaProducer(Protocol):
    async def send_and_wait(
        self, topic: str, value: bytes | None = ..., key: bytes | None = ..., **kwargs: Any
    ) -> Any: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How long the loop waits between tries, and how often an unclassified error is
    retried before the record is treated as poison. Transient errors have no bound."""

    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.2, max_s=5.0))
    unknown_tries_max: int = 5
    # A record waiting on a dependency is logged on its first failure and then every
    # this many tries, not on every one.
    log_every_tries: int = 10


class RevocationTracker(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts revocations per partition, so a batch can tell whether it still owns its
    partition when it is about to commit."""

    def __init__(self) -> None:
        self._epochs: dict[TopicPartition, int] = {}

    def epoch(self, tp: TopicPartition) -> int:
        return self._epochs.get(tp, 0)

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._epochs[tp] = self._epochs.get(tp, 0) + 1

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        return None


class ConsumerLoop(BackgroundLoop):
    """Runs a handler over a topic in a consumer group: waits out outages, dead-letters
    only what can never succeed, commits only what it still owns."""

    def __init__(
        self,
        *,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        handler: Callable[[bytes], Awaitable[str]] | None = None,
        batch_handler: BatchHandler | None = None,
        group: str,
        revocations: RevocationTracker | None = None,
        retry: RetryPolicy | None = None,
        grpc_upstream: str = "payment_svc",
        batch_max: int = 100,
        linger_ms: int = 0,
        concurrency_max: int = 16,
        registry: Supervision | None = None,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        self._consumer = consumer
        self._producer = producer
        self._handler = handler
        self._batch_handler = batch_handler
        self._group = group
        self._revocations = revocations or RevocationTracker()
        self._retry = retry or RetryPolicy()
        self._grpc_upstream = grpc_upstream
        self._batch_max = batch_max
        if linger_ms < 0:
            raise ValueError("linger_ms must be >= 0")
        self._linger_s = linger_ms / 1000
        self._health = registry or supervision
        self.registry = registry
        # Records of one batch are handled concurrently (each event is about its own
        # payment); the semaphore bounds the RPCs in flight.
        self._slots = asyncio.Semaphore(concurrency_max)
        self.task_name = f"consumer-{group}"

    @property
    def revocations(self) -> RevocationTracker:
        """Pass this as the consumer's rebalance listener (``subscribe(listener=...)``)."""
        return self._revocations

    async def _run(self) -> None:
        lag_time = 0.0
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000, max_records=self._batch_max)
            if batches:
                await self.handle_batches(await self._linger(batches))
            # The lag of this member's partitions, at most every LAG_INTERVAL_S, busy or
            # idle (each report is a ListOffsets round trip to the broker; a quiet group
            # reports 0 within the interval, not its last busy value).
            if time.monotonic() - lag_time > LAG_INTERVAL_S:
                lag_time = time.monotonic()
                await self._report_lag()

    async def _linger(
        self, batches: dict[TopicPartition, list[Any]]
    ) -> dict[TopicPartition, list[Any]]:
        """Wait linger_ms for the records that arrive meanwhile (the consumer keeps
        fetching in the background) and add them, each partition's after its own, up to
        batch_max in all."""
        room = self._batch_max - sum(len(records) for records in batches.values())
        if self._linger_s <= 0 or room <= 0:
            return batches
        await asyncio.sleep(self._linger_s)
        more = await self._consumer.getmany(timeout_ms=0, max_records=room)
        for tp, records in more.items():
            batches.setdefault(tp, []).extend(records)
        return batches

    async def handle_batch(self, tp: TopicPartition, records: list[Any]) -> bool:
        """Handle one partition's batch and commit it; False when the partition was
        revoked meanwhile (nothing committed: the new owner reads it again)."""
        return (await self.handle_batches({tp: records}))[tp]

    async def handle_batches(
        self, batches: Mapping[TopicPartition, list[Any]]
    ) -> dict[TopicPartition, bool]:
        """Handle what one poll returned, every partition's records together, as one
        batch (one handler call, one commit): a poll at a modest rate holds a record or
        two per partition, and the handler's fixed cost (an inbox read, a transaction, an
        RPC) is paid per call. Records of one partition stay in their order (a payment's
        events share a key, so a partition). Per partition: True when committed, False
        when it was revoked meanwhile (nothing committed for it: the new owner reads it
        again)."""
        epochs = {tp: self._revocations.epoch(tp) for tp in batches}
        records = [record for tp_records in batches.values() for record in tp_records]
        if self._batch_handler is not None:
            await self._process_batch(self._batch_handler, records)
        else:
            await asyncio.gather(*(self._process(record) for record in records))
        offsets = {tp: tp_records[-1].offset + 1 for tp, tp_records in batches.items()}
        return await self._commit(offsets, epochs)

    async def _process_batch(self, handle: BatchHandler, records: list[Any]) -> None:
        """The whole batch in one call; transient errors waited out, anything else
        isolated by handling the records one at a time."""
        items = [_item(record, self._group) for record in records]
        tries = 0
        waiting = False
        try:
            while True:
                try:
                    results = await handle(items)
                except Exception as exc:
                    fault = classify(exc)
                    if fault is not Fault.TRANSIENT or isinstance(exc, PoisonMessage):
                        log.warning(
                            "batch failed; handling its records one at a time",
                            extra={
                                "group": self._group,
                                "records": len(records),
                                "error": describe(exc),
                                "fault": fault.value,
                            },
                        )
                        await self._one_by_one(handle, records, items)
                        return
                    tries += 1
                    RETRIES.labels(self._group, fault.value).inc()
                    self._health.degrade(dependency_of(exc, grpc_upstream=self._grpc_upstream))
                    if not waiting:
                        waiting = True
                        WAITING.labels(self._group).inc(len(records))
                    if tries % self._retry.log_every_tries == 1:
                        log.warning(
                            "batch failed; retrying",
                            extra={
                                "group": self._group,
                                "records": len(records),
                                "first_offset": records[0].offset,
                                "tries": tries,
                                "error": describe(exc),
                            },
                        )
                    await self._retry.backoff.sleep(tries)
                    continue
                if len(results) != len(records):
                    raise RuntimeError(
                        f"batch handler answered {len(results)} results for {len(records)}"
                    )
                for record, item, result in zip(records, items, results, strict=True):
                    if isinstance(result, PoisonMessage):
                        with tracing.bind(item.request_id):
                            await self._dead_letter(record, str(result))
                    else:
                        PROCESSED.labels(self._group, result).inc()
                if tries:
                    log.info(
                        "batch handled after retries",
                        extra={"group": self._group, "records": len(records), "tries": tries},
                    )
                return
        finally:
            if waiting:
                WAITING.labels(self._group).dec(len(records))

    async def _one_by_one(
        self, handle: BatchHandler, records: list[Any], items: list[Item]
    ) -> None:
        for record, item in zip(records, items, strict=True):

            async def alone(_value: bytes, item: Item = item) -> str:
                (result,) = await handle([item])
                if isinstance(result, PoisonMessage):
                    raise result
                return result

            with tracing.bind(item.request_id):
                await self._process_one(record, alone)

    async def _commit(
        self, offsets: Mapping[TopicPartition, int], epochs: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, bool]:
        committed = dict.fromkeys(offsets, False)
        tries = 0
        while True:
            ours = {}
            for tp, offset in offsets.items():
                if (
                    self._revocations.epoch(tp) != epochs[tp]
                    or tp not in self._consumer.assignment()
                ):
                    log.warning(
                        "partition revoked during its batch; not committing",
                        extra={"group": self._group, "partition": tp.partition, "offset": offset},
                    )
                else:
                    ours[tp] = offset
            if not ours:
                return committed
            try:
                await self._consumer.commit(ours)
                committed.update(dict.fromkeys(ours, True))
                return committed
            except (CommitFailedError, IllegalStateError):
                # The group moved on (rebalance) or a partition is gone: not ours.
                log.warning(
                    "commit refused after a rebalance; the new owner re-reads the batch",
                    extra={
                        "group": self._group,
                        "partitions": sorted(tp.partition for tp in ours),
                    },
                )
                return committed
            except Exception as exc:
                tries += 1
                await self._wait_for_kafka("commit failed; retrying", exc, tries)

    async def _wait_for_kafka(self, what: str, exc: Exception, tries: int) -> None:
        """Back off before trying a Kafka call again; re-raise what waiting cannot fix."""
        if classify(exc) is not Fault.TRANSIENT:
            raise exc
        self._health.degrade("kafka")
        if tries % self._retry.log_every_tries == 1:
            log.warning(what, extra={"group": self._group, "error": describe(exc), "tries": tries})
        await self._retry.backoff.sleep(tries)

    async def _report_lag(self) -> None:
        partitions = list(self._consumer.assignment())
        if not partitions:
            return
        try:
            end = await self._consumer.end_offsets(partitions)
            behind = 0
            for tp in partitions:
                behind += max(0, end[tp] - await self._consumer.position(tp))
        except Exception as exc:
            if classify(exc) is not Fault.TRANSIENT:
                raise
            return  # a gauge can wait for the next round
        LAG.labels(self._group).set(behind)

    async def _process(self, record: Any) -> None:
        # Each record runs in a task of its own (gather): the request id it carries is
        # bound for everything it causes here, and nowhere else.
        async with self._slots:
            headers = getattr(record, "headers", None)
            with tracing.bind_from_headers(headers, prefix=f"{self._group}-"):
                assert self._handler is not None
                await self._process_one(record, self._handler)

    async def _process_one(self, record: Any, handle: Callable[[bytes], Awaitable[str]]) -> None:
        tries = unknown_tries = 0
        waiting = False
        try:
            while True:
                try:
                    result = await handle(record.value)
                except PoisonMessage as exc:
                    await self._dead_letter(record, str(exc))
                    return
                except Exception as exc:
                    fault = classify(exc)
                    error = describe(exc)
                    if fault is Fault.PERMANENT:
                        await self._dead_letter(record, self._final(exc))
                        return
                    tries += 1
                    RETRIES.labels(self._group, fault.value).inc()
                    if fault is Fault.UNKNOWN:
                        unknown_tries += 1
                        if unknown_tries >= self._retry.unknown_tries_max:
                            await self._dead_letter(record, f"{error} after {unknown_tries} tries")
                            return
                    else:
                        dependency = dependency_of(exc, grpc_upstream=self._grpc_upstream)
                        self._health.degrade(dependency)
                        if not waiting:
                            waiting = True
                            WAITING.labels(self._group).inc()
                    if tries % self._retry.log_every_tries == 1:
                        log.warning(
                            "record failed; retrying",
                            extra={
                                "group": self._group,
                                "topic": record.topic,
                                "partition": record.partition,
                                "offset": record.offset,
                                "tries": tries,
                                "error": error,
                                "fault": fault.value,
                            },
                        )
                    await self._retry.backoff.sleep(tries)
                    continue
                PROCESSED.labels(self._group, result).inc()
                if tries:
                    log.info(
                        "record handled after retries",
                        extra={"group": self._group, "offset": record.offset, "tries": tries},
                    )
                return
        finally:
            if waiting:
                WAITING.labels(self._group).dec()

    def _final(self, exc: BaseException) -> str:
        if isinstance(exc, grpc.aio.AioRpcError):
            return f"{self._grpc_upstream} answered {exc.code().name}"
        return f"permanent error: {describe(exc)}"

    async def _dead_letter(self, record: Any, error: str) -> None:
        log.error(
            "event dead-lettered",
            extra={
                "group": self._group,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "error": error,
            },
        )
        headers = [
            *(record.headers or ()),
            ("error", error.encode()[:500]),
            ("source-offset", str(record.offset).encode()),
            ("source-partition", str(record.partition).encode()),
            ("dead-letter-group", self._group.encode()),
        ]
        tries = 0
        while True:
            try:
                await self._producer.send_and_wait(
                    f"{record.topic}.dlq", record.value, key=record.key, headers=headers
                )
                break
            except Exception as exc:
                tries += 1
                await self._wait_for_kafka("dead letter not taken yet; retrying", exc, tries)
        PROCESSED.labels(self._group, "dead_letter").inc()


def _item(record: Any, group: str) -> Item:
    headers = getattr(record, "headers", None)
    with tracing.bind_from_headers(headers, prefix=f"{group}-") as request_id:
        return Item(record.value, request_id)


async def start_group(
    *,
    bootstrap_servers: str,
    topic: str,
    group: str,
    client_id: str,
    handler: Callable[[bytes], Awaitable[str]] | None = None,
    batch_handler: BatchHandler | None = None,
    producer: KafkaProducer,
    grpc_upstream: str = "payment_svc",
    batch_max: int = 100,
    linger_ms: int = 0,
) -> tuple[ConsumerLoop, AIOKafkaConsumer]:
    """Join ``group`` on ``topic`` and start a :class:`ConsumerLoop` over it. The caller
    stops the loop first, then the consumer (which leaves the group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        # A new group starts from the oldest event still kept.
        auto_offset_reset="earliest",
        # A member whose batch waits longer than this for a dependency is dropped from
        # the group; its commit is then refused and the next poll rejoins.
        max_poll_interval_ms=300_000,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
    )
    loop = ConsumerLoop(
        consumer=consumer,
        producer=producer,
        handler=handler,
        batch_handler=batch_handler,
        group=group,
        grpc_upstream=grpc_upstream,
        batch_max=batch_max,
        linger_ms=linger_ms,
    )
    consumer.subscribe([topic], listener=loop.revocations)
    await consumer.start()
    loop.start()
    return loop, consumer
