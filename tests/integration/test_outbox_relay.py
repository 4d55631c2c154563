"""The outbox relay against the real test stack: PostgreSQL NOTIFY, Kafka acks, outages.

Every test publishes to its own topic (``test.outbox-relay``, created here with explicit
partitions) and reads it back from the offsets it saw before it started, so nothing else
on the broker can make it pass or fail. The last test stops the stack's Kafka for real.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from prometheus_client import REGISTRY

from payment_svc.adapters.circuit_breaker import BreakerState, CircuitBreaker
from payment_svc.adapters.outbox_relay import CYCLE_ROWS, OutboxRelay
from payrail.events.v1 import events_pb2
from tests.conftest import StackEnv, free_port
from tests.stack_control import kafka_pid, pid_running, stack_up

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

log = logging.getLogger(__name__)

TOPIC = "test.outbox-relay"
PARTITIONS = 6
EVENT_TYPE = "payment.created"


@dataclass(frozen=True)
class Event:
    event_id: uuid.UUID
    payment_id: str
    version: int
    payload: bytes


def new_events(count: int, *, keys: int = 1) -> list[Event]:
    """count events spread round-robin over `keys` payments, versions rising per payment."""
    payment_ids = [str(uuid.uuid4()) for _ in range(keys)]
    versions: collections.Counter[str] = collections.Counter()
    events = []
    for index in range(count):
        payment_id = payment_ids[index % keys]
        versions[payment_id] += 1
        event_id = uuid.uuid4()
        payload = events_pb2.PaymentEvent(
            event_id=str(event_id),
            payment_id=payment_id,
            version=versions[payment_id],
            user_id=str(uuid.UUID(int=1)),
        ).SerializeToString()
        events.append(Event(event_id, payment_id, versions[payment_id], payload))
    return events


def ids(events: Iterable[Event]) -> list[uuid.UUID]:
    return [event.event_id for event in events]


async def insert_rows(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    await conn.executemany(
        "INSERT INTO payments.outbox (event_id, topic, message_key, event_type, payload)"
        " VALUES ($1, $2, $3, $4, $5)",
        [(e.event_id, TOPIC, e.payment_id, EVENT_TYPE, e.payload) for e in events],
    )


async def insert_committed(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    async with conn.transaction():
        await insert_rows(conn, events)


async def sent_count(conn: asyncpg.Connection, event_ids: Sequence[uuid.UUID]) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM payments.outbox WHERE event_id = ANY($1) AND sent_time IS NOT NULL",
        list(event_ids),
    )
    return count


async def wait_until_sent(
    conn: asyncpg.Connection, event_ids: Sequence[uuid.UUID], *, timeout_s: float
) -> float:
    """Seconds until every row is marked sent; fails the test at timeout_s."""
    started_s = time.monotonic()
    while (sent := await sent_count(conn, event_ids)) < len(event_ids):
        if time.monotonic() - started_s > timeout_s:
            pytest.fail(f"only {sent}/{len(event_ids)} rows marked sent after {timeout_s} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - started_s


async def wait_for(condition: Any, *, timeout_s: float, what: str) -> float:
    started_s = time.monotonic()
    while not condition():
        if time.monotonic() - started_s > timeout_s:
            pytest.fail(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started_s


def partitions(topic: str = TOPIC) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(PARTITIONS)]


def new_consumer(stack: StackEnv) -> Any:
    return AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap,
        client_id="test-outbox-reader",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
    )


async def end_offsets(stack: StackEnv, topic: str = TOPIC) -> dict[Any, int]:
    consumer = new_consumer(stack)
    await consumer.start()
    try:
        offsets: dict[Any, int] = await asyncio.wait_for(
            consumer.end_offsets(partitions(topic)), timeout=20
        )
        return offsets
    finally:
        await consumer.stop()


async def read_topic(
    stack: StackEnv, start: dict[Any, int], *, timeout_s: float = 30, topic: str = TOPIC
) -> list[Any]:
    """Every record from `start` up to the current end of each partition, in offset order."""
    consumer = new_consumer(stack)
    await consumer.start()
    try:
        tps = partitions(topic)
        consumer.assign(tps)
        end: dict[Any, int] = await asyncio.wait_for(consumer.end_offsets(tps), timeout=20)
        for tp in tps:
            consumer.seek(tp, start[tp])
        records: list[Any] = []
        pending = {tp for tp in tps if start[tp] < end[tp]}
        deadline_s = time.monotonic() + timeout_s
        while pending:
            assert time.monotonic() < deadline_s, f"could not read {topic} up to {end}"
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=1000)
            for tp, tp_records in batch.items():
                records.extend(r for r in tp_records if r.offset < end[tp])
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


def event_id_of(record: Any) -> uuid.UUID:
    return uuid.UUID(dict(record.headers)["event-id"].decode())


def failures(stage: str) -> float:
    value = REGISTRY.get_sample_value("payrail_outbox_publish_failures_total", {"stage": stage})
    return value or 0.0


def available(relay: OutboxRelay) -> bool:
    # A call, not the property: mypy would otherwise narrow it across awaits.
    return relay.kafka_available


def aiokafka_tasks() -> list[str]:
    """Background tasks of aiokafka clients still alive: a leaked producer shows up here."""
    return [repr(task) for task in asyncio.all_tasks() if "aiokafka" in repr(task)]


class CountingFactory:
    """A producer factory that counts how often the relay tried to reach Kafka."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, **options: Any) -> Any:
        self.calls += 1
        return AIOKafkaProducer(**options)


