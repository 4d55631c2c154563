"""An outage of payment_svc while the processor has work: waited out, nothing
dead-lettered, every payment settled according to its card (issue 11's reproduction)."""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from payrail.payments.v1 import payments_pb2 as pb
from tests.conftest import StackEnv
from tests.e2e.conftest import Running
from tests.e2e.test_processing import (
    APPROVE,
    DECLINE,
    assert_ledger_invariants,
    dlq_end,
    edge,  # noqa: F401 - the fixture
    read_dlq,
    request,
    settle,
    submit,
)
from tests.helpers import register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

OUTAGE_S = 20


async def dependency_status(port: int, name: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=name), timeout=2
        )
        return int(reply.status)


async def test_payment_svc_down_while_the_processor_has_work_is_waited_out(
    edge: grpc.aio.Channel,  # noqa: F811 - the fixture
    stack: StackEnv,
    services: list[Running],
) -> None:
    consumer = next(s for s in services if s.name == "consumer")
    payment = next(s for s in services if s.name == "payment")
    start = await dlq_end(stack)
    user = await register_and_login(edge)

    consumer.process.send_signal(signal.SIGSTOP)  # the processor falls behind
    try:
        cards = [APPROVE, DECLINE] * 4
        payment_ids = [
            await submit(edge, user, request(pb.PAYMENT_KIND_DEPOSIT, card, 500)) for card in cards
        ]
        payment.process.send_signal(signal.SIGKILL)
        payment.process.wait(timeout=10)
    finally:
        consumer.process.send_signal(signal.SIGCONT)

    # The processor now has 8 events and nobody to dispatch them to. It waits, and says
    # so in its health, instead of dead-lettering them.
    outage_end = time.monotonic() + OUTAGE_S
    degraded_seen = False
    while time.monotonic() < outage_end:
        status = await dependency_status(consumer.port, "payrail.dependency.payment_svc")
        degraded_seen |= status == health_pb2.HealthCheckResponse.NOT_SERVING
        await asyncio.sleep(1)
    assert degraded_seen
    assert consumer.process.poll() is None

    await asyncio.to_thread(payment.restart)
    finals = [await settle(edge, user, pid, timeout_s=90) for pid in payment_ids]
    expected = [
        pb.PAYMENT_STATUS_COMPLETED if card == APPROVE else pb.PAYMENT_STATUS_FAILED
        for card in cards
    ]
    assert [p.status for p in finals] == expected
    assert {p.failure_code for p in finals if p.status == pb.PAYMENT_STATUS_FAILED} == {
        "card_declined"
    }
    parked = await read_dlq(stack, start)
    assert {r.key.decode() for r in parked} & set(payment_ids) == set()
    await assert_ledger_invariants(stack.pg_dsn)
    # Once payment_svc is back, the consumer reports it healthy again.
    deadline = time.monotonic() + 30
    while await dependency_status(consumer.port, "payrail.dependency.payment_svc") != (
        health_pb2.HealthCheckResponse.SERVING
    ):
        assert time.monotonic() < deadline, "payment_svc still degraded at the consumer"
        await asyncio.sleep(0.5)
