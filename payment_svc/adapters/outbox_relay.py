"""The transactional-outbox relay: publishes ``payments.outbox`` rows to Kafka.

A use case writes its state change and its outbox rows in one PostgreSQL transaction;
this relay delivers those rows to Kafka afterwards, at least once, and marks a row sent
only after the broker acknowledged it (``acks="all"``, idempotent producer).

How a cycle works:

1. Claim up to ``batch_max`` unsent rows in a transaction with ``FOR UPDATE SKIP LOCKED``:
   several relays (one per payment_svc process) each take disjoint rows, and a relay that
   dies mid-batch releases its rows by rolling back.
2. Send every claimed row (key = ``message_key``, value = ``payload``, headers
   ``event-type``, ``event-id`` and, when the row has one, ``x-request-id``), then wait
   for the acknowledgments, bounded by
   ``ack_timeout_s``.
3. In the same transaction, mark the acknowledged rows sent and record ``attempts`` and a
   short ``last_error`` on the others, then commit. A crash between the acknowledgment
   and the commit re-sends those rows later: delivery is at least once, and consumers
   de-duplicate by event id.

Per-stream order: rows of one (topic, message key) are sent in id order, and a row whose
earlier sibling is still unsent but held by another relay is left for later, so two relays
never race two events of the same payment onto the partition out of order.

Waking: a dedicated connection LISTENs on ``payments_outbox`` (the outbox trigger NOTIFYs
at commit), so a committed row is published within milliseconds; ``poll_interval_s`` is
only a safety net for a missed notification or a lost listener connection.

Kafka outages: failures to start the producer or to get acknowledgments feed a
:class:`CircuitBreaker`. While it is open the relay makes no Kafka call at all and rows
simply accumulate in the outbox; after a jittered, growing cooldown one trial goes through,
and when it succeeds the backlog drains by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Protocol, Self

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge, Histogram

from payment_svc.adapters.circuit_breaker import (
    BreakerState,
    CircuitBreaker,
    full_jitter_backoff_s,
)
from payrail_common import pg
from payrail_common.faults import dependency_of, is_transient
from payrail_common.supervision import supervised, supervision
from payrail_common.tracing import REQUEST_ID_KEY

__all__ = ["NOTIFY_CHANNEL", "KafkaProducer", "OutboxRelay", "ProducerFactory"]

log = logging.getLogger(__name__)

# The channel the outbox trigger (migration 0002) notifies at commit.
NOTIFY_CHANNEL: Final = "payments_outbox"

# The backlog gauge counts at most this many rows: an index-only count that stays cheap
# even during a long Kafka outage. "At least 100000" is all an operator needs to know.
BACKLOG_COUNT_MAX: Final = 100_000
# A producer that has started knows every topic's metadata; a topic it still cannot find
# within this bound is missing, and waiting the full request timeout for it would stall
# the whole cycle behind one bad row.
_METADATA_TIMEOUT_S: Final = 2.0
# The listener connection is checked this often: a half-open TCP connection never reports
# its own death, and notifications would silently stop.
_LISTENER_PING_INTERVAL_S: Final = 10.0
_LISTENER_BACKOFF_MIN_S: Final = 0.1
# last_error is for operators: the error class and a short message, never payload bytes.
_LAST_ERROR_CHARS_MAX: Final = 200
# Kafka's default message.max.bytes is about 1 MiB; an event never comes close.
_MAX_REQUEST_SIZE_BYTES: Final = 1_048_576
_METADATA_MAX_AGE_MS: Final = 60_000
_CONNECTIONS_MAX_IDLE_MS: Final = 540_000

# Module-level singletons: prometheus_client refuses to register a name twice, and one
# process may run several relays (tests do).
PUBLISHED_ROWS = Counter(
    "payrail_outbox_published_rows",
    "Outbox rows the broker acknowledged and the relay marked sent.",
    ["topic"],
)
PUBLISH_FAILURES = Counter(
    "payrail_outbox_publish_failures",
    "Failed publish attempts: stage=start (the producer could not connect) or "
    "stage=publish (a cycle left claimed rows unacknowledged).",
    ["stage"],
)
CYCLE_ROWS = Histogram(
    "payrail_outbox_cycle_rows",
    "Rows one relay cycle claimed (cycles that found none are not counted): what one "
    "claim, produce and mark carried.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
BACKLOG_ROWS = Gauge(
    "payrail_outbox_backlog_rows",
    f"Unsent outbox rows at the relay's last cycle (saturates at {BACKLOG_COUNT_MAX}).",
)
BREAKER_STATE = Gauge(
    "payrail_outbox_breaker_state",
    "The relay's Kafka circuit breaker: 0 closed, 1 half-open, 2 open.",
)
_BREAKER_STATE_VALUE: Final = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
}

_BACKLOG_SQL: Final = (
    "SELECT count(*) FROM"
    " (SELECT 1 FROM payments.outbox WHERE sent_time IS NULL LIMIT $1) AS unsent"
)
# While the breaker is closed the backlog gauge is refreshed at most this often (a count
# is a round trip; the claim already tells a cycle whether there is work).
_BACKLOG_COUNT_INTERVAL_S: Final = 1.0
_BACKLOG_UNKNOWN: Final = -1
_BACKLOG_EXACT_SQL: Final = "SELECT count(*) FROM payments.outbox WHERE sent_time IS NULL"

# `held_back`: an earlier unsent row of the same stream (topic, key) exists that this
# relay did not claim, i.e. another relay holds it right now. Publishing ours first
# could reorder the stream, so it waits. The check reads the statement's snapshot, in
# which a row another relay is about to mark sent is still unsent: that only delays.
_CLAIM_SQL: Final = """
WITH claimed AS MATERIALIZED (
    SELECT id, event_id, topic, message_key, event_type, payload, request_id
    FROM payments.outbox
    WHERE sent_time IS NULL
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
SELECT c.id, c.event_id, c.topic, c.message_key, c.event_type, c.payload, c.request_id,
       EXISTS (
           SELECT 1 FROM payments.outbox AS earlier
           WHERE earlier.sent_time IS NULL
             AND earlier.topic = c.topic
             AND earlier.message_key = c.message_key
             AND earlier.id < c.id
             AND earlier.id NOT IN (SELECT id FROM claimed)
       ) AS held_back
FROM claimed AS c
ORDER BY c.id
"""
# clock_timestamp(), not now(): the moment of the acknowledgment, not of the claim.
_MARK_SENT_SQL: Final = (
    "UPDATE payments.outbox SET sent_time = clock_timestamp() WHERE id = ANY($1::bigint[])"
)
_MARK_FAILED_SQL: Final = """
UPDATE payments.outbox AS o
SET attempts = o.attempts + 1, last_error = f.error
FROM unnest($1::bigint[], $2::text[]) AS f(id, error)
WHERE o.id = f.id
"""


class KafkaProducer(Protocol):
    """The part of :class:`aiokafka.AIOKafkaProducer` the relay uses (swappable in tests)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def partitions_for(self, topic: str) -> Any: ...

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]: ...


