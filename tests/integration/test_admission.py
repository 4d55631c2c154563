"""Admission control through the public edge, on the real PostgreSQL: while too many
payments are unsettled (PENDING or PROCESSING), CreatePayment answers RESOURCE_EXHAUSTED
with the reason and a retry delay, writes nothing, and admits again once the backlog
drains."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway_svc import bootstrap as gateway_bootstrap
from payment_svc import bootstrap as payment_bootstrap
from payrail.payments.v1 import payments_pb2 as pb
from tests.conftest import JwtKeys, StackEnv
from tests.helpers import register_and_login
from tests.integration.conftest import gateway_settings, payment_settings
from tests.integration.test_payments import deposit, rpc_error, stub

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

ROOM = 3  # payments the backlog bound leaves room for in this test
CHECK_MS = 20


async def unsettled_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM payments.payments WHERE status IN ('PENDING', 'PROCESSING')"
        )
        return count
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def edge(stack: StackEnv, jwt_keys: JwtKeys) -> AsyncIterator[grpc.aio.Channel]:
    # No processing pipeline runs here: what this module creates stays PENDING. The bound
    # is set just above what other tests left unsettled in the shared database.
    bound = await unsettled_count(stack.pg_dsn) + ROOM
    payment = await payment_bootstrap.build(
        replace(payment_settings(stack, jwt_keys), unsettled_max=bound, unsettled_check_ms=CHECK_MS)
    )
    await payment.start()
    gateway = await gateway_bootstrap.build(
        replace(gateway_settings(stack, jwt_keys, payment.port), login_max_failures_per_peer=10_000)
    )
    await gateway.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel
    await gateway.stop(1)
    await payment.stop(1)


async def created_until_refused(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], limit: int
) -> tuple[list[pb.CreatePaymentRequest], grpc.aio.AioRpcError]:
    """Create payments, letting the gate re-read after each, until one is refused;
    return the admitted requests and the refusal."""
    admitted: list[pb.CreatePaymentRequest] = []
    for _ in range(limit):
        request = deposit()
        try:
            await stub(channel).CreatePayment(request, metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as error:
            return admitted, error
        admitted.append(request)
        # Ten of the gate's intervals: time for a fresh reading even on a busy machine.
        await asyncio.sleep(CHECK_MS * 10 / 1000)
    raise AssertionError(f"{limit} payments created and none refused")


async def test_a_backlog_sheds_new_payments_and_recovers(
    edge: grpc.aio.Channel, stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    admitted, refused = await created_until_refused(edge, user.metadata, ROOM + 5)
    assert len(admitted) == ROOM
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "still being processed" in (refused.details() or "")
    status = rpc_status.from_call(refused)
    assert status is not None
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    unpacked = {d.type_url.rsplit(".", 1)[-1]: d for d in status.details}
    assert unpacked["ErrorInfo"].Unpack(info)
    assert unpacked["RetryInfo"].Unpack(retry)
    assert info.reason == "PROCESSING_BACKLOG"
    assert int(info.metadata["unsettled"]) >= int(info.metadata["unsettled_max"])
    assert retry.retry_delay.ToMilliseconds() == CHECK_MS
    # The refused call wrote nothing: the user has exactly the admitted payments.
    listed = await stub(edge).ListPayments(
        pb.ListPaymentsRequest(page_size=50), metadata=user.metadata, timeout=5
    )
    assert len(listed.payments) == ROOM
    # A retry of an accepted payment is no new work: it gets its payment back.
    call = stub(edge).CreatePayment(admitted[0], metadata=user.metadata, timeout=5)
    replay = await call
    assert replay.payment.payment_id in {p.payment_id for p in listed.payments}
    assert ("x-payrail-idempotent-replay", "true") in tuple(await call.initial_metadata())

    # The backlog drains (here: the user cancels what waits), and payments are admitted.
    for payment in listed.payments:
        await stub(edge).CancelPayment(
            pb.CancelPaymentRequest(payment_id=payment.payment_id),
            metadata=user.metadata,
            timeout=5,
        )
    deadline = time.monotonic() + 5
    codes: list[grpc.StatusCode] = []
    while time.monotonic() < deadline:
        try:
            await stub(edge).CreatePayment(deposit(), metadata=user.metadata, timeout=5)
            break
        except grpc.aio.AioRpcError as error:
            codes.append(error.code())
            await asyncio.sleep(CHECK_MS / 1000)
    else:
        raise AssertionError("still refused after the backlog drained")
    # Until the gate's next reading, only the backlog answer (nothing else went wrong).
    assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED}


async def test_bad_input_hears_about_its_fields_even_in_a_backlog(
    edge: grpc.aio.Channel,
) -> None:
    user = await register_and_login(edge)
    await created_until_refused(edge, user.metadata, ROOM + 5)
    error = await rpc_error(
        stub(edge).CreatePayment(deposit(amount_minor=-1), metadata=user.metadata, timeout=5)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