def relay_for(stack: StackEnv, name: str, **options: Any) -> OutboxRelay:
    options.setdefault("client_id", f"test-{name}-{uuid.uuid4().hex[:6]}")
    return OutboxRelay(stack.pg_dsn, stack.kafka_bootstrap, **options)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def relay_topic(stack: StackEnv) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)]
        )
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    return TOPIC


@pytest_asyncio.fixture(loop_scope="session")
async def db(stack: StackEnv, relay_topic: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.pg_dsn, timeout=5)
    try:
        yield conn
    finally:
        # Test rows only: leave the shared outbox as this test found it.
        await conn.execute("DELETE FROM payments.outbox WHERE topic = $1", relay_topic)
        await conn.close()


async def test_committed_rows_are_published_at_once_via_notify(
    stack: StackEnv, db: asyncpg.Connection
) -> None:
    # A 30 s poll interval: only the NOTIFY of the commit can explain a fast publication.
    async with relay_for(stack, "notify", poll_interval_s=30.0) as relay:
        warm_up = new_events(1)
        await insert_committed(db, warm_up)  # also starts the producer
        await wait_until_sent(db, ids(warm_up), timeout_s=15)
        await asyncio.sleep(0.3)  # the relay is now asleep in its 30 s wait
        start = await end_offsets(stack)

        events = new_events(6, keys=2)
        await insert_committed(db, events)
        latency_s = await wait_until_sent(db, ids(events), timeout_s=10)
        assert relay.kafka_available
    log.info("commit -> marked sent via NOTIFY: %.1f ms", latency_s * 1000)
    assert latency_s < 3.0

    records = [r for r in await read_topic(stack, start) if event_id_of(r) in ids(events)]
    by_id = {event_id_of(r): r for r in records}
    assert len(records) == len(by_id) == len(events)
    for event in events:
        record = by_id[event.event_id]
        assert record.key == event.payment_id.encode()
        assert record.value == event.payload
        assert dict(record.headers) == {
            "event-type": EVENT_TYPE.encode(),
            "event-id": str(event.event_id).encode(),
        }
        decoded = events_pb2.PaymentEvent.FromString(record.value)
        assert (decoded.event_id, decoded.version) == (str(event.event_id), event.version)

    rows = await db.fetch(
        "SELECT sent_time, attempts, last_error FROM payments.outbox WHERE event_id = ANY($1)",
        ids(events),
    )
    assert all(r["sent_time"] is not None for r in rows)
    assert {(r["attempts"], r["last_error"]) for r in rows} == {(0, None)}