# Called with AIOKafkaProducer's keyword arguments; returns an unstarted producer.
ProducerFactory = Callable[..., KafkaProducer]


@dataclass(frozen=True)
class _CycleResult:
    claimed_count: int
    published_count: int


@dataclass
class _Outcome:
    """What one batch did: acknowledged rows and per-row errors of the failed ones."""

    acked: list[Any] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    # An enqueued row was not acknowledged: the producer's idempotence state is suspect.
    delivery_failed: bool = False


# One outbox row per change; the relay publishes some event types to more topics than
# the row's own: a status change goes to the lifecycle stream (payments.events, which
# the processor, risk and insights read) and to the status fan-out (payments.status,
# for observers that want statuses only). Same key, value, headers and event id on
# every topic: each topic's consumers de-duplicate on the event id in their own inbox.
ALSO_PUBLISHED_TO: Final[dict[str, tuple[str, ...]]] = {
    "payment.status_changed": ("payments.status",),
}


def destinations(
    row: Any, fan_out: Mapping[str, tuple[str, ...]] = ALSO_PUBLISHED_TO
) -> tuple[str, ...]:
    """Every topic a row is published to: its own, then the fan-out of its event type."""
    topic: str = row["topic"]
    return (topic, *(t for t in fan_out.get(row["event_type"], ()) if t != topic))


def _headers(row: Any) -> list[tuple[str, bytes]]:
    """A record's headers: what it is, and the request it was written for (tracing)."""
    headers = [
        ("event-type", row["event_type"].encode()),
        ("event-id", str(row["event_id"]).encode()),
    ]
    request_id = row["request_id"]
    if request_id:
        headers.append((REQUEST_ID_KEY, request_id.encode()))
    return headers


