"""The SDK's reporting half against an in-process CallbackService: batches signed as a
whole, split when too large, retried while payrail is away; the batcher gathering ready
results into one call, answering each caller for its own result, and falling back to one
call per result when payrail cannot apply a batch; the worker logging each result under
its own request id and committing only what it handled."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from gateway_sdk import CallbackSecret, GatewayRequest, GatewayResult, get_format, verify
from gateway_sdk.formats.base import BATCH_RESULTS_MAX
from gateway_sdk.reporting import APPLIED, CONFLICT, DUPLICATE, NOT_FOUND, ResultBatcher
from gateway_sdk.runtime import CallbackClient, GatewayWorker, RequestIdLogFilter, result_for
from gateway_sdk.sealing import generate_key_pair
from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc

SECRET = CallbackSecret(b"k" * 32)
FORMAT = get_format("json")
GATEWAY = "sandbox-json"


class FakePayrail(callbacks_pb2_grpc.CallbackServiceServicer):
    """Checks every signature; applies results like payrail would, as told."""

    def __init__(self) -> None:
        self.singles: list[tuple[GatewayResult, str | None]] = []
        self.batches: list[tuple[list[GatewayResult], list[str], str | None]] = []
        self.applied: set[str] = set()
        self.conflicts: set[str] = set()  # payment ids whose results conflict
        self.unknown: set[str] = set()  # payment ids payrail never gave this gateway
        self.poison: set[str] = set()  # payment ids whose result payrail fails on
        self.batch_errors: list[grpc.StatusCode] = []  # next batch calls fail with these
        self.single_errors: list[grpc.StatusCode] = []

    def _verified(self, payload: bytes, context: grpc.aio.ServicerContext) -> str | None:
        metadata = dict(context.invocation_metadata() or ())
        verify(payload, metadata["x-payrail-signature"], [SECRET], now=int(time.time()))
        return metadata.get("x-request-id")

    def _disposition(self, result: GatewayResult) -> callbacks_pb2.ResultDisposition:
        if result.payment_id in self.unknown:
            return NOT_FOUND
        if result.payment_id in self.conflicts:
            return CONFLICT
        if result.event_id in self.applied:
            return DUPLICATE
        self.applied.add(result.event_id)
        return APPLIED

    async def ReportResult(
        self, request: callbacks_pb2.ReportResultRequest, context: grpc.aio.ServicerContext
    ) -> callbacks_pb2.ReportResultResponse:
        request_id = self._verified(request.payload, context)
        result = FORMAT.decode_result(request.payload)
        self.singles.append((result, request_id))
        if self.single_errors:
            await context.abort(self.single_errors.pop(0), "told to")
        if result.payment_id in self.poison:
            await context.abort(grpc.StatusCode.INTERNAL, "poison")
        disposition = self._disposition(result)
        if disposition == NOT_FOUND:
            await context.abort(grpc.StatusCode.NOT_FOUND, "payment not found")
        if disposition == CONFLICT:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "conflict")
        return callbacks_pb2.ReportResultResponse(
            payment_id=result.payment_id, duplicate=disposition == DUPLICATE
        )

    async def ReportResults(
        self, request: callbacks_pb2.ReportResultsRequest, context: grpc.aio.ServicerContext
    ) -> callbacks_pb2.ReportResultsResponse:
        request_id = self._verified(request.payload, context)
        results = list(FORMAT.decode_results(request.payload))
        self.batches.append((results, list(request.request_ids), request_id))
        if self.batch_errors:
            await context.abort(self.batch_errors.pop(0), "told to")
        if any(r.payment_id in self.poison for r in results):
            await context.abort(grpc.StatusCode.INTERNAL, "poison")
        replies = []
        for result in results:
            disposition = self._disposition(result)
            replies.append(
                callbacks_pb2.ReportedResult(
                    event_id=result.event_id,
                    payment_id=result.payment_id,
                    disposition=disposition,
                    duplicate=disposition == DUPLICATE,
                    payment_status="COMPLETED" if disposition == CONFLICT else "",
                )
            )
        return callbacks_pb2.ReportResultsResponse(results=replies)


@pytest_asyncio.fixture(loop_scope="session")
async def payrail() -> AsyncIterator[tuple[FakePayrail, grpc.aio.Channel]]:
    fake = FakePayrail()
    server = grpc.aio.server()
    callbacks_pb2_grpc.add_CallbackServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield fake, channel
    await server.stop(0)


def client(channel: grpc.aio.Channel, **options: Any) -> CallbackClient:
    return CallbackClient(
        channel,
        gateway_id=GATEWAY,
        wire_format=FORMAT,
        secrets=[SECRET],
        backoff_max_s=0.01,
        **options,
    )


def result(n: int, **changes: Any) -> GatewayResult:
    base = GatewayResult(
        event_id=f"req-{n}/result",
        payment_id=f"pay-{n}",
        outcome="APPROVED",
        gateway_reference=f"ref-{n}",
        occur_time=1_700_000_000,
    )
    return dataclasses.replace(base, **changes)


# ------------------------------------------------------------------------ report_many


@pytest.mark.asyncio(loop_scope="session")
async def test_report_many_signs_one_payload_and_carries_every_request_id(
    payrail: tuple[FakePayrail, grpc.aio.Channel],
) -> None:
    fake, channel = payrail
    results = [result(1), result(2), result(3)]
    replies = await client(channel).report_many(results, request_ids=["r-1", None, "r-3"])
    assert [(r.event_id, r.disposition) for r in replies] == [
        (x.event_id, APPLIED) for x in results
    ]
    ((sent, request_ids, call_id),) = fake.batches
    assert sent == results
    assert request_ids == ["r-1", "", "r-3"]
    assert call_id == "r-1"
    # Without ids: none sent at all.
    await client(channel).report_many([result(4), result(5)])
    assert fake.batches[-1][1:] == ([], None)
    with pytest.raises(ValueError, match="one id per result"):
        await client(channel).report_many([result(6)], request_ids=["a", "b"])


@pytest.mark.asyncio(loop_scope="session")
async def test_report_many_splits_what_one_call_cannot_carry(
    payrail: tuple[FakePayrail, grpc.aio.Channel],
) -> None:
    fake, channel = payrail
    many = [result(n) for n in range(BATCH_RESULTS_MAX + 1)]
    replies = await client(channel).report_many(many)
    assert [len(b[0]) for b in fake.batches] == [BATCH_RESULTS_MAX, 1]
    assert [r.event_id for r in replies] == [r.event_id for r in many]
    # Results too large for the byte bound in one call: halves until they fit.
    clef = "\U0001d11e"
    big = [
        result(1000 + n, outcome="DECLINED", failure_code="x", failure_message=clef * 500)
        for n in range(BATCH_RESULTS_MAX)
    ]
    fake.batches.clear()
    replies = await client(channel).report_many(big)
    assert len(replies) == BATCH_RESULTS_MAX
    assert [len(b[0]) for b in fake.batches] == [250, 250]


@pytest.mark.asyncio(loop_scope="session")
async def test_report_many_retries_while_payrail_is_away_and_not_after_a_refusal(
    payrail: tuple[FakePayrail, grpc.aio.Channel],
) -> None:
    fake, channel = payrail
    fake.batch_errors = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE]
    replies = await client(channel).report_many([result(1), result(2)])
    assert len(fake.batches) == 3
    assert [r.disposition for r in replies] == [APPLIED, APPLIED]
    fake.batch_errors = [grpc.StatusCode.UNAUTHENTICATED]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client(channel).report_many([result(3), result(4)])
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert len(fake.batches) == 4


# ------------------------------------------------------------------------ the batcher


@pytest.mark.asyncio(loop_scope="session")
async def test_results_ready_together_share_one_call(
    payrail: tuple[FakePayrail, grpc.aio.Channel],
) -> None:
    fake, channel = payrail
    batcher = ResultBatcher(client(channel), linger_ms=20, batch_max=100)
    fake.conflicts.add("pay-3")
    replies = await asyncio.gather(
        *(batcher.submit(result(n), f"r-{n}") for n in range(5)),
    )
    assert len(fake.batches) == 1
    assert fake.singles == []
    assert [r.event_id for r in replies] == [f"req-{n}/result" for n in range(5)]
    assert [r.disposition for r in replies] == [APPLIED, APPLIED, APPLIED, CONFLICT, APPLIED]
    assert fake.batches[0][1] == [f"r-{n}" for n in range(5)]


@pytest.mark.asyncio(loop_scope="session")
async def test_batches_are_bounded_and_a_lone_result_goes_alone(
    payrail: tuple[FakePayrail, grpc.aio.Channel],
) -> None:
    fake, channel = payrail
    batcher = ResultBatcher(client(channel), linger_ms=20, batch_max=3)
    await asyncio.gather(*(batcher.submit(result(n)) for n in range(5)))
    assert sorted(len(b[0]) for b in fake.batches) == [2, 3]
    await batcher.submit(result(9), "r-9")
    assert [(r.event_id, rid) for r, rid in fake.singles] == [("req-9/result", "r-9")]
    alone = ResultBatcher(client(channel), linger_ms=20, batch_max=1)
    await asyncio.gather(*(alone.submit(result(n)) for n in range(10, 13)))
    assert len(fake.singles) == 4
    assert len(fake.batches) == 2
    with pytest.raises(ValueError, match="batch_max"):
        ResultBatcher(client(channel), batch_max=BATCH_RESULTS_MAX + 1)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_batch_payrail_fails_on_is_reported_one_by_one(
    payrail: tuple[FakePayrail, grpc.aio.Channel],
) -> None:
    fake, channel = payrail
    fake.poison.add("pay-2")
    batcher = ResultBatcher(client(channel), linger_ms=20)
    replies = await asyncio.gather(
        *(batcher.submit(result(n), f"r-{n}") for n in range(4)), return_exceptions=True
    )
    assert len(fake.batches) == 1
    # Each result alone, under its own request id: only the poisoned one fails.
    assert sorted((r.event_id, rid) for r, rid in fake.singles) == [
        (f"req-{n}/result", f"r-{n}") for n in range(4)
    ]
    assert isinstance(replies[2], grpc.aio.AioRpcError)
    assert replies[2].code() == grpc.StatusCode.INTERNAL
    assert [r.disposition for i, r in enumerate(replies) if i != 2] == [APPLIED] * 3  # type: ignore[union-attr]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_payrail_without_batches_gets_results_one_by_one_from_then_on(
    payrail: tuple[FakePayrail, grpc.aio.Channel],
) -> None:
    fake, channel = payrail
    fake.batch_errors = [grpc.StatusCode.UNIMPLEMENTED]
    fake.unknown.add("pay-1")
    batcher = ResultBatcher(client(channel), linger_ms=20)
    first = await asyncio.gather(*(batcher.submit(result(n)) for n in range(3)))
    assert [r.disposition for r in first] == [APPLIED, NOT_FOUND, APPLIED]
    await asyncio.gather(*(batcher.submit(result(n)) for n in range(3, 6)))
    assert len(fake.batches) == 1
    assert len(fake.singles) == 6


@pytest.mark.asyncio(loop_scope="session")
async def test_a_refused_batch_is_every_submitters_error(
    payrail: tuple[FakePayrail, grpc.aio.Channel],
) -> None:
    fake, channel = payrail
    fake.batch_errors = [grpc.StatusCode.UNAUTHENTICATED]
    batcher = ResultBatcher(client(channel), linger_ms=20)
    outcomes = await asyncio.gather(
        *(batcher.submit(result(n)) for n in range(3)), return_exceptions=True
    )
    assert [o.code() for o in outcomes] == [grpc.StatusCode.UNAUTHENTICATED] * 3  # type: ignore[union-attr]
    assert fake.singles == []


# ------------------------------------------------------------------------- the worker


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RequestIdLogFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("gateway_sdk")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def request(n: int) -> GatewayRequest:
    return GatewayRequest(
        request_id=f"req-{n}",
        payment_id=f"pay-{n}",
        attempt=1,
        kind="DEPOSIT",
        amount_minor=1000,
        currency_code="USD",
        callback_deadline=1_700_000_030,
    )


class FakeConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int]] = []
        self.commits: list[dict[str, int]] = []

    def seek(self, tp: str, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def commit(self, offsets: dict[str, int]) -> None:
        self.commits.append(offsets)


def worker(channel: grpc.aio.Channel, consumer: Any = None) -> GatewayWorker:
    async def charge(request: GatewayRequest, card: object) -> GatewayResult:
        await asyncio.sleep(0.001)
        return result_for(request, approved=True, gateway_reference=f"ref-{request.request_id}")

    return GatewayWorker(
        consumer=consumer,
        wire_format=FORMAT,
        private_key=generate_key_pair()[0],
        callbacks=client(channel),
        charge=charge,
        linger_ms=20,
        backoff_max_s=0.01,
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_the_worker_batches_and_logs_each_result_under_its_own_request_id(
    payrail: tuple[FakePayrail, grpc.aio.Channel], records: Records
) -> None:
    fake, channel = payrail
    fake.conflicts.add("pay-2")
    gateway = worker(channel)
    await asyncio.gather(
        *(
            gateway.handle(
                FORMAT.encode_request(request(n)), [("x-request-id", f"rid-{n}".encode())]
            )
            for n in range(4)
        )
    )
    ((sent, request_ids, call_id),) = fake.batches
    assert [r.event_id for r in sent] == [f"req-{n}/result" for n in range(4)]
    assert request_ids == [f"rid-{n}" for n in range(4)]
    assert call_id == "rid-0"
    reported = {
        (r.request_id, r.payment_id)  # type: ignore[attr-defined]
        for r in records.records
        if r.getMessage() == "result reported"
    }
    assert reported == {(f"rid-{n}", f"pay-{n}") for n in (0, 1, 3)}
    (refused,) = [r for r in records.records if r.getMessage() == "result not accepted"]
    assert (refused.request_id, refused.code) == ("rid-2", "FAILED_PRECONDITION")  # type: ignore[attr-defined]


@pytest.mark.asyncio(loop_scope="session")
async def test_the_worker_commits_what_it_handled_and_rereads_the_rest(
    payrail: tuple[FakePayrail, grpc.aio.Channel],
) -> None:
    fake, channel = payrail
    consumer = FakeConsumer()
    gateway = worker(channel, consumer)
    # payrail is away for this partition's result (every try of the call).
    fake.single_errors = [grpc.StatusCode.UNAVAILABLE] * 5

    @dataclasses.dataclass
    class Record:
        value: bytes
        offset: int
        headers: tuple[tuple[str, bytes], ...] = ()

    failed = await gateway._handle_fetched(
        {"tp-a": [Record(FORMAT.encode_request(request(7)), 40)]}
    )
    assert failed is not None
    assert failed[1].code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert consumer.seeks == [("tp-a", 40)]
    assert consumer.commits == []
    # Next pass: both partitions' results in one call; both committed.
    passed = await gateway._handle_fetched(
        {
            "tp-a": [Record(FORMAT.encode_request(request(7)), 40)],
            "tp-b": [
                Record(FORMAT.encode_request(request(8)), 3),
                Record(FORMAT.encode_request(request(9)), 4),
            ],
        }
    )
    assert passed is None
    assert consumer.commits == [{"tp-a": 41, "tp-b": 5}]
    assert [len(b[0]) for b in fake.batches] == [3]