def cycles_and_rows() -> tuple[float, float]:
    """(cycles that claimed rows, rows they claimed), from the relay's histogram."""
    (metric,) = CYCLE_ROWS.collect()
    values = {sample.name: sample.value for sample in metric.samples}
    return values["payrail_outbox_cycle_rows_count"], values["payrail_outbox_cycle_rows_sum"]


async def test_commits_within_the_notify_linger_share_one_cycle(
    stack: StackEnv, db: asyncpg.Connection
) -> None:
    async with relay_for(stack, "linger", poll_interval_s=30.0, notify_linger_ms=400):
        warm_up = new_events(1)
        await insert_committed(db, warm_up)
        await wait_until_sent(db, ids(warm_up), timeout_s=15)
        await asyncio.sleep(0.5)  # asleep in its 30 s wait again
        cycles_before, rows_before = cycles_and_rows()
        events = new_events(3, keys=3)
        started_s = time.monotonic()
        for event in events:  # three transactions, 50 ms apart: one notification each
            await insert_committed(db, [event])
            await asyncio.sleep(0.05)
        await wait_until_sent(db, ids(events), timeout_s=10)
        first_commit_to_sent_s = time.monotonic() - started_s
        cycles_after, rows_after = cycles_and_rows()
    # The first commit woke it; it waited 400 ms and claimed all three together.
    assert (cycles_after - cycles_before, rows_after - rows_before) == (1, 3)
    assert 0.35 < first_commit_to_sent_s < 3.0


async def test_rows_of_a_rolled_back_transaction_never_reach_kafka(
    stack: StackEnv, db: asyncpg.Connection
) -> None:
    start = await end_offsets(stack)
    rolled_back = new_events(3)
    committed = new_events(1)
    async with relay_for(stack, "rollback", poll_interval_s=0.2):
        transaction = db.transaction()
        await transaction.start()
        await insert_rows(db, rolled_back)
        await asyncio.sleep(0.5)  # several relay cycles while the rows are uncommitted
        await transaction.rollback()
        await insert_committed(db, committed)
        await wait_until_sent(db, ids(committed), timeout_s=15)

    published = {event_id_of(r) for r in await read_topic(stack, start)}
    assert set(ids(committed)) <= published
    assert published.isdisjoint(ids(rolled_back))
    assert (
        await db.fetchval(
            "SELECT count(*) FROM payments.outbox WHERE event_id = ANY($1)", ids(rolled_back)
        )
        == 0
    )


async def test_three_relays_publish_every_event_exactly_once_in_stream_order(
    stack: StackEnv, db: asyncpg.Connection
) -> None:
    start = await end_offsets(stack)
    events = new_events(300, keys=100)
    # Small batches so the three relays contend for the same rows.
    relays = [relay_for(stack, f"trio{i}", batch_max=25, poll_interval_s=0.2) for i in range(3)]
    await asyncio.gather(*(relay.start() for relay in relays))
    try:
        # Half in one transaction (one NOTIFY wakes all three at once), the rest as a
        # stream of small transactions while the relays are busy.
        await insert_committed(db, events[:150])
        for offset in range(150, 300, 15):
            await insert_committed(db, events[offset : offset + 15])
        drain_s = await wait_until_sent(db, ids(events), timeout_s=60)
    finally:
        await asyncio.gather(*(relay.stop() for relay in relays))
    log.info(
        "3 relays, 300 rows: all marked sent %.0f ms after the last commit; per relay %s",
        drain_s * 1000,
        [relay.published_total for relay in relays],
    )

    records = [r for r in await read_topic(stack, start) if event_id_of(r) in set(ids(events))]
    counts = collections.Counter(event_id_of(r) for r in records)
    assert set(counts) == set(ids(events))
    duplicates = {event_id: n for event_id, n in counts.items() if n != 1}
    assert duplicates == {}
    assert sum(1 for relay in relays if relay.published_total > 0) >= 2, "no contention"

    # Each payment's events sit in one partition, in version order.
    versions: dict[bytes, list[int]] = collections.defaultdict(list)
    partitions_of: dict[bytes, set[int]] = collections.defaultdict(set)
    for record in records:  # sorted by (partition, offset)
        versions[record.key].append(events_pb2.PaymentEvent.FromString(record.value).version)
        partitions_of[record.key].add(record.partition)
    assert all(len(p) == 1 for p in partitions_of.values())
    assert {key: v for key, v in versions.items() if v != sorted(v)} == {}


