"""The TypeScript sandbox gateway (sdk/ts + sandbox_gateways/ts) in the whole loop with
real processes: payments in AUD route to `sandbox-ts`, which consumes its topic with the
TypeScript SDK, opens the sealed card, and reports signed (and batched) results that
payrail applies. Nothing is mocked: the stack's Kafka, PostgreSQL and Redis, payrail's
services as processes, and the sandbox as `sandbox_gateways/ts/run`."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from payrail.payments.v1 import payments_pb2 as pb
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
from tests.helpers import register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

GATEWAY_ID = "sandbox-ts"
CURRENCY = "AUD"  # registered for sandbox-ts only above the JSON sandbox's priority
BUILD_TIMEOUT_S = 300  # a fresh clone runs npm ci twice


@pytest.fixture(scope="module")
def sandbox_ts(
    services: list[Running], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """sandbox-ts registered for AUD, built, started against this module's services;
    stopped with SIGTERM at the end, which must exit 0."""
    with sdk_sandbox(
        services,
        tmp_path_factory.mktemp("ts-logs"),
        language="ts",
        gateway_id=GATEWAY_ID,
        wire_format="json",
        currency=CURRENCY,
        build_timeout_s=BUILD_TIMEOUT_S,
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


def aud(card: str, amount_minor: int = 1000, *, exp_month: int = 12, exp_year: int = 2031) -> Any:
    message = request(pb.PAYMENT_KIND_DEPOSIT, card, amount_minor, CURRENCY)
    message.card.exp_month = exp_month
    message.card.exp_year = exp_year
    return message


async def test_health_reports_serving_and_payrail_reachable(sandbox_ts: Running) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sandbox_ts.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        overall = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        dependency = await stub.Check(
            health_pb2.HealthCheckRequest(service="payrail.dependency.payrail"), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.Check(health_pb2.HealthCheckRequest(service="no.such.service"), timeout=5)
    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert dependency.status == health_pb2.HealthCheckResponse.SERVING
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_aud_card_payment_completes_through_the_ts_gateway(
    edge: grpc.aio.Channel, sandbox_ts: Running
) -> None:
    user = await register_and_login(edge)
    # An expiry no other test uses: it travels only inside the sealed envelope, so the
    # sandbox logging it proves it opened this payment's card.
    payment_id = await submit(edge, user, aud(APPROVE, 2500, exp_month=7, exp_year=2033))
    payment = await settle(edge, user, payment_id)
    assert payment.status == pb.PAYMENT_STATUS_COMPLETED, payment
    assert payment.gateway_id == GATEWAY_ID
    assert payment.gateway_reference.startswith("sbx_")
    assert len(payment.gateway_reference) > len("sbx_")
    records = log_records(sandbox_ts)
    opened = [
        r for r in records if r.get("msg") == "card opened" and r.get("payment_id") == payment_id
    ]
    assert opened, records[-20:]
    assert {(r["masked_number"], r["exp_month"], r["exp_year"]) for r in opened} == {
        ("424242******4242", 7, 2033)
    }
    reported = [
        r
        for r in records
        if r.get("msg") == "result reported" and r.get("payment_id") == payment_id
    ]
    assert [(r["outcome"], r["duplicate"]) for r in reported] == [("APPROVED", False)]
    # The full card number never reaches the sandbox's log.
    assert APPROVE not in sandbox_ts.log_path.read_text(errors="replace")


@pytest.mark.parametrize(
    ("card", "failure_code"), [(DECLINE, "card_declined"), (NO_FUNDS, "insufficient_funds")]
)
async def test_declining_cards_fail_with_their_codes(
    edge: grpc.aio.Channel, sandbox_ts: Running, card: str, failure_code: str
) -> None:
    user = await register_and_login(edge)
    payment = await settle(edge, user, await submit(edge, user, aud(card)))
    assert payment.status == pb.PAYMENT_STATUS_FAILED, payment
    assert payment.failure_code == failure_code
    assert payment.gateway_id == GATEWAY_ID


async def test_a_never_answered_card_is_timed_out_by_the_janitor(
    edge: grpc.aio.Channel, sandbox_ts: Running, stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    payment_id = await submit(edge, user, aud(SILENT, 4000))
    # Dispatched, re-dispatched by the janitor after the callback deadline, then failed
    # once the attempts are spent (about 2 x 3 s here).
    payment = await settle(edge, user, payment_id, timeout_s=60)
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert payment.failure_code == "gateway_timeout"
    assert payment.gateway_id == GATEWAY_ID
    assert payment.attempt == DISPATCH_ATTEMPTS_MAX
    assert payment.gateway_reference == ""  # the gateway never reported
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        attempts = await conn.fetchval(
            "SELECT attempt FROM payments.dispatches WHERE payment_id = $1", uuid.UUID(payment_id)
        )
    finally:
        await conn.close()
    assert attempts == DISPATCH_ATTEMPTS_MAX
    # The sandbox opened the card both times and never reported a result for it.
    records = log_records(sandbox_ts)
    mine = [r.get("msg") for r in records if r.get("payment_id") == payment_id]
    assert mine.count("card opened") == 2
    assert "result reported" not in mine
    await assert_ledger_invariants(stack.pg_dsn)


async def test_a_burst_settles_with_batched_results(
    edge: grpc.aio.Channel, sandbox_ts: Running, stack: StackEnv
) -> None:
    users = [await register_and_login(edge) for _ in range(4)]
    plan = [
        (users[i % len(users)], aud(DECLINE if i % 6 == 5 else APPROVE, 300 + i)) for i in range(20)
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
    # Results were applied in batches: several of them in one transaction, which only
    # a ReportResults call carrying several results does.
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT gateway_id, xmin::text AS tx FROM payments.callback_events"
            " WHERE payment_id = ANY($1::uuid[])",
            [uuid.UUID(p) for p in payment_ids],
        )
    finally:
        await conn.close()
    assert len(rows) == len(payment_ids)  # one recorded result per payment
    assert {r["gateway_id"] for r in rows} == {GATEWAY_ID}
    per_transaction = Counter(r["tx"] for r in rows)
    assert max(per_transaction.values()) >= 2, per_transaction
    await assert_ledger_invariants(stack.pg_dsn)


async def test_sigterm_stops_the_gateway_cleanly(sandbox_ts: Running) -> None:
    started = time.monotonic()
    sandbox_ts.process.send_signal(signal.SIGTERM)
    returncode = await asyncio.to_thread(sandbox_ts.process.wait, 15)
    assert returncode == 0, sandbox_ts.log_path.read_text(errors="replace")[-3000:]
    assert time.monotonic() - started < 10
    assert any(r.get("msg") == "stopped" for r in log_records(sandbox_ts))
