"""ConsumerLoop on an in-memory Kafka: outages are waited out, only poison is
dead-lettered, and a batch whose partition was revoked is never committed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError

from consumer_svc.consuming import ConsumerLoop, PoisonMessage, RetryPolicy
from payrail_common.faults import Backoff
from payrail_common.supervision import Supervision

TP = TopicPartition("payments.events", 0)
FAST = RetryPolicy(backoff=Backoff(base_s=0.001, max_s=0.002), unknown_tries_max=3)


@dataclass
class Record:
    value: bytes
    offset: int
    topic: str = "payments.events"
    partition: int = 0
    key: bytes = b"k"
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class FakeConsumer:
    """Commits are recorded; ``commit_errors`` are raised by the next commits."""

    assigned: set[TopicPartition] = field(default_factory=lambda: {TP})
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    commit_errors: list[BaseException] = field(default_factory=list)

    async def getmany(self, *_: Any, **__: Any) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0.01)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        assert offsets is not None
        self.commits.append(offsets)

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    async def position(self, partition: TopicPartition) -> int:
        return 0


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes, dict[str, bytes]]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, **kwargs: Any
    ) -> None:
        if self.errors:
            raise self.errors.pop(0)
        assert value is not None
        self.sent.append((topic, value, dict(kwargs.get("headers", []))))


def rpc_error(code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="down")


class Scripted:
    """A handler that raises the given errors, in order, before it succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, raw: bytes) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def make_loop(
    handler: Any, consumer: FakeConsumer | None = None, producer: FakeProducer | None = None
) -> tuple[ConsumerLoop, FakeConsumer, FakeProducer, Supervision]:
    consumer = consumer or FakeConsumer()
    producer = producer or FakeProducer()
    registry = Supervision()
    loop = ConsumerLoop(
        consumer=consumer,
        producer=producer,
        handler=handler,
        group="test-group",
        retry=FAST,
        registry=registry,
    )
    return loop, consumer, producer, registry


@pytest.mark.asyncio
async def test_an_unreachable_dependency_is_waited_for_never_dead_lettered() -> None:
    # Fifty tries: far more than any bounded retry would allow, as a long outage is.
    errors = [rpc_error() for _ in range(25)] + [
        asyncpg.exceptions.AdminShutdownError() for _ in range(25)
    ]
    handler = Scripted(*errors)
    loop, consumer, producer, registry = make_loop(handler)
    assert await loop.handle_batch(TP, [Record(b"e1", 7)]) is True
    assert handler.calls == 51
    assert producer.sent == []
    assert consumer.commits == [{TP: 8}]
    assert {"payment_svc", "postgres"} <= registry.degraded()


@pytest.mark.asyncio
async def test_a_broker_error_from_the_handler_is_waited_for() -> None:
    handler = Scripted(KafkaConnectionError(), KafkaConnectionError())
    loop, consumer, producer, registry = make_loop(handler)
    await loop.handle_batch(TP, [Record(b"e1", 0)])
    assert producer.sent == []
    assert consumer.commits == [{TP: 1}]
    assert "kafka" in registry.degraded()


@pytest.mark.asyncio
async def test_poison_and_final_answers_are_dead_lettered_with_the_error() -> None:
    async def handler(raw: bytes) -> str:
        if raw == b"bad":
            raise PoisonMessage("undecodable event")
        raise rpc_error(grpc.StatusCode.FAILED_PRECONDITION)

    loop, consumer, producer, _ = make_loop(handler)
    await loop.handle_batch(TP, [Record(b"bad", 3), Record(b"final", 4)])
    assert [(topic, value) for topic, value, _ in producer.sent] == [
        ("payments.events.dlq", b"bad"),
        ("payments.events.dlq", b"final"),
    ]
    errors = {value: headers["error"] for _, value, headers in producer.sent}
    assert errors[b"bad"] == b"undecodable event"
    assert errors[b"final"] == b"payment_svc answered FAILED_PRECONDITION"
    assert producer.sent[0][2]["source-offset"] == b"3"
    assert consumer.commits == [{TP: 5}]


@pytest.mark.asyncio
async def test_an_unexplained_error_is_retried_a_few_times_then_dead_lettered() -> None:
    handler = Scripted(*(rpc_error(grpc.StatusCode.INTERNAL) for _ in range(10)))
    loop, _, producer, _ = make_loop(handler)
    await loop.handle_batch(TP, [Record(b"e", 0)])
    assert handler.calls == FAST.unknown_tries_max
    assert producer.sent[0][2]["error"] == b"grpc INTERNAL after 3 tries"


@pytest.mark.asyncio
async def test_a_dead_letter_waits_for_the_broker_to_take_it() -> None:
    producer = FakeProducer(errors=[KafkaConnectionError() for _ in range(5)])
    loop, consumer, _, _ = make_loop(Scripted(PoisonMessage("bad")), producer=producer)
    await loop.handle_batch(TP, [Record(b"bad", 0)])
    assert len(producer.sent) == 1
    assert consumer.commits == [{TP: 1}]


