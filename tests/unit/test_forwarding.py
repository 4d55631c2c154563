"""The edge forwarder against a real upstream gRPC server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.forwarding import Forwarder

PAYMENTS = pb.DESCRIPTOR.services_by_name["PaymentService"]


class Upstream(payments_pb2_grpc.PaymentServiceServicer):
    def __init__(self) -> None:
        self.seen_metadata: dict[str, Any] = {}

    async def GetPayment(self, request: pb.GetPaymentRequest, context: Any) -> Any:
        self.seen_metadata = dict(context.invocation_metadata())
        if request.payment_id == "slow":
            await asyncio.sleep(5)
        await context.send_initial_metadata((("x-payrail-idempotent-replay", "true"),))
        return pb.GetPaymentResponse(payment=pb.Payment(payment_id=request.payment_id))

    async def CreatePayment(self, request: pb.CreatePaymentRequest, context: Any) -> Any:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field="card.number", description="fails the Luhn check"
        )
        detail = error_details_pb2.BadRequest(field_violations=[violation])
        status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="invalid payment")
        status.details.add().Pack(detail)
        await context.abort_with_status(rpc_status.to_status(status))

    async def WatchPayment(
        self, request: pb.WatchPaymentRequest, context: Any
    ) -> AsyncIterator[pb.WatchPaymentResponse]:
        for version in (1, 2, 3):
            yield pb.WatchPaymentResponse(payment=pb.Payment(version=version))


@pytest_asyncio.fixture
async def edge() -> AsyncIterator[tuple[payments_pb2_grpc.PaymentServiceStub, Upstream]]:
    upstream_server = grpc.aio.server()
    upstream = Upstream()
    payments_pb2_grpc.add_PaymentServiceServicer_to_server(upstream, upstream_server)
    upstream_port = upstream_server.add_insecure_port("127.0.0.1:0")
    await upstream_server.start()

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{upstream_port}")
    edge_server = grpc.aio.server()
    Forwarder(channel, max_deadline_s=0.3).register(edge_server, PAYMENTS)
    edge_port = edge_server.add_insecure_port("127.0.0.1:0")
    await edge_server.start()
    client = grpc.aio.insecure_channel(f"127.0.0.1:{edge_port}")
    yield payments_pb2_grpc.PaymentServiceStub(client), upstream
    await client.close()
    await edge_server.stop(0)
    await channel.close()
    await upstream_server.stop(0)


@pytest.mark.asyncio
async def test_response_and_metadata_pass_through(edge: Any) -> None:
    stub, upstream = edge
    call = stub.GetPayment(
        pb.GetPaymentRequest(payment_id="p1"),
        metadata=(("authorization", "Bearer t"), ("x-internal-user", "forged")),
        timeout=5,
    )
    response = await call
    assert response.payment.payment_id == "p1"
    assert ("x-payrail-idempotent-replay", "true") in tuple(await call.initial_metadata())
    # Only allow-listed metadata reaches the internal service.
    assert upstream.seen_metadata["authorization"] == "Bearer t"
    assert "x-internal-user" not in upstream.seen_metadata


@pytest.mark.asyncio
async def test_rich_error_details_survive_the_edge(edge: Any) -> None:
    stub, _ = edge
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreatePayment(pb.CreatePaymentRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(info.value)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "card.number"


@pytest.mark.asyncio
async def test_deadline_is_capped_at_the_configured_maximum(edge: Any) -> None:
    stub, _ = edge
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetPayment(pb.GetPaymentRequest(payment_id="slow"), timeout=10)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert loop.time() - started < 5  # the 0.3 s cap applied, not the caller's 10 s


@pytest.mark.asyncio
async def test_server_streams_are_forwarded(edge: Any) -> None:
    stub, _ = edge
    versions = [r.payment.version async for r in stub.WatchPayment(pb.WatchPaymentRequest())]
    assert versions == [1, 2, 3]