async def test_a_lost_listener_connection_is_reopened_and_notify_works_again(
    stack: StackEnv, db: asyncpg.Connection
) -> None:
    client_id = f"test-relisten-{uuid.uuid4().hex[:6]}"
    listeners_sql = "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
    async with relay_for(stack, "relisten", client_id=client_id, poll_interval_s=30.0):
        warm_up = new_events(1)
        await insert_committed(db, warm_up)
        await wait_until_sent(db, ids(warm_up), timeout_s=15)
        [old_pid] = [r["pid"] for r in await db.fetch(listeners_sql, f"{client_id}-listen")]
        assert await db.fetchval("SELECT pg_terminate_backend($1)", old_pid)

        deadline_s = time.monotonic() + 5
        while [r["pid"] for r in await db.fetch(listeners_sql, f"{client_id}-listen")] in (
            [],
            [old_pid],
        ):
            assert time.monotonic() < deadline_s, "the LISTEN connection was not re-opened"
            await asyncio.sleep(0.01)

        events = new_events(3)
        await insert_committed(db, events)
        # Still well inside the 30 s poll interval: the new connection got the NOTIFY.
        latency_s = await wait_until_sent(db, ids(events), timeout_s=10)
    assert latency_s < 3.0


async def test_a_row_for_a_missing_topic_fails_alone_and_is_recorded(
    stack: StackEnv, db: asyncpg.Connection
) -> None:
    missing_topic = f"{TOPIC}.missing-{uuid.uuid4().hex[:6]}"  # never created
    [poison] = new_events(1)
    good = new_events(3)
    try:
        async with relay_for(stack, "poison", poll_interval_s=0.2) as relay:
            async with db.transaction():
                # The bad row comes first: it must not hold up the rows behind it.
                await db.execute(
                    "INSERT INTO payments.outbox"
                    " (event_id, topic, message_key, event_type, payload)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    poison.event_id,
                    missing_topic,
                    poison.payment_id,
                    EVENT_TYPE,
                    poison.payload,
                )
                await insert_rows(db, good)
            await wait_until_sent(db, ids(good), timeout_s=15)
            # The broker acknowledged the other rows: no reason to open the breaker.
            assert available(relay)
        row = await db.fetchrow(
            "SELECT sent_time, attempts, last_error FROM payments.outbox WHERE event_id = $1",
            poison.event_id,
        )
    finally:
        await db.execute("DELETE FROM payments.outbox WHERE topic = $1", missing_topic)
    assert row is not None
    assert row["sent_time"] is None
    assert row["attempts"] >= 1
    assert "no metadata for the topic" in row["last_error"]


