"""The Go sandbox gateway (sdk/go + sandbox_gateways/go) in the whole loop, with real
processes: payments in CAD route to `sandbox-go` (format `protobuf`, priority 30, above
the JSON sandbox's 10), which consumes its topic with the Go SDK's worker, opens the
sealed card with its X25519 key and reports signed, batched protobuf results that
payrail applies. Nothing is mocked: the test stack's Kafka, PostgreSQL and Redis,
payrail's services as processes, and the sandbox as `sandbox_gateways/go/run`."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import asyncpg
import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.conftest import StackEnv
from tests.e2e.conftest import DISPATCH_ATTEMPTS_MAX, Running
from tests.e2e.sdk_sandbox import log_records, sdk_sandbox
from tests.e2e.test_processing import (
    APPROVE,
    DECLINE,
    NO_FUNDS,
    SILENT,
    assert_ledger_invariants,
    request,
    settle,
    submit,
)
from tests.helpers import User, register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

GATEWAY_ID = "sandbox-go"
WIRE_FORMAT = "protobuf"
CURRENCY = "CAD"
# A fresh machine downloads the Go modules and compiles grpc and franz-go once.
BUILD_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def sandbox_go(
    services: list[Running], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """sandbox-go: keys, registered for CAD, built, started against this module's
    services; stopped with SIGTERM at the end, which must exit 0."""
    with sdk_sandbox(
        services,
        tmp_path_factory.mktemp("go-logs"),
        language="go",
        gateway_id=GATEWAY_ID,
        wire_format=WIRE_FORMAT,
        currency=CURRENCY,
        build_timeout_s=BUILD_TIMEOUT_S,
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running], sandbox_go: Running) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


async def cad_balance(channel: grpc.aio.Channel, user: User) -> tuple[int, int]:
    reply = await payments_pb2_grpc.PaymentServiceStub(channel).GetBalance(
        pb.GetBalanceRequest(currency_code=CURRENCY), metadata=user.metadata, timeout=5
    )
    return (
        (reply.balances[0].available_minor, reply.balances[0].held_minor)
        if reply.balances
        else (0, 0)
    )


async def callback_events(dsn: str, payment_ids: list[str]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT event_id, gateway_id, payment_id::text AS payment_id, xmin::text AS tx"
            " FROM payments.callback_events WHERE payment_id = ANY($1::uuid[])",
            [uuid.UUID(p) for p in payment_ids],
        )
    finally:
        await conn.close()
    return rows


def cad(kind: pb.PaymentKind, card: str, amount_minor: int) -> pb.CreatePaymentRequest:
    return request(kind, card, amount_minor, currency_code=CURRENCY)


async def test_a_cad_card_payment_completes_with_the_go_gateways_reference(
    edge: grpc.aio.Channel, sandbox_go: Running, stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    message = cad(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 2500)
    # An expiry only the sealed card carries (the request shows brand and masked number).
    message.card.exp_month, message.card.exp_year = 7, 2033
    payment_id = await submit(edge, user, message)
    payment = await settle(edge, user, payment_id)
    assert payment.status == pb.PAYMENT_STATUS_COMPLETED, payment
    assert payment.version == 3  # PENDING -> PROCESSING -> COMPLETED
    assert payment.gateway_id == GATEWAY_ID
    # Reported once, by sandbox-go, with event id <request_id>/result and its reference
    # sbx_<request_id>.
    [event] = await callback_events(stack.pg_dsn, [payment_id])
    assert event["gateway_id"] == GATEWAY_ID
    assert event["event_id"].endswith("/result")
    assert payment.gateway_reference == "sbx_" + event["event_id"].removesuffix("/result")
    assert await cad_balance(edge, user) == (2500, 0)

    # The card the Go SDK opened is the card the payment was created with: its masked
    # number, and the expiry and CVC that travel only inside the sealed envelope.
    opened = [
        r
        for r in log_records(sandbox_go)
        if r.get("msg") == "card opened" and r.get("payment_id") == payment_id
    ]
    assert opened, "the sandbox logged no opened card for the payment"
    assert {(r["masked_number"], r["exp_month"], r["exp_year"], r["has_cvc"]) for r in opened} == {
        ("424242******4242", 7, 2033, True)
    }
    # The full number never reaches the sandbox's log.
    assert APPROVE not in sandbox_go.log_path.read_text(errors="replace")
    await assert_ledger_invariants(stack.pg_dsn)


@pytest.mark.parametrize(
    ("card", "code"), [(DECLINE, "card_declined"), (NO_FUNDS, "insufficient_funds")]
)
async def test_declining_cards_fail_with_their_codes(
    edge: grpc.aio.Channel, stack: StackEnv, card: str, code: str
) -> None:
    user = await register_and_login(edge)
    payment = await settle(
        edge, user, await submit(edge, user, cad(pb.PAYMENT_KIND_PURCHASE, card, 1000))
    )
    assert payment.status == pb.PAYMENT_STATUS_FAILED, payment
    assert payment.failure_code == code
    assert payment.gateway_id == GATEWAY_ID
    await assert_ledger_invariants(stack.pg_dsn)


async def test_the_never_answering_card_is_timed_out_by_the_janitor(
    edge: grpc.aio.Channel, stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    await settle(edge, user, await submit(edge, user, cad(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 5000)))
    payment_id = await submit(edge, user, cad(pb.PAYMENT_KIND_WITHDRAWAL, SILENT, 4000))
    assert await cad_balance(edge, user) == (1000, 4000)
    # sandbox-go never answers: dispatched, re-dispatched by the janitor after the
    # callback deadline, then failed once the attempts are spent (about 2 x 3 s here).
    payment = await settle(edge, user, payment_id, timeout_s=60)
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert payment.failure_code == "gateway_timeout"
    assert payment.gateway_id == GATEWAY_ID
    assert payment.attempt == DISPATCH_ATTEMPTS_MAX
    assert payment.gateway_reference == ""  # the gateway never reported
    assert await cad_balance(edge, user) == (5000, 0)
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        attempts = await conn.fetchval(
            "SELECT attempt FROM payments.dispatches WHERE payment_id = $1", uuid.UUID(payment_id)
        )
    finally:
        await conn.close()
    assert attempts == DISPATCH_ATTEMPTS_MAX
    assert await callback_events(stack.pg_dsn, [payment_id]) == []
    await assert_ledger_invariants(stack.pg_dsn)


async def test_a_burst_settles_through_batched_protobuf_callbacks(
    edge: grpc.aio.Channel, stack: StackEnv
) -> None:
    users = [await register_and_login(edge) for _ in range(4)]
    plan = [
        (
            users[i % len(users)],
            cad(pb.PAYMENT_KIND_DEPOSIT, DECLINE if i % 5 == 2 else APPROVE, 100 + i),
        )
        for i in range(20)
    ]
    payment_ids = await asyncio.gather(*(submit(edge, user, message) for user, message in plan))
    finals = await asyncio.gather(
        *(settle(edge, user, pid) for (user, _), pid in zip(plan, payment_ids, strict=True))
    )
    for (_, message), payment in zip(plan, finals, strict=True):
        declined = message.card.number == DECLINE
        assert payment.status == (
            pb.PAYMENT_STATUS_FAILED if declined else pb.PAYMENT_STATUS_COMPLETED
        ), payment
        assert payment.version == 3  # PENDING -> PROCESSING -> final, once
        assert payment.gateway_id == GATEWAY_ID
        if declined:
            assert payment.failure_code == "card_declined"
    for user in users:
        expected = sum(
            m.amount.amount_minor for u, m in plan if u is user and m.card.number == APPROVE
        )
        assert await cad_balance(edge, user) == (expected, 0)
    # One recorded result per payment, and several applied in one transaction: one
    # ReportResults call carried them.
    rows = await callback_events(stack.pg_dsn, payment_ids)
    assert sorted(r["payment_id"] for r in rows) == sorted(payment_ids)
    assert {r["gateway_id"] for r in rows} == {GATEWAY_ID}
    per_transaction = Counter(r["tx"] for r in rows)
    assert max(per_transaction.values()) >= 2, per_transaction
    await assert_ledger_invariants(stack.pg_dsn)


async def test_health_reports_payrail_reachable(sandbox_go: Running) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sandbox_go.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        overall = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        dependency = await stub.Check(
            health_pb2.HealthCheckRequest(service="payrail.dependency.payrail"), timeout=5
        )
    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert dependency.status == health_pb2.HealthCheckResponse.SERVING