@pytest.mark.asyncio
async def test_a_batch_whose_partition_was_revoked_meanwhile_is_not_committed() -> None:
    async def handler(raw: bytes) -> str:
        loop.revocations.revoked([TP])  # a rebalance happens while the record is handled
        return "ok"

    loop, consumer, _, _ = make_loop(handler)
    assert await loop.handle_batch(TP, [Record(b"e", 0)]) is False
    assert consumer.commits == []


@pytest.mark.asyncio
async def test_a_partition_no_longer_assigned_is_not_committed() -> None:
    consumer = FakeConsumer(assigned=set())
    loop, _, _, _ = make_loop(Scripted(), consumer=consumer)
    assert await loop.handle_batch(TP, [Record(b"e", 0)]) is False
    assert consumer.commits == []


@pytest.mark.asyncio
async def test_a_commit_refused_by_a_rebalance_does_not_end_the_loop() -> None:
    consumer = FakeConsumer(commit_errors=[CommitFailedError()])
    loop, _, _, _ = make_loop(Scripted(), consumer=consumer)
    assert await loop.handle_batch(TP, [Record(b"e", 0)]) is False
    # The next batch commits normally.
    assert await loop.handle_batch(TP, [Record(b"f", 1)]) is True
    assert consumer.commits == [{TP: 2}]


@pytest.mark.asyncio
async def test_a_commit_that_fails_for_a_broker_outage_is_retried() -> None:
    consumer = FakeConsumer(commit_errors=[KafkaConnectionError(), KafkaConnectionError()])
    loop, _, _, registry = make_loop(Scripted(), consumer=consumer)
    assert await loop.handle_batch(TP, [Record(b"e", 0)]) is True
    assert consumer.commits == [{TP: 1}]
    assert "kafka" in registry.degraded()


# ---------------------------------------------------------------- batch handlers


class ScriptedBatch:
    """A batch handler: raises the given errors in order, then answers per item —
    ``poison`` values are PoisonMessage, ``refused`` values raise a final gRPC error
    whenever they are part of a call."""

    def __init__(
        self, *errors: BaseException, poison: set[bytes] | None = None, refused: bytes = b""
    ) -> None:
        self.errors = list(errors)
        self.poison = poison or set()
        self.refused = refused
        self.calls: list[list[bytes]] = []
        self.request_ids: list[list[str]] = []

    async def __call__(self, items: Any) -> list[str | PoisonMessage]:
        self.calls.append([item.value for item in items])
        self.request_ids.append([item.request_id for item in items])
        if self.errors:
            raise self.errors.pop(0)
        if self.refused and any(item.value == self.refused for item in items):
            raise rpc_error(grpc.StatusCode.FAILED_PRECONDITION)
        return [
            PoisonMessage("cannot decode") if item.value in self.poison else "ok" for item in items
        ]


def make_batch_loop(handler: Any) -> tuple[ConsumerLoop, FakeConsumer, FakeProducer, Supervision]:
    consumer, producer, registry = FakeConsumer(), FakeProducer(), Supervision()
    loop = ConsumerLoop(
        consumer=consumer,
        producer=producer,
        batch_handler=handler,
        group="test-group",
        retry=FAST,
        registry=registry,
    )
    return loop, consumer, producer, registry


def records(*values: bytes) -> list[Record]:
    return [Record(value, offset) for offset, value in enumerate(values)]


@pytest.mark.asyncio
async def test_a_batch_handler_gets_the_whole_batch_in_one_call_with_request_ids() -> None:
    handler = ScriptedBatch()
    loop, consumer, producer, _ = make_batch_loop(handler)
    batch = records(b"a", b"b", b"c")
    batch[1].headers = (("x-request-id", b"client-chosen"),)
    assert await loop.handle_batch(TP, batch) is True
    assert handler.calls == [[b"a", b"b", b"c"]]
    ids = handler.request_ids[0]
    assert ids[1] == "client-chosen"
    assert ids[0].startswith("test-group-")
    assert len(set(ids)) == 3
    assert producer.sent == []
    assert consumer.commits == [{TP: 3}]


@pytest.mark.asyncio
async def test_a_batch_waits_out_an_outage_as_a_whole() -> None:
    handler = ScriptedBatch(*(rpc_error() for _ in range(20)))
    loop, consumer, producer, registry = make_batch_loop(handler)
    await loop.handle_batch(TP, records(b"a", b"b"))
    assert len(handler.calls) == 21
    assert all(call == [b"a", b"b"] for call in handler.calls)
    assert producer.sent == []
    assert consumer.commits == [{TP: 2}]
    assert "payment_svc" in registry.degraded()