async def test_one_row_is_published_to_every_topic_of_its_fan_out(
    stack: StackEnv, db: asyncpg.Connection
) -> None:
    # One outbox row per change; the relay publishes it to its own topic and to the
    # fan-out of its event type, identical on both, and marks it sent once.
    copy_topic = f"{TOPIC}.copy"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(copy_topic, num_partitions=PARTITIONS, replication_factor=1)]
        )
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    start = await end_offsets(stack)
    copy_start = await end_offsets(stack, copy_topic)
    events = new_events(8, keys=3)
    async with relay_for(
        stack, "fan-out", poll_interval_s=0.2, fan_out={EVENT_TYPE: (copy_topic,)}
    ):
        await insert_committed(db, events)
        await wait_until_sent(db, ids(events), timeout_s=15)
    own = [r for r in await read_topic(stack, start) if event_id_of(r) in ids(events)]
    copies = [
        r
        for r in await read_topic(stack, copy_start, topic=copy_topic)
        if event_id_of(r) in ids(events)
    ]
    assert sorted(map(event_id_of, own)) == sorted(ids(events))
    assert sorted(map(event_id_of, copies)) == sorted(ids(events))
    by_id = {event_id_of(r): r for r in own}
    for copy in copies:
        original = by_id[event_id_of(copy)]
        assert (copy.key, copy.value, copy.headers) == (
            original.key,
            original.value,
            original.headers,
        )
    # Per payment, the copies keep the stream's order.
    for key in {e.payment_id for e in events}:
        versions = [
            events_pb2.PaymentEvent.FromString(r.value).version
            for r in sorted(copies, key=lambda r: r.offset)
            if r.key == key.encode()
        ]
        assert versions == sorted(versions)


async def test_a_row_is_sent_only_once_every_topic_of_its_fan_out_took_it(
    stack: StackEnv, db: asyncpg.Connection
) -> None:
    missing_topic = f"{TOPIC}.missing-copy-{uuid.uuid4().hex[:6]}"  # never created
    [event] = new_events(1)
    async with relay_for(
        stack, "fan-out-missing", poll_interval_s=0.2, fan_out={EVENT_TYPE: (missing_topic,)}
    ):
        await insert_committed(db, [event])
        deadline = time.monotonic() + 20
        while True:
            row = await db.fetchrow(
                "SELECT sent_time, attempts, last_error FROM payments.outbox WHERE event_id = $1",
                event.event_id,
            )
            assert row is not None
            if row["attempts"] >= 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    # Its own topic took it, the copy's topic could not: not sent, it goes out again.
    assert row["sent_time"] is None
    assert row["attempts"] >= 1
    assert "no metadata for the topic" in row["last_error"]


async def test_unreachable_kafka_opens_the_breaker_and_rows_wait(
    stack: StackEnv, db: asyncpg.Connection
) -> None:
    dead_bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    factory = CountingFactory()
    # random=1.0: cooldowns exactly 0.4, 0.8, 1.6, 1.6 s, so the attempt count is exact.
    breaker = CircuitBreaker(
        failure_threshold=2, cooldown_base_s=0.4, cooldown_max_s=1.6, random=lambda: 1.0
    )
    start_failures = failures("start")
    events = new_events(5, keys=2)
    relay = OutboxRelay(
        stack.pg_dsn,
        dead_bootstrap,
        client_id="test-dead-kafka",
        poll_interval_s=0.05,  # without a breaker: an attempt every 50 ms
        ack_timeout_s=2.0,
        request_timeout_ms=1_000,
        breaker=breaker,
        producer_factory=factory,
    )
    async with relay:
        assert available(relay)
        await insert_committed(db, events)
        await wait_for(lambda: not available(relay), timeout_s=10, what="breaker open")
        assert factory.calls == 2  # the threshold
        window_s = 3.0
        calls_at_open = factory.calls
        await asyncio.sleep(window_s)
        trials = factory.calls - calls_at_open
        assert not available(relay)
        assert relay.breaker.state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
        assert await relay.drain_once() == 0
        with pytest.raises(ConnectionError):
            await relay.check_kafka()
        assert await relay.backlog() >= len(events)
    log.info(
        "dead broker: %d trials in %.0f s with the breaker (a 50 ms poll would make ~%d)",
        trials,
        window_s,
        window_s / 0.05,
    )
    assert aiokafka_tasks() == []  # every discarded producer was really closed
    # Trials at +0.4, +1.2 and +2.8 s after opening; a little slack for scheduling.
    assert 2 <= trials <= 4
    assert failures("start") - start_failures == factory.calls

    # Never claimed while Kafka was unreachable: untouched, not marked, not counted.
    rows = await db.fetch(
        "SELECT sent_time, attempts FROM payments.outbox WHERE event_id = ANY($1)", ids(events)
    )
    assert len(rows) == len(events)
    assert {(r["sent_time"], r["attempts"]) for r in rows} == {(None, 0)}

    # The rows are intact: a relay that reaches the broker publishes them unaided.
    start = await end_offsets(stack)
    async with relay_for(stack, "after-dead"):
        await wait_until_sent(db, ids(events), timeout_s=15)
    published = {event_id_of(r) for r in await read_topic(stack, start)}
    assert set(ids(events)) <= published


