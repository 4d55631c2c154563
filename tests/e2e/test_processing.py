"""The whole loop with real processes: submit -> Kafka -> processor -> sandbox gateway ->
signed callback -> settlement, and the ledger's invariants after all of it."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gateway_sdk import CallbackSecret, get_format
from gateway_sdk.formats.base import GatewayResult
from gateway_sdk.signing import signature_metadata
from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc
from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.conftest import StackEnv
from tests.e2e.conftest import DISPATCH_ATTEMPTS_MAX, Running
from tests.helpers import User, register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

APPROVE, DECLINE, NO_FUNDS = "4242424242424242", "4000000000000002", "4000000000009995"
SILENT = "4000000000000119"
FINAL = {
    pb.PAYMENT_STATUS_COMPLETED,
    pb.PAYMENT_STATUS_FAILED,
    pb.PAYMENT_STATUS_DENIED,
    pb.PAYMENT_STATUS_CANCELED,
    pb.PAYMENT_STATUS_EXPIRED,
}


def request(
    kind: pb.PaymentKind, card: str, amount_minor: int = 1000, currency_code: str = "USD"
) -> pb.CreatePaymentRequest:
    message = pb.CreatePaymentRequest(
        idempotency_key=str(uuid.uuid4()),
        kind=kind,
        amount=pb.Money(currency_code=currency_code, amount_minor=amount_minor),
        card=pb.CardInput(number=card, exp_month=12, exp_year=2031, cvc="123"),
    )
    if kind == pb.PAYMENT_KIND_PURCHASE:
        message.merchant.CopyFrom(
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
    return message


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


async def settle(
    channel: grpc.aio.Channel, user: User, payment_id: str, timeout_s: float = 30
) -> pb.Payment:
    stub = payments_pb2_grpc.PaymentServiceStub(channel)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            reply: pb.GetPaymentResponse = await stub.GetPayment(
                pb.GetPaymentRequest(payment_id=payment_id), metadata=user.metadata, timeout=5
            )
        except grpc.aio.AioRpcError as error:
            # A client polls through a restart of the platform: UNAVAILABLE means "again".
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
            continue
        payment = reply.payment
        if payment.status in FINAL or time.monotonic() > deadline:
            return payment
        await asyncio.sleep(0.2)


async def submit(channel: grpc.aio.Channel, user: User, message: pb.CreatePaymentRequest) -> str:
    reply: pb.CreatePaymentResponse = await payments_pb2_grpc.PaymentServiceStub(
        channel
    ).CreatePayment(message, metadata=user.metadata, timeout=5)
    return reply.payment.payment_id


async def balance(channel: grpc.aio.Channel, user: User) -> tuple[int, int]:
    reply = await payments_pb2_grpc.PaymentServiceStub(channel).GetBalance(
        pb.GetBalanceRequest(currency_code="USD"), metadata=user.metadata, timeout=5
    )
    return (
        (reply.balances[0].available_minor, reply.balances[0].held_minor)
        if reply.balances
        else (0, 0)
    )


async def assert_ledger_invariants(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        unbalanced = await conn.fetchval(
            "SELECT count(*) FROM (SELECT entry_id FROM payments.postings GROUP BY entry_id"
            " HAVING sum(amount_minor) <> 0) x"
        )
        drift = await conn.fetchval(
            "SELECT count(*) FROM payments.ledger_accounts a WHERE a.balance_minor <>"
            " (SELECT coalesce(sum(p.amount_minor), 0) FROM payments.postings p"
            "  WHERE p.account_id = a.id)"
        )
        negative = await conn.fetchval(
            "SELECT count(*) FROM payments.ledger_accounts"
            " WHERE purpose = 'WALLET' AND balance_minor - held_minor < 0"
        )
        held = await conn.fetchval(
            "SELECT count(*) FROM payments.ledger_accounts a WHERE a.held_minor <>"
            " (SELECT coalesce(sum(h.amount_minor), 0) FROM payments.holds h"
            "  WHERE h.account_id = a.id AND h.status = 'ACTIVE')"
        )
    finally:
        await conn.close()
    assert (unbalanced, drift, negative, held) == (0, 0, 0, 0)


async def test_deposit_completes_and_the_balance_rises(
    edge: grpc.aio.Channel, stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    payment = await settle(
        edge, user, await submit(edge, user, request(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 2500))
    )
    assert payment.status == pb.PAYMENT_STATUS_COMPLETED
    assert payment.version == 3  # PENDING -> PROCESSING -> COMPLETED
    assert await balance(edge, user) == (2500, 0)

    # A withdrawal holds, then settles: the balance falls.
    withdrawal = await settle(
        edge, user, await submit(edge, user, request(pb.PAYMENT_KIND_WITHDRAWAL, APPROVE, 1000))
    )
    assert withdrawal.status == pb.PAYMENT_STATUS_COMPLETED
    assert await balance(edge, user) == (1500, 0)
    await assert_ledger_invariants(stack.pg_dsn)


@pytest.mark.parametrize(
    ("card", "code"), [(DECLINE, "card_declined"), (NO_FUNDS, "insufficient_funds")]
)
async def test_declines_fail_with_their_code(
    edge: grpc.aio.Channel, stack: StackEnv, card: str, code: str
) -> None:
    user = await register_and_login(edge)
    payment = await settle(
        edge, user, await submit(edge, user, request(pb.PAYMENT_KIND_PURCHASE, card))
    )
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert payment.failure_code == code
    await assert_ledger_invariants(stack.pg_dsn)


async def test_failed_withdrawal_releases_its_hold(edge: grpc.aio.Channel, stack: StackEnv) -> None:
    user = await register_and_login(edge)
    await settle(
        edge, user, await submit(edge, user, request(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 3000))
    )
    failed = await settle(
        edge, user, await submit(edge, user, request(pb.PAYMENT_KIND_WITHDRAWAL, DECLINE, 2000))
    )
    assert failed.status == pb.PAYMENT_STATUS_FAILED
    assert await balance(edge, user) == (3000, 0)
    await assert_ledger_invariants(stack.pg_dsn)


async def test_forged_stale_replayed_and_conflicting_callbacks(
    edge: grpc.aio.Channel, stack: StackEnv, gateway_keys: Path
) -> None:
    user = await register_and_login(edge)
    payment_id = await submit(edge, user, request(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 700))
    assert (await settle(edge, user, payment_id)).status == pb.PAYMENT_STATUS_COMPLETED
    secret = CallbackSecret.from_base64((gateway_keys / "sandbox-json.secret").read_text().strip())
    fmt = get_format("json")
    callbacks = callbacks_pb2_grpc.CallbackServiceStub(edge)

    def result(outcome: str, event_id: str) -> bytes:
        return fmt.encode_result(
            GatewayResult(
                event_id=event_id,
                payment_id=payment_id,
                outcome=outcome,  # type: ignore[arg-type]
                failure_code="card_declined" if outcome == "DECLINED" else "",
                occur_time=int(time.time()),
            )
        )

    async def call(
        payload: bytes, metadata: tuple[tuple[str, str], ...], gateway: str = "sandbox-json"
    ) -> callbacks_pb2.ReportResultResponse:
        reply: callbacks_pb2.ReportResultResponse = await callbacks.ReportResult(
            callbacks_pb2.ReportResultRequest(gateway_id=gateway, payload=payload),
            metadata=metadata,
            timeout=5,
        )
        return reply

    declined = result("DECLINED", f"forged-{uuid.uuid4()}")
    now = int(time.time())
    cases = {
        "made-up signature": (
            declined,
            (("x-payrail-signature", f"t={now},v1={'ab' * 32}"),),
            "sandbox-json",
        ),
        "no signature": (declined, (), "sandbox-json"),
        "stale": (
            declined,
            signature_metadata(declined, [secret], timestamp=now - 301),
            "sandbox-json",
        ),
        "unknown gateway": (
            declined,
            signature_metadata(declined, [secret], timestamp=now),
            "nope",
        ),
        "other gateway's secret": (
            declined,
            signature_metadata(declined, [CallbackSecret.generate()], timestamp=now),
            "sandbox-json",
        ),
    }
    for name, (payload, metadata, gateway) in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(payload, metadata, gateway)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, name

    # The same approval again (a fresh event id) is an idempotent OK; a conflicting
    # outcome is refused and changes nothing.
    again = result("APPROVED", f"again-{uuid.uuid4()}")
    reply = await call(again, signature_metadata(again, [secret], timestamp=int(time.time())))
    assert reply.duplicate
    # Replaying that exact event is a no-op too.
    replay = await call(again, signature_metadata(again, [secret], timestamp=int(time.time())))
    assert replay.duplicate
    with pytest.raises(grpc.aio.AioRpcError) as conflict:
        await call(declined, signature_metadata(declined, [secret], timestamp=int(time.time())))
    assert conflict.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    final = await settle(edge, user, payment_id)
    assert (final.status, final.version) == (pb.PAYMENT_STATUS_COMPLETED, 3)
    assert await balance(edge, user) == (700, 0)
    await assert_ledger_invariants(stack.pg_dsn)


async def test_a_silent_gateway_ends_in_gateway_timeout_with_the_hold_released(
    edge: grpc.aio.Channel, stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    await settle(
        edge, user, await submit(edge, user, request(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 5000))
    )
    payment_id = await submit(edge, user, request(pb.PAYMENT_KIND_WITHDRAWAL, SILENT, 4000))
    assert await balance(edge, user) == (1000, 4000)
    # The gateway never answers: dispatched, re-dispatched by the janitor after the callback
    # deadline, then failed once the attempts are spent (about 2 x 3 s here).
    payment = await settle(edge, user, payment_id, timeout_s=60)
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert payment.failure_code == "gateway_timeout"
    # Where it went and how often: the payment says so itself.
    assert payment.gateway_id == "sandbox-json"
    assert payment.attempt == DISPATCH_ATTEMPTS_MAX
    assert payment.gateway_reference == ""  # the gateway never reported
    assert await balance(edge, user) == (5000, 0)
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        attempts = await conn.fetchval(
            "SELECT attempt FROM payments.dispatches WHERE payment_id = $1", uuid.UUID(payment_id)
        )
    finally:
        await conn.close()
    assert attempts == 2
    await assert_ledger_invariants(stack.pg_dsn)


async def test_watch_follows_a_payment_to_completed(edge: grpc.aio.Channel) -> None:
    user = await register_and_login(edge)
    # The silent card keeps the first dispatch waiting, so the watch sees the whole way.
    await settle(
        edge, user, await submit(edge, user, request(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 900))
    )
    payment_id = await submit(edge, user, request(pb.PAYMENT_KIND_WITHDRAWAL, SILENT, 500))
    stream = payments_pb2_grpc.PaymentServiceStub(edge).WatchPayment(
        pb.WatchPaymentRequest(payment_id=payment_id), metadata=user.metadata, timeout=60
    )
    states = [(r.payment.status, r.payment.version) async for r in stream]
    versions = [v for _, v in states]
    assert versions == sorted(set(versions)), states  # each change once, in order
    assert pb.PAYMENT_STATUS_PROCESSING in [s for s, _ in states]
    assert states[-1][0] == pb.PAYMENT_STATUS_FAILED  # the stream ended at the final state


async def read_dlq(stack: StackEnv, start: dict[TopicPartition, int]) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        found: list[Any] = []
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found += records
        return found
    finally:
        await consumer.stop()


async def dlq_end(stack: StackEnv) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition("payments.events.dlq", 0)
        return dict(await consumer.end_offsets([tp]))
    finally:
        await consumer.stop()


async def test_poison_messages_go_to_the_dead_letter_topic_and_processing_goes_on(
    edge: grpc.aio.Channel, stack: StackEnv
) -> None:
    start = await dlq_end(stack)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    ghost = str(uuid.uuid4())
    try:
        await producer.send_and_wait("payments.events", b"\xff\xff\xff garbage", key=b"poison")
        orphan = events_pb2.PaymentEvent(
            event_id=str(uuid.uuid4()),
            payment_id=ghost,
            user_id=str(uuid.uuid4()),
            version=1,
            created=events_pb2.PaymentCreated(payment=pb.Payment(payment_id=ghost)),
        )
        await producer.send_and_wait(
            "payments.events", orphan.SerializeToString(), key=ghost.encode()
        )
    finally:
        await producer.stop()
    # The consumer keeps going: a payment submitted after the poison still completes.
    user = await register_and_login(edge)
    after = await settle(
        edge, user, await submit(edge, user, request(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 300))
    )
    assert after.status == pb.PAYMENT_STATUS_COMPLETED
    parked = await read_dlq(stack, start)
    errors = {r.key: dict(r.headers).get("error", b"") for r in parked}
    assert errors.get(b"poison", b"").startswith(b"undecodable event")
    assert errors.get(ghost.encode()) == b"payment_svc answered NOT_FOUND"


async def test_consumer_killed_mid_stream_dispatches_and_settles_each_payment_once(
    edge: grpc.aio.Channel, stack: StackEnv, services: list[Running]
) -> None:
    consumer = next(s for s in services if s.name == "consumer")
    user = await register_and_login(edge)
    payment_ids: list[str] = []

    async def submit_many(count: int) -> None:
        for _ in range(count):
            payment_ids.append(
                await submit(edge, user, request(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 100))
            )

    await submit_many(10)
    consumer.process.send_signal(signal.SIGKILL)  # no shutdown, no final commit
    consumer.process.wait(timeout=10)
    await submit_many(20)  # accepted while nothing consumes
    await asyncio.to_thread(consumer.restart)
    await submit_many(10)
    finals = [await settle(edge, user, pid, timeout_s=60) for pid in payment_ids]
    assert all(p.status == pb.PAYMENT_STATUS_COMPLETED for p in finals)
    assert await balance(edge, user) == (100 * len(payment_ids), 0)
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        ids = [uuid.UUID(pid) for pid in payment_ids]
        attempts = await conn.fetch(
            "SELECT attempt FROM payments.dispatches WHERE payment_id = ANY($1)", ids
        )
        results = await conn.fetch(
            "SELECT payment_id, count(*) AS n FROM payments.callback_events"
            " WHERE payment_id = ANY($1) GROUP BY payment_id",
            ids,
        )
        entries = await conn.fetch(
            "SELECT payment_id, count(*) AS n FROM payments.journal_entries"
            " WHERE payment_id = ANY($1) GROUP BY payment_id",
            ids,
        )
    finally:
        await conn.close()
    # A payment whose callback deadline (3 s here) passed while the consumer group was
    # rebalancing may be re-dispatched by the janitor: same payment id, and the gateway
    # answers it from what it already decided instead of charging again.
    assert len(attempts) == len(payment_ids)
    assert all(r["attempt"] <= DISPATCH_ATTEMPTS_MAX for r in attempts)
    assert sorted(r["n"] for r in results) == [1] * len(payment_ids)  # one result applied
    assert sorted(r["n"] for r in entries) == [1] * len(payment_ids)  # settled once
    await assert_ledger_invariants(stack.pg_dsn)


async def test_eur_routes_to_the_soap_gateway_and_settles(
    edge: grpc.aio.Channel, stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    payment_id = await submit(
        edge, user, request(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 4200, currency_code="EUR")
    )
    assert (await settle(edge, user, payment_id)).status == pb.PAYMENT_STATUS_COMPLETED
    declined_id = await submit(
        edge, user, request(pb.PAYMENT_KIND_PURCHASE, DECLINE, 100, currency_code="EUR")
    )
    declined = await settle(edge, user, declined_id)
    assert (declined.status, declined.failure_code) == (pb.PAYMENT_STATUS_FAILED, "card_declined")
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        gateways = await conn.fetch(
            "SELECT gateway_id FROM payments.dispatches WHERE payment_id = ANY($1)",
            [uuid.UUID(payment_id), uuid.UUID(declined_id)],
        )
    finally:
        await conn.close()
    assert {r["gateway_id"] for r in gateways} == {"sandbox-soap"}
    reply = await payments_pb2_grpc.PaymentServiceStub(edge).GetBalance(
        pb.GetBalanceRequest(currency_code="EUR"), metadata=user.metadata, timeout=5
    )
    assert [(b.currency_code, b.available_minor) for b in reply.balances] == [("EUR", 4200)]
