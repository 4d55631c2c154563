"""WatchPayment through the gateway: the current state, each change, then the end."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.helpers import User, register_and_login
from tests.integration.test_payments import deposit, stub

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def collect(
    channel: grpc.aio.Channel,
    user: User,
    payment_id: str,
    opened: asyncio.Semaphore | None = None,
) -> list[pb.Payment]:
    """Every state the stream sends; ``opened`` is released once the first arrived."""
    stream = payments_pb2_grpc.PaymentServiceStub(channel).WatchPayment(
        pb.WatchPaymentRequest(payment_id=payment_id), metadata=user.metadata, timeout=30
    )
    states = []
    async for reply in stream:
        states.append(reply.payment)
        if opened is not None and len(states) == 1:
            opened.release()
    return states


async def test_watch_streams_current_state_then_changes_and_ends(
    channel: grpc.aio.Channel,
) -> None:
    user = await register_and_login(channel)
    created = await stub(channel).CreatePayment(deposit(), metadata=user.metadata, timeout=5)
    payment_id = created.payment.payment_id
    # Hundreds of watchers on one payment, all open (first state received) before the change.
    opened = asyncio.Semaphore(0)
    watchers = [asyncio.create_task(collect(channel, user, payment_id, opened)) for _ in range(200)]
    for _ in watchers:
        await asyncio.wait_for(opened.acquire(), timeout=30)
    assert not any(w.done() for w in watchers), "a stream ended before the payment was final"
    await stub(channel).CancelPayment(
        pb.CancelPaymentRequest(payment_id=payment_id), metadata=user.metadata, timeout=5
    )
    streams = await asyncio.wait_for(asyncio.gather(*watchers), timeout=30)
    for states in streams:
        assert [(p.status, p.version) for p in states] == [
            (pb.PAYMENT_STATUS_PENDING, 1),
            (pb.PAYMENT_STATUS_CANCELED, 2),
        ]


async def test_watching_a_final_payment_returns_it_and_ends(channel: grpc.aio.Channel) -> None:
    user = await register_and_login(channel)
    created = await stub(channel).CreatePayment(deposit(), metadata=user.metadata, timeout=5)
    await stub(channel).CancelPayment(
        pb.CancelPaymentRequest(payment_id=created.payment.payment_id), metadata=user.metadata
    )
    states = await collect(channel, user, created.payment.payment_id)
    assert [p.status for p in states] == [pb.PAYMENT_STATUS_CANCELED]


async def test_watching_someone_elses_payment_is_not_found(channel: grpc.aio.Channel) -> None:
    owner = await register_and_login(channel)
    created = await stub(channel).CreatePayment(deposit(), metadata=owner.metadata, timeout=5)
    other = await register_and_login(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(channel, other, created.payment.payment_id)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