# ---------------------------------------------------------------- a real broker outage


async def test_backlog_drains_by_itself_after_a_real_kafka_restart(
    stack: StackEnv, db: asyncpg.Connection
) -> None:
    factory = CountingFactory()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_base_s=0.5, cooldown_max_s=2.0)
    relay = relay_for(
        stack,
        "restart",
        poll_interval_s=0.5,
        ack_timeout_s=3.0,
        request_timeout_ms=2_000,
        breaker=breaker,
        producer_factory=factory,
    )
    events = new_events(40, keys=8)
    kafka_down = False
    try:
        async with relay:
            warm_up = new_events(1)
            await insert_committed(db, warm_up)
            await wait_until_sent(db, ids(warm_up), timeout_s=15)
            start = await end_offsets(stack)

            pid = kafka_pid()
            calls_at_kill = factory.calls
            os.kill(pid, signal.SIGTERM)
            kafka_down = True
            stop_s = await wait_for(lambda: not pid_running(pid), timeout_s=90, what="exit")

            for chunk in range(0, len(events), 10):
                await insert_committed(db, events[chunk : chunk + 10])
            open_s = await wait_for(
                lambda: not relay.kafka_available, timeout_s=30, what="breaker open"
            )
            assert await sent_count(db, ids(events)) == 0
            assert await relay.backlog() >= len(events)

            # Measured from the moment the broker is asked to start, concurrently with it.
            restart_started_s = time.monotonic()
            drained = asyncio.create_task(wait_until_sent(db, ids(events), timeout_s=300))
            try:
                await stack_up()
                kafka_down = False
                restart_s = time.monotonic() - restart_started_s
                drain_s = await asyncio.wait_for(drained, timeout=60)
            finally:
                drained.cancel()
            producer_starts = factory.calls - calls_at_kill
            assert relay.kafka_available
            assert relay.breaker.state is BreakerState.CLOSED
    finally:
        if kafka_down:  # never leave the shared test stack without its broker
            await stack_up()
    # The producers given up on during the outage were closed, not left retrying.
    assert aiokafka_tasks() == []
    log.info(
        "kafka restart: broker exit %.1f s, breaker open %.1f s after the inserts,"
        " %d producer starts until drained, stack.sh up took %.1f s,"
        " backlog of %d all marked sent %.1f s after stack.sh up began",
        stop_s,
        open_s,
        producer_starts,
        restart_s,
        len(events),
        drain_s,
    )
    rows = await db.fetch(
        "SELECT attempts, last_error FROM payments.outbox WHERE event_id = ANY($1)", ids(events)
    )
    # The first batch was tried while the broker was gone: counted, with a short reason.
    tried = [r for r in rows if r["attempts"] > 0]
    assert tried, "no row recorded the failed attempt"
    assert all(r["last_error"] and len(r["last_error"]) <= 200 for r in tried)
    log.info("last_error of a row tried during the outage: %r", tried[0]["last_error"])
    published = collections.Counter(event_id_of(r) for r in await read_topic(stack, start))
    assert set(ids(events)) <= set(published)