def _describe(exc: BaseException) -> str:
    text = str(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described[:_LAST_ERROR_CHARS_MAX]


async def _stop_sender(producer: KafkaProducer, *, timeout_s: float) -> bool:
    """Stop an aiokafka producer's background sender; False if it has none (a test double).

    With ``enable_idempotence=True`` aiokafka never expires a batch (``Sender._can_retry``):
    the sender retries until the broker acknowledges, and ``stop()`` flushes, i.e. waits
    for that, forever while the broker is gone. Cancelling ``stop()`` halfway would leak the
    sender and its sockets, which would keep retrying and later deliver stale duplicates.
    Cancelling the sender itself ends its in-flight requests (each bounded by
    request_timeout_ms) and sends nothing more. There is no public abort for a
    non-transactional producer; this and :func:`_close_without_flush` are the only places
    that reach into aiokafka.
    """
    sender = getattr(producer, "_sender", None)
    close_sender = getattr(sender, "close", None)
    if not callable(close_sender):
        return False
    await asyncio.wait_for(close_sender(), timeout=timeout_s)
    return True


async def _close_without_flush(producer: KafkaProducer, *, timeout_s: float) -> None:
    """Do what ``AIOKafkaProducer.stop()`` does except the flush: the queue is abandoned.

    Rows whose messages were queued are not marked sent; they are published again later.
    """
    client = getattr(producer, "client", None)
    if getattr(producer, "_closed", None) is not False or client is None:
        await asyncio.wait_for(producer.stop(), timeout=timeout_s)  # not aiokafka-shaped
        return
    # Marks it closed for aiokafka too: stop() becomes a no-op and __del__ stays quiet.
    producer._closed = True  # type: ignore[attr-defined]
    await _stop_sender(producer, timeout_s=timeout_s)
    await asyncio.wait_for(client.close(), timeout=timeout_s)


def _retrieve_exception(future: asyncio.Future[Any]) -> None:
    # A delivery future may fail after the relay stopped waiting for it; reading the
    # exception keeps asyncio from logging "exception was never retrieved" per row.
    if not future.cancelled():
        future.exception()


class OutboxRelay:
    """Publishes unsent ``payments.outbox`` rows to Kafka; see the module docstring.

    Use ``await relay.start()`` / ``await relay.stop()`` or ``async with relay:``.
    Several relays may run against one database at once.
    """

    def __init__(
        self,
        dsn: str,
        bootstrap_servers: str,
        *,
        batch_max: int = 500,
        poll_interval_s: float = 1.0,
        notify_linger_ms: int = 0,
        ack_timeout_s: float = 10.0,
        linger_ms: int = 5,
        request_timeout_ms: int = 5_000,
        kafka_batch_max_bytes: int = 131_072,
        retry_backoff_ms: int = 100,
        client_id: str = "payrail-outbox-relay",
        connect_timeout_s: float = 5.0,
        statement_timeout_s: float = 5.0,
        listen_reconnect_backoff_max_s: float = 10.0,
        stop_timeout_s: float = 15.0,
        breaker: CircuitBreaker | None = None,
        producer_factory: ProducerFactory = AIOKafkaProducer,
        fan_out: Mapping[str, tuple[str, ...]] = ALSO_PUBLISHED_TO,
    ) -> None:
        # event type -> more topics its rows go to (ALSO_PUBLISHED_TO)
        self._fan_out = dict(fan_out)
        """
        Args:
            dsn: PostgreSQL DSN; the relay opens its own small pool and one LISTEN
                connection (credentials in it are never logged).
            bootstrap_servers: Kafka bootstrap servers, ``host:port[,host:port]``.
            batch_max: rows claimed per cycle (1..10000); a full batch loops at once.
            notify_linger_ms: after a commit notification wakes the relay, how long it
                waits for more commits before the cycle (0: none), so that the commits
                of that window are claimed, published and marked together.
            poll_interval_s: longest sleep between cycles when no notification arrives;
                a safety net only, NOTIFY wakes the relay at once.
            ack_timeout_s: bound on one batch: metadata, enqueueing and acknowledgments;
                also bounds a producer start and stop.
            linger_ms: producer linger: how long a partition batch waits to fill up.
            request_timeout_ms: producer request timeout (one request or connection), at
                most ``ack_timeout_s``. The idempotent producer retries a batch until the
                broker takes it, so ``ack_timeout_s`` is what bounds a batch.
            kafka_batch_max_bytes: producer batch size per partition (``max_batch_size``).
            retry_backoff_ms: producer backoff between its internal retries.
            client_id: Kafka client id and PostgreSQL application_name.
            connect_timeout_s: bound on opening a PostgreSQL connection.
            statement_timeout_s: bound on each PostgreSQL statement.
            listen_reconnect_backoff_max_s: cap of the (jittered, doubling) delay between
                attempts to re-open a lost LISTEN connection.
            stop_timeout_s: how long ``stop()`` waits for the cycle in flight to finish.
            breaker: the Kafka circuit breaker (default: 3 consecutive failures open it,
                cooldown 1 s doubling to 30 s, full jitter).
            producer_factory: builds the producer from AIOKafkaProducer's keyword arguments.
        """
        if not 1 <= batch_max <= 10_000:
            raise ValueError(f"batch_max must be in 1..10000, got {batch_max}")
        for name, value in (
            ("poll_interval_s", poll_interval_s),
            ("ack_timeout_s", ack_timeout_s),
            ("connect_timeout_s", connect_timeout_s),
            ("statement_timeout_s", statement_timeout_s),
            ("listen_reconnect_backoff_max_s", listen_reconnect_backoff_max_s),
            ("stop_timeout_s", stop_timeout_s),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not 0 < request_timeout_ms <= ack_timeout_s * 1000:
            raise ValueError(
                f"request_timeout_ms must be in 1..{ack_timeout_s * 1000:.0f} (ack_timeout_s),"
                f" got {request_timeout_ms}"
            )
        if not 0 <= notify_linger_ms < poll_interval_s * 1000:
            raise ValueError("notify_linger_ms must be >= 0 and below the poll interval")
        if linger_ms < 0 or retry_backoff_ms < 0 or kafka_batch_max_bytes < 1024:
            raise ValueError("linger_ms and retry_backoff_ms must be >= 0, batch >= 1024 bytes")
        self._dsn = dsn
        self._batch_max = batch_max
        self._poll_interval_s = poll_interval_s
        self._notify_linger_s = notify_linger_ms / 1000
        self._ack_timeout_s = ack_timeout_s
        self._client_id = client_id
        self._connect_timeout_s = connect_timeout_s
        self._statement_timeout_s = statement_timeout_s
        self._listen_reconnect_backoff_max_s = listen_reconnect_backoff_max_s
        self._stop_timeout_s = stop_timeout_s
        self._breaker = breaker if breaker is not None else CircuitBreaker()
        self._producer_factory = producer_factory
        self._producer_options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "request_timeout_ms": request_timeout_ms,
            "max_batch_size": kafka_batch_max_bytes,
            "max_request_size": _MAX_REQUEST_SIZE_BYTES,
            "retry_backoff_ms": retry_backoff_ms,
            "metadata_max_age_ms": _METADATA_MAX_AGE_MS,
            "connections_max_idle_ms": _CONNECTIONS_MAX_IDLE_MS,
        }

        self._pool: Any = None  # asyncpg.Pool
        self._listener: Any = None  # asyncpg.Connection
        self._producer: KafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._cycle_lock = asyncio.Lock()
        self._stopping = False
        self._published_total = 0
        self._breaker_state_seen = self._breaker.state
        self._last_kafka_error = ""
        # Listener bookkeeping: health, when to ping it, when to retry after a loss.
        self._listener_healthy = False
        self._listener_ping_at_s = 0.0
        self._listener_retry_at_s = 0.0
        self._listener_failures = 0
        # When the next cycle counts the backlog (see _cycle).
        self._count_due_s = 0.0

    # ------------------------------------------------------------------ public surface

    @property
    def kafka_available(self) -> bool:
        """False while the breaker is open or testing (HALF_OPEN): report Kafka degraded.

        A trial in flight is not yet evidence that Kafka is back, so HALF_OPEN counts as
        unavailable; this keeps health from flapping during an outage.
        """
        return self._breaker.state is BreakerState.CLOSED

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    @property
    def published_total(self) -> int:
        """Rows this relay instance published and marked sent since it was created."""
        return self._published_total

    async def check_kafka(self) -> None:
        """A :class:`payrail_common.probes.Probe` check: raises while Kafka is degraded."""
        if not self.kafka_available:
            raise ConnectionError(
                f"Kafka circuit {self._breaker.state.value}; outbox rows are queued"
            )

    async def backlog(self) -> int:
        """The number of unsent outbox rows (an exact count; O(backlog))."""
        pool = self._require_pool()
        count: int = await pool.fetchval(_BACKLOG_EXACT_SQL, timeout=self._statement_timeout_s)
        return count

    async def drain_once(self) -> int:
        """Run one claim/publish/mark cycle now; return the number of rows marked sent.

        Serialised with the background loop; honours the breaker (0 while it is open).
        Call it between start() and stop(), not concurrently with stop().
        """
        self._require_pool()
        result = await self._cycle_serialised()
        return result.published_count

    async def start(self) -> None:
        """Open the pool and the LISTEN connection, then run the relay loop in the background.

        Raises if PostgreSQL is unreachable; Kafka is only contacted when rows are due.
        """
        if self._task is not None:
            raise RuntimeError("the outbox relay is already running")
        self._stopping = False
        self._wake.clear()
        self._pool = await pg.create_pool(
            self._dsn,
            # One connection for the cycle, one for backlog() and probes.
            size_min=1,
            size_max=2,
            acquire_timeout_s=self._connect_timeout_s,
            statement_timeout_s=self._statement_timeout_s,
            max_inactive_connection_lifetime=300.0,
            server_settings={"application_name": self._client_id},
        )
        try:
            await self._connect_listener()
        except BaseException:
            await self._close_pool()
            raise
        self._listener_healthy = True
        self._observe_breaker()
        # Supervised: a crash of the loop is logged, counted and the loop restarted.
        self._task = asyncio.create_task(
            supervised("outbox-relay", self._loop, stopping=lambda: self._stopping),
            name=f"outbox-relay:{self._client_id}",
        )

    async def stop(self) -> None:
        """Finish the cycle in flight (bounded), then stop the producer and close connections."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=self._stop_timeout_s)
            except TimeoutError:
                log.warning(
                    "outbox relay cycle still running at stop; cancelling it",
                    extra={"relay": self._client_id, "stop_timeout_s": self._stop_timeout_s},
                )
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except Exception as exc:  # already logged by the supervisor; clean up anyway
                log.debug("outbox relay loop had failed", extra={"error": type(exc).__name__})
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._close_producer(producer, graceful=True)
        await self._close_listener()
        await self._close_pool()
        self._listener_healthy = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        cycle_failing = False
        while not self._stopping:
            # Cleared before the cycle: a notification that arrives during it wakes the
            # next wait at once instead of being lost.
            self._wake.clear()
            await self._ensure_listener()
            try:
                result = await self._cycle_serialised()
            except Exception as exc:  # PostgreSQL trouble: the loop must survive it
                if not is_transient(exc):
                    raise  # a bug: the supervisor logs it with its traceback and restarts
                supervision.degrade(dependency_of(exc, other="postgres"))
                if not cycle_failing:
                    log.warning(
                        "outbox relay cycle failed; retrying every poll interval",
                        extra={"relay": self._client_id, "error": type(exc).__name__},
                    )
                cycle_failing = True
                await self._wait(self._poll_interval_s, wake_on_notify=False)
                continue
            if cycle_failing:
                log.info("outbox relay cycle recovered", extra={"relay": self._client_id})
                cycle_failing = False
            if result.claimed_count >= self._batch_max and result.published_count > 0:
                continue  # a full batch that went through: more rows are probably waiting
            notified = await self._wait(
                self._next_wait_s(),
                # While the breaker is open a commit changes nothing: sleep out the cooldown.
                wake_on_notify=self._breaker.state is not BreakerState.OPEN,
            )
            if notified and self._notify_linger_s > 0:
                # The commits of the next few ms join this one's cycle.
                await self._wait(self._notify_linger_s, wake_on_notify=False)

    def _next_wait_s(self) -> float:
        wait_s = self._poll_interval_s
        if self._breaker.state is BreakerState.OPEN:
            wait_s = min(wait_s, self._breaker.retry_after_s)
        if not self._listener_healthy:
            wait_s = min(wait_s, max(0.0, self._listener_retry_at_s - time.monotonic()))
        return wait_s

    async def _wait(self, timeout_s: float, *, wake_on_notify: bool) -> bool:
        """Sleep up to timeout_s; stop() always ends it, a notification only if asked to.
        True when a notification ended it."""
        deadline_s = time.monotonic() + timeout_s
        while not self._stopping:
            remaining_s = deadline_s - time.monotonic()
            if remaining_s <= 0:
                return False
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=remaining_s)
            except TimeoutError:
                return False
            if wake_on_notify:
                return True
            self._wake.clear()
        return False

    async def _cycle_serialised(self) -> _CycleResult:
        async with self._cycle_lock:
            return await self._cycle()

    async def _cycle(self) -> _CycleResult:
        pool = self._require_pool()
        async with pool.acquire(timeout=self._connect_timeout_s) as conn:
            # Counting costs a round trip per cycle; under load (a cycle per commit
            # notification) the claim itself says whether there is work, so the count
            # runs at most every _BACKLOG_COUNT_INTERVAL_S while the breaker is closed.
            # It always runs otherwise: a trial must know whether there is anything.
            backlog = _BACKLOG_UNKNOWN
            now_s = time.monotonic()
            if self._breaker.state is not BreakerState.CLOSED or now_s >= self._count_due_s:
                backlog = await conn.fetchval(
                    _BACKLOG_SQL, BACKLOG_COUNT_MAX, timeout=self._statement_timeout_s
                )
                self._count_due_s = now_s + _BACKLOG_COUNT_INTERVAL_S
                BACKLOG_ROWS.set(backlog)
            if backlog == 0 and self._breaker.state is BreakerState.CLOSED:
                return _CycleResult(0, 0)  # nothing to do, and no reason to touch Kafka
            if not self._breaker.allow():
                return _CycleResult(0, 0)  # open: the rows wait in the outbox
            # From here the outcome must reach the breaker: a granted HALF_OPEN trial
            # that never reports would keep the breaker refusing forever.
            self._observe_breaker()
            verdict_recorded = False
            discard_producer = False
            try:
                producer = await self._ensure_producer()
                verdict_recorded = producer is None  # a failed start recorded a failure
                if producer is None:
                    return _CycleResult(0, 0)
                if backlog == 0:
                    # A HALF_OPEN trial with nothing to send: a started producer proves the
                    # broker answers, which is what the breaker wanted to know.
                    self._breaker.record_success()
                    verdict_recorded = True
                    return _CycleResult(0, 0)
                async with conn.transaction():
                    rows = await conn.fetch(
                        _CLAIM_SQL, self._batch_max, timeout=self._statement_timeout_s
                    )
                    outcome = await self._publish(producer, rows)
                    discard_producer = self._judge(outcome)
                    verdict_recorded = True
                    await self._mark(conn, outcome)
            finally:
                if not verdict_recorded and self._breaker.state is BreakerState.HALF_OPEN:
                    self._breaker.record_failure()
                self._observe_breaker()
                if discard_producer:
                    await self._discard_producer()
        # Counted only after the commit: a rolled-back mark means the rows go out again.
        for row in outcome.acked:
            PUBLISHED_ROWS.labels(row["topic"]).inc()
        published = len(outcome.acked)
        self._published_total += published
        if backlog != _BACKLOG_UNKNOWN:
            BACKLOG_ROWS.set(max(0, backlog - published))
        if rows:
            CYCLE_ROWS.observe(len(rows))
        return _CycleResult(claimed_count=len(rows), published_count=published)

    def _judge(self, outcome: _Outcome) -> bool:
        """Feed the batch's outcome to the breaker; return whether to drop the producer."""
        if outcome.failed:
            PUBLISH_FAILURES.labels("publish").inc()
            self._last_kafka_error = next(iter(outcome.failed.values()))
        if outcome.acked:
            # The broker acknowledged writes: it is up, even if some rows were bad.
            self._breaker.record_success()
        elif outcome.failed:
            self._breaker.record_failure()
            return True
        elif self._breaker.state is BreakerState.HALF_OPEN:
            # Nothing was sendable (every row held back behind another relay), but the
            # producer started: the broker answers.
            self._breaker.record_success()
        return outcome.delivery_failed

    async def _mark(self, conn: Any, outcome: _Outcome) -> None:
        if outcome.acked:
            await conn.execute(
                _MARK_SENT_SQL,
                [row["id"] for row in outcome.acked],
                timeout=self._statement_timeout_s,
            )
        if outcome.failed:
            await conn.execute(
                _MARK_FAILED_SQL,
                list(outcome.failed.keys()),
                list(outcome.failed.values()),
                timeout=self._statement_timeout_s,
            )

    # ------------------------------------------------------------------ Kafka

    async def _publish(self, producer: KafkaProducer, rows: Sequence[Any]) -> _Outcome:
        """Send the claimed rows and collect acknowledgments, all within ack_timeout_s."""
        outcome = _Outcome()
        by_topic: dict[str, list[Any]] = {}
        for row in rows:
            if not row["held_back"]:
                for topic in destinations(row, self._fan_out):
                    by_topic.setdefault(topic, []).append(row)
        if not by_topic:
            return outcome
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + self._ack_timeout_s
        # Keyed by (row id, topic): a fanned-out row is acknowledged once every topic
        # took it (and sent again, on every topic, if any one did not).
        futures: dict[tuple[int, str], asyncio.Future[Any]] = {}
        enqueue_timed_out = False
        try:
            async with asyncio.timeout_at(deadline_s):
                # Topics are independent streams: one missing topic must not hold up the rest.
                await asyncio.gather(
                    *(
                        self._send_topic(producer, topic, topic_rows, futures, outcome)
                        for topic, topic_rows in by_topic.items()
                    )
                )
        except TimeoutError:
            enqueue_timed_out = True
        if futures:
            await asyncio.wait(futures.values(), timeout=max(0.0, deadline_s - loop.time()))
        no_ack = f"TimeoutError: no acknowledgment within {self._ack_timeout_s:g} s"
        # A row is sent once every one of its topics acknowledged it; a row some topic
        # skipped (held behind a failed row of its key there) is neither: it waits.
        acked_on: dict[int, int] = {}
        for topic, topic_rows in by_topic.items():
            for row in topic_rows:
                row_id: int = row["id"]
                future = futures.get((row_id, topic))
                if future is None:
                    if enqueue_timed_out and row_id not in outcome.failed:
                        outcome.failed[row_id] = (
                            f"TimeoutError: not enqueued within {self._ack_timeout_s:g} s"
                        )
                    continue  # failed before the producer, or held behind a failed sibling
                if not future.done() or future.cancelled():
                    outcome.failed[row_id] = no_ack
                    outcome.delivery_failed = True
                elif (exc := future.exception()) is not None:
                    outcome.failed[row_id] = _describe(exc)
                    outcome.delivery_failed = True
                else:
                    acked_on[row_id] = acked_on.get(row_id, 0) + 1
        outcome.acked.extend(
            row
            for row in rows
            if not row["held_back"]
            and row["id"] not in outcome.failed
            and acked_on.get(row["id"], 0) == len(destinations(row, self._fan_out))
        )
        return outcome

    async def _send_topic(
        self,
        producer: KafkaProducer,
        topic: str,
        rows: Sequence[Any],
        futures: dict[tuple[int, str], asyncio.Future[Any]],
        outcome: _Outcome,
    ) -> None:
        """Enqueue one topic's rows in id order; a failed row holds back its key's later rows."""
        try:
            await asyncio.wait_for(producer.partitions_for(topic), timeout=_METADATA_TIMEOUT_S)
        except TimeoutError:
            error = f"TimeoutError: no metadata for the topic within {_METADATA_TIMEOUT_S:g} s"
            for row in rows:
                outcome.failed[row["id"]] = error
            return
        except Exception as exc:  # unknown topic, no metadata: every row of it fails
            error = _describe(exc)
            for row in rows:
                outcome.failed[row["id"]] = error
            return
        failed_keys: set[str] = set()
        for row in rows:
            key: str = row["message_key"]
            if key in failed_keys:
                continue  # sending it now would put it ahead of its failed predecessor
            try:
                future = await producer.send(
                    topic,
                    value=row["payload"],
                    key=key.encode(),
                    headers=_headers(row),
                )
            except Exception as exc:  # e.g. a message too large: this row only
                outcome.failed[row["id"]] = _describe(exc)
                failed_keys.add(key)
                continue
            future.add_done_callback(_retrieve_exception)
            futures[(row["id"], topic)] = future

    async def _ensure_producer(self) -> KafkaProducer | None:
        """The started producer, starting one if needed; None (failure recorded) if it fails."""
        if self._producer is not None:
            return self._producer
        producer = self._producer_factory(**self._producer_options)
        try:
            await asyncio.wait_for(producer.start(), timeout=self._ack_timeout_s)
        except Exception as exc:  # unreachable broker, timeout, refused connection
            PUBLISH_FAILURES.labels("start").inc()
            self._last_kafka_error = _describe(exc)
            self._breaker.record_failure()
            await self._close_producer(producer, graceful=False)
            return None
        self._producer = producer
        return producer

    async def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._close_producer(producer, graceful=False)

    async def _close_producer(self, producer: KafkaProducer, *, graceful: bool) -> None:
        """Stop a producer and release its connections, in bounded time.

        graceful: let stop() flush first (a healthy producer takes milliseconds); if the
        broker vanished meanwhile, stop its sender so stop() can finish. Otherwise (a
        producer that failed) abandon its queue at once.
        """
        try:
            if not graceful:
                await _close_without_flush(producer, timeout_s=self._ack_timeout_s)
                return
            stopping = asyncio.ensure_future(producer.stop())
            done, _ = await asyncio.wait({stopping}, timeout=self._ack_timeout_s)
            if not done:
                await _stop_sender(producer, timeout_s=self._ack_timeout_s)
            await asyncio.wait_for(stopping, timeout=self._ack_timeout_s)
        except Exception as exc:
            log.warning(
                "outbox relay could not stop its Kafka producer cleanly",
                extra={"relay": self._client_id, "error": type(exc).__name__},
                exc_info=True,
            )

    def _observe_breaker(self) -> None:
        """Mirror the breaker into the gauge; log once per state change, never per row."""
        state = self._breaker.state
        BREAKER_STATE.set(_BREAKER_STATE_VALUE[state])
        previous = self._breaker_state_seen
        if state is previous:
            return
        self._breaker_state_seen = state
        extra: dict[str, object] = {
            "relay": self._client_id,
            "previous_state": previous.value,
            "state": state.value,
        }
        if state is BreakerState.OPEN:
            extra["retry_after_s"] = round(self._breaker.retry_after_s, 3)
            extra["consecutive_opens"] = self._breaker.consecutive_opens
            extra["error"] = self._last_kafka_error
            log.warning("Kafka circuit opened; outbox rows wait in PostgreSQL", extra=extra)
        elif state is BreakerState.HALF_OPEN:
            log.info("Kafka circuit half-open; trying one batch", extra=extra)
        else:
            log.info("Kafka circuit closed; publishing the outbox backlog", extra=extra)

    # ------------------------------------------------------------------ PostgreSQL

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("start() the outbox relay first")
        return self._pool

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._wake.set()

    def _on_listener_terminated(self, _conn: Any) -> None:
        # Wake the loop so it re-opens the listener now rather than at the next poll.
        self._wake.set()

    async def _connect_listener(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout_s,
            command_timeout=self._statement_timeout_s,
            server_settings={"application_name": f"{self._client_id}-listen"},
        )
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_listener_terminated)
        self._listener = conn
        self._listener_ping_at_s = time.monotonic() + _LISTENER_PING_INTERVAL_S

    async def _ensure_listener(self) -> None:
        """Keep the LISTEN connection alive: ping it now and then, re-open it when lost."""
        now_s = time.monotonic()
        conn = self._listener
        if conn is not None and not conn.is_closed():
            if now_s < self._listener_ping_at_s:
                return
            self._listener_ping_at_s = now_s + _LISTENER_PING_INTERVAL_S
            try:
                await conn.fetchval("SELECT 1", timeout=self._statement_timeout_s)
                return
            except Exception:
                conn.terminate()
        if self._listener_healthy:
            self._listener_healthy = False
            self._listener_failures = 0
            self._listener_retry_at_s = now_s
            log.warning(
                "outbox listener connection lost; polling until it is back",
                extra={"relay": self._client_id},
            )
        self._listener = None
        if now_s < self._listener_retry_at_s:
            return
        try:
            await self._connect_listener()
        except Exception as exc:
            self._listener_failures += 1
            delay_s = max(
                _LISTENER_BACKOFF_MIN_S,
                full_jitter_backoff_s(
                    self._listener_failures,
                    base_s=_LISTENER_BACKOFF_MIN_S * 2,
                    max_s=self._listen_reconnect_backoff_max_s,
                ),
            )
            self._listener_retry_at_s = time.monotonic() + delay_s
            if self._listener_failures == 1:
                log.warning(
                    "outbox listener cannot reconnect yet; retrying with backoff",
                    extra={"relay": self._client_id, "error": type(exc).__name__},
                )
            return
        self._listener_healthy = True
        self._listener_failures = 0
        log.info("outbox listener reconnected", extra={"relay": self._client_id})

    async def _close_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None:
            return
        conn.remove_termination_listener(self._on_listener_terminated)
        try:
            await asyncio.wait_for(conn.close(), timeout=self._connect_timeout_s)
        except Exception:
            conn.terminate()

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=self._connect_timeout_s)
        except Exception:
            pool.terminate()
