"""The processor takes a Kafka batch as a unit: one inbox read, risk for the batch at
once, one BeginDispatches call, every gateway request produced before any
acknowledgment is awaited, one inbox write — on in-memory fakes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from consumer_svc.consuming import Item, PoisonMessage
from consumer_svc.processor import Processor
from consumer_svc.risk.rules import Assessment, Decision, DecisionDeferred, Finding
from payrail.events.v1 import events_pb2
from payrail.internal.v1 import payment_ops_pb2 as ops
from payrail.payments.v1 import payments_pb2 as pb

USD_GATEWAY = ops.Gateway(
    gateway_id="gw-usd",
    wire_format="json",
    topic="gateway.gw-usd.requests",
    kinds=[pb.PAYMENT_KIND_DEPOSIT, pb.PAYMENT_KIND_PURCHASE],
    currency_codes=["USD"],
)


def created(currency: str = "USD", *, event_id: str | None = None) -> events_pb2.PaymentEvent:
    # FakeOps answers NOT_FOUND for ids that start with "0" (one in 16 random UUIDs did,
    # and made the batch tests flaky): these never do.
    payment_id, user_id = "a" + str(uuid.uuid4())[1:], str(uuid.uuid4())
    return events_pb2.PaymentEvent(
        event_id=event_id or str(uuid.uuid4()),
        payment_id=payment_id,
        user_id=user_id,
        created=events_pb2.PaymentCreated(
            payment=pb.Payment(
                payment_id=payment_id,
                kind=pb.PAYMENT_KIND_DEPOSIT,
                amount=pb.Money(currency_code=currency, amount_minor=1000),
            )
        ),
    )


def item(event: events_pb2.PaymentEvent | bytes, request_id: str = "req") -> Item:
    raw = event if isinstance(event, bytes) else event.SerializeToString()
    return Item(raw, request_id)


class FakeOps:
    def __init__(self) -> None:
        self.batches: list[list[ops.BeginDispatchRequest]] = []
        self.denied: list[str] = []
        self.failed: list[tuple[str, str]] = []

    async def ListGateways(self, request: Any, **_: Any) -> ops.ListGatewaysResponse:
        return ops.ListGatewaysResponse(gateways=[USD_GATEWAY])

    async def BeginDispatches(
        self, request: ops.BeginDispatchesRequest, **_: Any
    ) -> ops.BeginDispatchesResponse:
        self.batches.append(list(request.items))
        answers = []
        for entry in request.items:
            if entry.payment_id.startswith("0"):  # an unknown payment, by convention here
                answers.append(ops.BeginDispatchResponse(not_found=True))
                continue
            answers.append(
                ops.BeginDispatchResponse(
                    payment=pb.Payment(
                        payment_id=entry.payment_id,
                        kind=pb.PAYMENT_KIND_DEPOSIT,
                        amount=pb.Money(currency_code="USD", amount_minor=1000),
                    ),
                    gateway=USD_GATEWAY,
                    attempt=1,
                    dispatch=True,
                )
            )
        return ops.BeginDispatchesResponse(items=answers)

    async def DenyPayment(self, request: ops.DenyPaymentRequest, **_: Any) -> Any:
        self.denied.append(request.payment_id)
        return ops.DenyPaymentResponse()

    async def FailPayment(self, request: ops.FailPaymentRequest, **_: Any) -> Any:
        self.failed.append((request.payment_id, request.failure_code))
        return ops.FailPaymentResponse()


class FakeRisk:
    def __init__(self, decide: dict[str, Decision | str]) -> None:
        self.decide = decide
        self.batches: list[int] = []

    async def assess_many(
        self, events: Sequence[events_pb2.PaymentEvent]
    ) -> list[Assessment | DecisionDeferred]:
        self.batches.append(len(events))
        answers: list[Assessment | DecisionDeferred] = []
        for event in events:
            verdict = self.decide.get(event.payment_id, Decision.APPROVE)
            if verdict == "defer":
                answers.append(DecisionDeferred("a deposit is under way"))
            else:
                assert isinstance(verdict, Decision)
                answers.append(Assessment(verdict, (Finding("velocity", verdict, "why"),)))
        return answers

    async def settled_many(self, events: Sequence[events_pb2.PaymentEvent]) -> list[str]:
        return ["ignored" for _ in events]

    async def verified(self, event: events_pb2.PaymentEvent) -> None:
        return None


class FakePool:
    """The inbox, counting round trips."""

    def __init__(self) -> None:
        self.inbox: set[str] = set()
        self.reads = 0
        self.writes = 0

    async def fetch(self, sql: str, group: str, event_ids: list[str]) -> list[dict[str, str]]:
        self.reads += 1
        return [{"event_id": e} for e in event_ids if e in self.inbox]

    async def execute(self, sql: str, group: str, event_ids: list[str], topic: str) -> None:
        self.writes += 1
        self.inbox.update(event_ids)


class FakeProducer:
    """Records sends; acknowledgments arrive only when released, so the test can see
    that every record was handed over before any acknowledgment was awaited."""

    def __init__(self, expected: int) -> None:
        self.sent: list[tuple[str, bytes, dict[str, bytes]]] = []
        self.acks: list[asyncio.Future[None]] = []
        self.expected = expected
        self.all_sent = asyncio.Event()

    async def send(self, topic: str, value: bytes, key: bytes, headers: Any) -> Any:
        self.sent.append((topic, value, dict(headers)))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(future)
        if len(self.acks) >= self.expected:
            self.all_sent.set()
        return future

    async def send_and_wait(self, topic: str, value: bytes, **kwargs: Any) -> None:
        self.sent.append((topic, value, dict(kwargs.get("headers", []))))


async def until_all_sent(producer: FakeProducer, task: asyncio.Task[Any]) -> None:
    """Wait until every request was handed to the producer (the batch still awaiting
    their acknowledgments); a batch that failed first raises its error here."""
    sent = asyncio.create_task(producer.all_sent.wait())
    done, _ = await asyncio.wait({sent, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        sent.cancel()
        task.result()  # raises what went wrong
        raise AssertionError("the batch ended before its acknowledgments arrived")
    assert sent in done, "the requests were not all handed to the producer"


def processor(
    risk: FakeRisk, *, requests: int
) -> tuple[Processor, FakeOps, FakePool, FakeProducer]:
    ops_stub, pool, producer = FakeOps(), FakePool(), FakeProducer(requests)
    made = Processor(
        ops_stub=ops_stub,  # type: ignore[arg-type]
        producer=producer,
        pool=pool,
        risk=risk,
    )
    return made, ops_stub, pool, producer


@pytest.mark.asyncio
async def test_a_batch_is_decided_and_dispatched_in_one_call_each() -> None:
    events = [created() for _ in range(5)]
    risk = FakeRisk({})
    made, ops_stub, pool, producer = processor(risk, requests=5)
    task = asyncio.create_task(
        made.handle_batch([item(e, f"req-{n}") for n, e in enumerate(events)])
    )
    # Every request is handed to the producer before any acknowledgment arrives.
    await until_all_sent(producer, task)
    assert not task.done()
    for ack in producer.acks:
        ack.set_result(None)
    assert await task == ["dispatched"] * 5
    assert risk.batches == [5]
    assert [len(batch) for batch in ops_stub.batches] == [5]
    # Each dispatch carries its own request id to payment_svc and to the gateway.
    assert [entry.request_id for entry in ops_stub.batches[0]] == [f"req-{n}" for n in range(5)]
    assert [headers["x-request-id"] for _, _, headers in producer.sent] == [
        f"req-{n}".encode() for n in range(5)
    ]
    assert {topic for topic, _, _ in producer.sent} == {"gateway.gw-usd.requests"}
    assert (pool.reads, pool.writes) == (1, 1)
    assert pool.inbox == {e.event_id for e in events}


@pytest.mark.asyncio
async def test_duplicates_poison_denials_deferrals_and_unknown_payments_in_one_batch() -> None:
    seen, twice, denied, deferred, no_route = created(), created(), created(), created(), created()
    unknown = created()
    unknown.payment_id = "0" + unknown.payment_id[1:]
    unknown.created.payment.payment_id = unknown.payment_id
    no_route.created.payment.amount.currency_code = "JPY"
    risk = FakeRisk({denied.payment_id: Decision.DENY, deferred.payment_id: "defer"})
    made, ops_stub, pool, producer = processor(risk, requests=1)
    pool.inbox.add(seen.event_id)
    made._defer = _no_wait_defer  # type: ignore[method-assign]
    batch = [
        item(seen),
        item(b"\xff not an event"),
        item(twice),
        item(twice),
        item(denied),
        item(deferred),
        item(no_route),
        item(unknown),
    ]
    task = asyncio.create_task(made.handle_batch(batch))
    await until_all_sent(producer, task)
    for ack in producer.acks:
        ack.set_result(None)
    results = await task
    assert results[0] == "duplicate"
    assert isinstance(results[1], PoisonMessage)
    assert results[2:5] == ["dispatched", "duplicate", "denied"]
    assert results[5] == "deferred"
    assert results[6] == "no_route"
    assert isinstance(results[7], PoisonMessage)
    assert "NOT_FOUND" in str(results[7])
    assert ops_stub.denied == [denied.payment_id]
    assert ops_stub.failed == [(no_route.payment_id, "no_route")]
    assert [len(b) for b in ops_stub.batches] == [2]  # twice and unknown; once each
    # Remembered: what had its effect; not the deferred (decided again later), not poison.
    assert pool.inbox == {seen.event_id, twice.event_id, denied.event_id, no_route.event_id}


async def _no_wait_defer(event: Any, raw: bytes, why: str) -> str:
    return "deferred"
