"""The edge forwarder against a real upstream gRPC server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.fields import FieldViolation
from payrail_common.forwarding import UNAVAILABLE_MESSAGE, Forwarder
from payrail_common.reasons import Reason
from payrail_common.rpcerrors import abort, error_boundary
from tests.rich_errors import assert_catalogued, rich_error

PAYMENTS = pb.DESCRIPTOR.services_by_name["PaymentService"]


class NoDomainError(Exception):
    pass


async def _never(context: Any, error: Exception) -> None:
    raise AssertionError("no domain error is raised here")


# What every payrail servicer body runs in: an outage becomes UNAVAILABLE with details.
outage_boundary = error_boundary(NoDomainError, _never, unavailable_message="the store is down")


class Upstream(payments_pb2_grpc.PaymentServiceServicer):
    def __init__(self) -> None:
        self.seen_metadata: dict[str, Any] = {}

    async def GetPayment(self, request: pb.GetPaymentRequest, context: Any) -> Any:
        self.seen_metadata = dict(context.invocation_metadata())
        if request.payment_id == "slow":
            await asyncio.sleep(5)
        if request.payment_id == "store-down":  # as a payrail server answers an outage
            async with outage_boundary(context):
                raise ConnectionRefusedError("postgres at 10.0.0.7:5432 refused")
        if request.payment_id == "bare":  # a status without details: no payrail server's
            await context.abort(grpc.StatusCode.NOT_FOUND, "nothing here")
        await context.send_initial_metadata((("x-payrail-idempotent-replay", "true"),))
        return pb.GetPaymentResponse(payment=pb.Payment(payment_id=request.payment_id))

    async def CreatePayment(self, request: pb.CreatePaymentRequest, context: Any) -> Any:
        await abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid payment",
            violations=[FieldViolation("card.number", "fails the Luhn check")],
            reason=Reason.VALIDATION_FAILED,
        )

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
    error = rich_error(info.value)
    assert_catalogued(error, Reason.VALIDATION_FAILED)
    assert error.message == "invalid payment"


@pytest.mark.asyncio
async def test_deadline_is_capped_at_the_configured_maximum(edge: Any) -> None:
    stub, _ = edge
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetPayment(pb.GetPaymentRequest(payment_id="slow"), timeout=10)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert loop.time() - started < 5  # the 0.3 s cap applied, not the caller's 10 s
    # The edge's own client library ended the call: the edge gives it its reason.
    assert_catalogued(rich_error(info.value), Reason.DEPENDENCY_UNAVAILABLE)


@pytest.mark.asyncio
async def test_an_upstream_outage_keeps_its_details_under_the_edges_message(edge: Any) -> None:
    stub, _ = edge
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetPayment(pb.GetPaymentRequest(payment_id="store-down"), timeout=5)
    error = rich_error(info.value)  # details and message agree: a client library reads them
    assert_catalogued(error, Reason.DEPENDENCY_UNAVAILABLE)
    assert error.message == UNAVAILABLE_MESSAGE
    assert error.retry_delay_s is not None


@pytest.mark.asyncio
async def test_an_unreachable_upstream_is_dependency_unavailable() -> None:
    edge_server = grpc.aio.server()
    # Nothing listens on port 1 of loopback.
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    Forwarder(channel, max_deadline_s=2).register(edge_server, PAYMENTS)
    port = edge_server.add_insecure_port("127.0.0.1:0")
    await edge_server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as client:
            stub = payments_pb2_grpc.PaymentServiceStub(client)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetPayment(pb.GetPaymentRequest(payment_id="p1"), timeout=5)
    finally:
        await edge_server.stop(0)
        await channel.close()
    error = rich_error(info.value)
    assert_catalogued(error, Reason.DEPENDENCY_UNAVAILABLE)
    assert (error.code, error.message) == ("UNAVAILABLE", UNAVAILABLE_MESSAGE)


@pytest.mark.asyncio
async def test_a_status_no_payrail_server_sent_is_internal(edge: Any) -> None:
    stub, _ = edge
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetPayment(pb.GetPaymentRequest(payment_id="bare"), timeout=5)
    assert_catalogued(rich_error(info.value), Reason.INTERNAL_ERROR)


@pytest.mark.asyncio
async def test_server_streams_are_forwarded(edge: Any) -> None:
    stub, _ = edge
    versions = [r.payment.version async for r in stub.WatchPayment(pb.WatchPaymentRequest())]
    assert versions == [1, 2, 3]