@pytest.mark.asyncio
async def test_poison_items_of_a_batch_are_dead_lettered_alone() -> None:
    handler = ScriptedBatch(poison={b"bad"})
    loop, consumer, producer, _ = make_batch_loop(handler)
    await loop.handle_batch(TP, records(b"a", b"bad", b"c"))
    assert handler.calls == [[b"a", b"bad", b"c"]]
    assert [(topic, value) for topic, value, _ in producer.sent] == [
        ("payments.events.dlq", b"bad")
    ]
    assert producer.sent[0][2]["error"] == b"cannot decode"
    assert consumer.commits == [{TP: 3}]


@pytest.mark.asyncio
async def test_a_final_error_of_a_batch_is_isolated_one_record_at_a_time() -> None:
    # One record makes every call that contains it fail for good: the batch falls back
    # to one call per record, the others succeed, only that one is dead-lettered.
    handler = ScriptedBatch(refused=b"refused")
    loop, consumer, producer, _ = make_batch_loop(handler)
    await loop.handle_batch(TP, records(b"a", b"refused", b"c"))
    assert handler.calls == [[b"a", b"refused", b"c"], [b"a"], [b"refused"], [b"c"]]
    assert [value for _, value, _ in producer.sent] == [b"refused"]
    assert producer.sent[0][2]["error"] == b"payment_svc answered FAILED_PRECONDITION"
    assert consumer.commits == [{TP: 3}]


def test_a_loop_takes_exactly_one_kind_of_handler() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ConsumerLoop(consumer=FakeConsumer(), producer=FakeProducer(), group="g")
    with pytest.raises(ValueError, match="exactly one"):
        ConsumerLoop(
            consumer=FakeConsumer(),
            producer=FakeProducer(),
            handler=Scripted(),
            batch_handler=ScriptedBatch(),
            group="g",
        )


TP1 = TopicPartition("payments.events", 1)


@pytest.mark.asyncio
async def test_every_partition_of_a_poll_is_one_batch_and_one_commit() -> None:
    handler = ScriptedBatch()
    loop, consumer, _, _ = make_batch_loop(handler)
    consumer.assigned = {TP, TP1}
    other = [Record(b"x", 40, partition=1), Record(b"y", 41, partition=1)]
    done = await loop.handle_batches({TP: records(b"a", b"b"), TP1: other})
    assert done == {TP: True, TP1: True}
    # Each partition's records in their order, in one call.
    assert handler.calls == [[b"a", b"b", b"x", b"y"]]
    assert consumer.commits == [{TP: 2, TP1: 42}]


@pytest.mark.asyncio
async def test_a_partition_revoked_during_a_poll_batch_is_not_committed_the_others_are() -> None:
    consumers: list[FakeConsumer] = []

    async def revoke_tp1(items: Any) -> list[str | PoisonMessage]:
        consumers[0].assigned = {TP}  # a rebalance while the batch is handled
        return ["ok"] * len(items)

    loop, consumer, _, _ = make_batch_loop(revoke_tp1)
    consumers.append(consumer)
    consumer.assigned = {TP, TP1}
    done = await loop.handle_batches({TP: records(b"a"), TP1: [Record(b"x", 9, partition=1)]})
    assert done == {TP: True, TP1: False}
    assert consumer.commits == [{TP: 1}]


@dataclass
class ScriptedPolls(FakeConsumer):
    """getmany answers these polls in turn (a timeout of 0 takes only what is already
    buffered: the next poll), then nothing."""

    polls: list[dict[TopicPartition, list[Any]]] = field(default_factory=list)
    timeouts_ms: list[int] = field(default_factory=list)

    async def getmany(self, *_: Any, **kwargs: Any) -> dict[TopicPartition, list[Any]]:
        self.timeouts_ms.append(kwargs.get("timeout_ms", -1))
        if self.polls:
            return self.polls.pop(0)
        await asyncio.sleep(0.01)
        return {}


@pytest.mark.asyncio
async def test_linger_adds_what_arrives_meanwhile_to_the_same_batch() -> None:
    handler = ScriptedBatch()
    consumer = ScriptedPolls(
        assigned={TP, TP1},
        polls=[
            {TP: [Record(b"a", 0)]},
            {TP: [Record(b"b", 1)], TP1: [Record(b"x", 5, partition=1)]},
        ],
    )
    loop = ConsumerLoop(
        consumer=consumer,
        producer=FakeProducer(),
        batch_handler=handler,
        group="test-group",
        retry=FAST,
        registry=Supervision(),
        linger_ms=5,
    )
    loop.start()
    try:
        for _ in range(200):
            if consumer.commits:
                break
            await asyncio.sleep(0.005)
    finally:
        await loop.stop()
    assert handler.calls[0] == [b"a", b"b", b"x"]
    assert consumer.commits[0] == {TP: 2, TP1: 6}
    assert consumer.timeouts_ms[:2] == [1000, 0]  # the second poll only takes what is there
