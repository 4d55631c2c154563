"""ReportResults on the real stack: a signed batch through the edge, applied in one
PostgreSQL transaction, each result with its own outcome; all or nothing when something
fails midway; two batches racing over the same payments apply each result once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio

from gateway_sdk import CallbackSecret, get_format
from gateway_sdk.formats.base import GatewayResult
from gateway_sdk.signing import signature_metadata
from payment_svc.adapters import processing as processing_adapter
from payment_svc.adapters.processing import PostgresProcessingRepository
from payment_svc.adapters.results import PostgresResultsRepository
from payment_svc.service.results import BatchResult, Disposition
from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.conftest import StackEnv
from tests.e2e.test_processing import assert_ledger_invariants
from tests.helpers import User, register_and_login
from tests.integration.test_callback_events import register_gateway

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

D = callbacks_pb2


@pytest_asyncio.fixture(loop_scope="session")
async def pool(stack: StackEnv) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(stack.pg_dsn, min_size=1, max_size=4) as created:
        yield created


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(pool: asyncpg.Pool) -> AsyncIterator[tuple[str, CallbackSecret]]:
    registered = await register_gateway(pool, "json")
    yield registered
    await pool.execute("UPDATE payments.gateways SET enabled = false WHERE id = $1", registered[0])


async def dispatched(
    channel: grpc.aio.Channel,
    pool: asyncpg.Pool,
    user: User,
    gateway_id: str,
    *,
    kind: pb.PaymentKind = pb.PAYMENT_KIND_DEPOSIT,
    amount_minor: int = 1000,
) -> str:
    """A new payment of ``user``, PROCESSING at ``gateway_id``."""
    request = pb.CreatePaymentRequest(
        idempotency_key=str(uuid.uuid4()),
        kind=kind,
        amount=pb.Money(currency_code="USD", amount_minor=amount_minor),
        card=pb.CardInput(number="4242424242424242", exp_month=12, exp_year=2031, cvc="123"),
    )
    if kind == pb.PAYMENT_KIND_PURCHASE:
        request.merchant.CopyFrom(
            pb.Merchant(
                merchant_id="m-1",
                name="Shop",
                category_code="5411",
                country_code="US",
                city="Boston",
                latitude=42.36,
                longitude=-71.06,
            )
        )
    created = await payments_pb2_grpc.PaymentServiceStub(channel).CreatePayment(
        request, metadata=user.metadata, timeout=5
    )
    payment_id: str = created.payment.payment_id
    record = await PostgresProcessingRepository(pool).begin_dispatch(
        payment_id, gateway_id, datetime.now(UTC)
    )
    assert record.dispatch
    return payment_id


def gateway_result(
    event_id: str, payment_id: str, *, approved: bool = True, reference: str = ""
) -> GatewayResult:
    return GatewayResult(
        event_id=event_id,
        payment_id=payment_id,
        outcome="APPROVED" if approved else "DECLINED",
        failure_code="" if approved else "card_declined",
        failure_message="" if approved else "declined by the test",
        gateway_reference=reference,
        occur_time=int(time.time()),
    )


async def report(
    channel: grpc.aio.Channel,
    gateway: tuple[str, CallbackSecret],
    results: Sequence[GatewayResult],
    **request: Any,
) -> callbacks_pb2.ReportResultsResponse:
    gateway_id, secret = gateway
    payload = get_format("json").encode_results(results)
    reply: callbacks_pb2.ReportResultsResponse = await callbacks_pb2_grpc.CallbackServiceStub(
        channel
    ).ReportResults(
        callbacks_pb2.ReportResultsRequest(gateway_id=gateway_id, payload=payload, **request),
        metadata=signature_metadata(payload, [secret], timestamp=int(time.time())),
        timeout=10,
    )
    return reply


async def status_of(channel: grpc.aio.Channel, user: User, payment_id: str) -> pb.Payment:
    reply = await payments_pb2_grpc.PaymentServiceStub(channel).GetPayment(
        pb.GetPaymentRequest(payment_id=payment_id), metadata=user.metadata, timeout=5
    )
    payment: pb.Payment = reply.payment
    return payment


async def test_one_batch_applies_in_one_transaction_with_an_outcome_per_result(
    channel: grpc.aio.Channel,
    pool: asyncpg.Pool,
    stack: StackEnv,
    gateway: tuple[str, CallbackSecret],
) -> None:
    user = await register_and_login(channel)
    gateway_id, secret = gateway
    deposit = await dispatched(channel, pool, user, gateway_id, amount_minor=2500)
    declined = await dispatched(channel, pool, user, gateway_id, kind=pb.PAYMENT_KIND_PURCHASE)
    twice = await dispatched(channel, pool, user, gateway_id, amount_minor=700)
    settled = await dispatched(channel, pool, user, gateway_id, amount_minor=300)
    elsewhere_gateway = await register_gateway(pool, "json")
    elsewhere = await dispatched(channel, pool, user, elsewhere_gateway[0])
    unknown = str(uuid.uuid4())
    tag = uuid.uuid4().hex[:8]

    # One payment is settled already, by the single call.
    single = get_format("json").encode_result(gateway_result(f"{tag}-single", settled))
    await callbacks_pb2_grpc.CallbackServiceStub(channel).ReportResult(
        callbacks_pb2.ReportResultRequest(gateway_id=gateway_id, payload=single),
        metadata=signature_metadata(single, [secret], timestamp=int(time.time())),
        timeout=5,
    )

    batch = [
        gateway_result(f"{tag}-1", deposit, reference="ref-deposit"),
        gateway_result(f"{tag}-2", declined, approved=False),
        gateway_result(f"{tag}-3", unknown),  # no such payment
        gateway_result(f"{tag}-4", elsewhere),  # another gateway's payment
        gateway_result(f"{tag}-single", settled),  # a replay of the single call's event
        gateway_result(f"{tag}-5", settled, approved=False),  # conflicts with COMPLETED
        gateway_result(f"{tag}-6", twice),
        gateway_result(f"{tag}-7", twice),  # the same outcome again, another event
        gateway_result(f"{tag}-8", twice, approved=False),  # now a conflict
        gateway_result(f"{tag}-1", deposit),  # the batch's own first event again
    ]
    request_ids = [f"it-{tag}-{i}" for i in range(len(batch))]
    reply = await report(channel, gateway, batch, request_ids=request_ids)

    assert [(r.event_id, r.payment_id) for r in reply.results] == [
        (r.event_id, r.payment_id) for r in batch
    ]
    assert [r.disposition for r in reply.results] == [
        D.RESULT_DISPOSITION_APPLIED,
        D.RESULT_DISPOSITION_APPLIED,
        D.RESULT_DISPOSITION_NOT_FOUND,
        D.RESULT_DISPOSITION_NOT_FOUND,
        D.RESULT_DISPOSITION_DUPLICATE,
        D.RESULT_DISPOSITION_CONFLICT,
        D.RESULT_DISPOSITION_APPLIED,
        D.RESULT_DISPOSITION_DUPLICATE,
        D.RESULT_DISPOSITION_CONFLICT,
        D.RESULT_DISPOSITION_DUPLICATE,
    ]
    assert [r.duplicate for r in reply.results] == [
        r.disposition == D.RESULT_DISPOSITION_DUPLICATE for r in reply.results
    ]
    assert [r.payment_status for r in reply.results if r.payment_status] == [
        "COMPLETED",
        "COMPLETED",
    ]

    got = {pid: await status_of(channel, user, pid) for pid in (deposit, declined, twice)}
    assert got[deposit].status == pb.PAYMENT_STATUS_COMPLETED
    assert got[deposit].gateway_reference == "ref-deposit"
    assert got[declined].status == pb.PAYMENT_STATUS_FAILED
    assert got[declined].failure_code == "card_declined"
    assert got[twice].status == pb.PAYMENT_STATUS_COMPLETED
    assert got[twice].version == 3  # PENDING -> PROCESSING -> COMPLETED, once
    assert (await status_of(channel, user, elsewhere)).status == pb.PAYMENT_STATUS_PROCESSING
    balance = await payments_pb2_grpc.PaymentServiceStub(channel).GetBalance(
        pb.GetBalanceRequest(currency_code="USD"), metadata=user.metadata, timeout=5
    )
    assert balance.balances[0].available_minor == 2500 + 700 + 300

    # Recorded: exactly the results that applied or were the same outcome again; all of
    # them, the payments and their announcements in the batch's one transaction.
    events = await pool.fetch(
        "SELECT event_id, xmin::text AS tx FROM payments.callback_events"
        " WHERE gateway_id = $1 AND event_id LIKE $2",
        gateway_id,
        f"{tag}-%",
    )
    recorded = {e["event_id"]: e["tx"] for e in events}
    assert sorted(recorded) == sorted(f"{tag}-{n}" for n in ("1", "2", "6", "7", "single"))
    batch_tx = {tx for event, tx in recorded.items() if event != f"{tag}-single"}
    assert len(batch_tx) == 1
    payments_tx = await pool.fetch(
        "SELECT xmin::text AS tx FROM payments.payments WHERE id = ANY($1::uuid[])",
        [uuid.UUID(p) for p in (deposit, declined, twice)],
    )
    assert {r["tx"] for r in payments_tx} == batch_tx
    # Each applied result announced its change under its own request id.
    announced = await pool.fetch(
        "SELECT message_key, request_id FROM payments.outbox"
        " WHERE message_key = ANY($1::text[]) AND event_type = 'payment.status_changed'"
        " AND request_id LIKE $2",
        [deposit, declined, twice, settled],
        f"it-{tag}-%",
    )
    assert {(r["message_key"], r["request_id"]) for r in announced} == {
        (deposit, request_ids[0]),
        (declined, request_ids[1]),
        (twice, request_ids[6]),
    }
    await assert_ledger_invariants(stack.pg_dsn)


async def test_a_refused_batch_changes_nothing(
    channel: grpc.aio.Channel, pool: asyncpg.Pool, gateway: tuple[str, CallbackSecret]
) -> None:
    user = await register_and_login(channel)
    gateway_id, secret = gateway
    payment_id = await dispatched(channel, pool, user, gateway_id)
    payload = get_format("json").encode_results([gateway_result("r-1", payment_id)])
    stub = callbacks_pb2_grpc.CallbackServiceStub(channel)
    now = int(time.time())
    refusals = {
        "forged": (
            payload,
            signature_metadata(payload, [CallbackSecret.generate()], timestamp=now),
        ),
        "stale": (payload, signature_metadata(payload, [secret], timestamp=now - 301)),
        "one result, not a batch": (
            single := get_format("json").encode_result(gateway_result("r-2", payment_id)),
            signature_metadata(single, [secret], timestamp=now),
        ),
    }
    for name, (data, metadata) in refusals.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ReportResults(
                callbacks_pb2.ReportResultsRequest(gateway_id=gateway_id, payload=data),
                metadata=metadata,
                timeout=5,
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await report(channel, gateway, [gateway_result("r-3", payment_id)], request_ids=["a", "b"])
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await status_of(channel, user, payment_id)).status == pb.PAYMENT_STATUS_PROCESSING
    assert not await pool.fetchval(
        "SELECT count(*) FROM payments.callback_events WHERE payment_id = $1",
        uuid.UUID(payment_id),
    )


def batch_result(event_id: str, payment_id: str) -> BatchResult:
    return BatchResult(
        event_id=event_id,
        payment_id=payment_id,
        approved=True,
        failure_code="",
        failure_message="",
        gateway_reference="",
    )


async def test_a_failure_midway_rolls_the_whole_batch_back(
    channel: grpc.aio.Channel,
    pool: asyncpg.Pool,
    gateway: tuple[str, CallbackSecret],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = await register_and_login(channel)
    gateway_id, _ = gateway
    first = await dispatched(channel, pool, user, gateway_id)
    second = await dispatched(channel, pool, user, gateway_id)

    # The batch's ledger entries are written, then saving its status changes fails:
    # everything the batch did must roll back, the callback events included.
    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(processing_adapter, "save_status_changes", failing)
    tag = uuid.uuid4().hex[:8]
    with pytest.raises(RuntimeError, match="injected"):
        await PostgresResultsRepository(pool).apply_results(
            gateway_id,
            [batch_result(f"{tag}-1", first), batch_result(f"{tag}-2", second)],
            datetime.now(UTC),
        )
    for payment_id in (first, second):
        assert (await status_of(channel, user, payment_id)).status == pb.PAYMENT_STATUS_PROCESSING
    assert not await pool.fetchval(
        "SELECT count(*) FROM payments.callback_events WHERE event_id LIKE $1", f"{tag}-%"
    )
    assert not await pool.fetchval(
        "SELECT count(*) FROM payments.journal_entries WHERE payment_id = ANY($1::uuid[])",
        [uuid.UUID(first), uuid.UUID(second)],
    )


async def test_racing_batches_over_the_same_payments_apply_each_once(
    channel: grpc.aio.Channel,
    pool: asyncpg.Pool,
    stack: StackEnv,
    gateway: tuple[str, CallbackSecret],
) -> None:
    user = await register_and_login(channel)
    gateway_id, _ = gateway
    payment_ids = [await dispatched(channel, pool, user, gateway_id) for _ in range(8)]
    tag = uuid.uuid4().hex[:8]
    repository = PostgresResultsRepository(pool)
    now = datetime.now(UTC)
    forward = [batch_result(f"{tag}-a-{i}", p) for i, p in enumerate(payment_ids)]
    backward = [batch_result(f"{tag}-b-{i}", p) for i, p in enumerate(payment_ids)][::-1]
    first, second = await asyncio.gather(
        repository.apply_results(gateway_id, forward, now),
        repository.apply_results(gateway_id, backward, now),
    )
    by_payment: dict[str, list[Disposition]] = {p: [] for p in payment_ids}
    for outcome in (*first, *second):
        by_payment[outcome.result.payment_id].append(outcome.disposition)
    for dispositions in by_payment.values():
        assert sorted(d.value for d in dispositions) == ["APPLIED", "DUPLICATE"]
    for payment_id in payment_ids:
        assert (await status_of(channel, user, payment_id)).version == 3
    balance = await payments_pb2_grpc.PaymentServiceStub(channel).GetBalance(
        pb.GetBalanceRequest(currency_code="USD"), metadata=user.metadata, timeout=5
    )
    assert balance.balances[0].available_minor == 8 * 1000
    await assert_ledger_invariants(stack.pg_dsn)


async def test_a_deadlock_runs_the_whole_batch_again(
    channel: grpc.aio.Channel,
    pool: asyncpg.Pool,
    gateway: tuple[str, CallbackSecret],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = await register_and_login(channel)
    gateway_id, _ = gateway
    payment_id = await dispatched(channel, pool, user, gateway_id)
    real = PostgresResultsRepository._apply
    tries = 0

    async def deadlocked_once(self: PostgresResultsRepository, *args: Any) -> Any:
        nonlocal tries
        tries += 1
        outcomes = await real(self, *args)  # its writes are rolled back with the error
        if tries == 1:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return outcomes

    monkeypatch.setattr(PostgresResultsRepository, "_apply", deadlocked_once)
    tag = uuid.uuid4().hex[:8]
    (outcome,) = await PostgresResultsRepository(pool).apply_results(
        gateway_id, [batch_result(f"{tag}-1", payment_id)], datetime.now(UTC)
    )
    assert tries == 2
    assert outcome.disposition is Disposition.APPLIED  # not a duplicate of the rolled-back try
    assert (await status_of(channel, user, payment_id)).version == 3
