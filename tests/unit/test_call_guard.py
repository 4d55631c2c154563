"""The call guard every payrail server runs behind (payrail_common.interceptors.CallGuard):
bytes that are not the request message are INVALID_ARGUMENT with a field violation, and
an exception nothing mapped is INTERNAL with a fixed message — never UNKNOWN naming a
Python class or repeating an exception's (a database's) text. Also through the edge's
byte-level forwarder, which relays the upstream's answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.forwarding import Forwarder
from payrail_common.grpcserver import ServerHandle, ServerTuning, configure, create_server
from payrail_common.reasons import Reason
from payrail_common.rpcerrors import error_boundary
from tests.rich_errors import assert_catalogued, rich_error

pytestmark = pytest.mark.asyncio

PAYMENTS = pb.DESCRIPTOR.services_by_name["PaymentService"]
# Not a protobuf message of any type: field 31, wire type 7 does not exist.
GARBAGE = b"\xff\xff\xff\xff\x0f"
SECRET_TEXT = 'invalid byte sequence for encoding "UTF8": 0x00 (secret detail)'


class DomainError(Exception):
    pass


async def _never(context: Any, error: Exception) -> None:
    raise AssertionError("no domain error is raised here")


boundary = error_boundary(DomainError, _never, unavailable_message="try later")


class Servicer(payments_pb2_grpc.PaymentServiceServicer):
    async def GetPayment(self, request: pb.GetPaymentRequest, context: Any) -> Any:
        if request.payment_id == "boom":  # no boundary: only the guard stands in the way
            raise RuntimeError(SECRET_TEXT)
        if request.payment_id == "boundary":
            async with boundary(context):
                raise ValueError(SECRET_TEXT)
        return pb.GetPaymentResponse(payment=pb.Payment(payment_id=request.payment_id))

    async def WatchPayment(self, request: pb.WatchPaymentRequest, context: Any) -> Any:
        yield pb.WatchPaymentResponse(payment=pb.Payment(version=1))
        raise KeyError(SECRET_TEXT)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[ServerHandle]:
    handle = create_server(
        host="127.0.0.1",
        port=0,
        registrars=[
            lambda s: payments_pb2_grpc.add_PaymentServiceServicer_to_server(Servicer(), s)
        ],
        service_names=(PAYMENTS.full_name,),
    )
    await handle.start()
    yield handle
    await handle.stop(0)


@pytest_asyncio.fixture
async def channel(server: ServerHandle) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def assert_says_nothing_internal(error: grpc.aio.AioRpcError) -> None:
    text = f"{error.details()} {error.debug_error_string()}"
    for word in ("class", "DecodeError", "Error parsing", "Unexpected", "secret", "UTF8"):
        assert word not in text, text


def assert_malformed(error: grpc.aio.AioRpcError, message_name: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert_says_nothing_internal(error)
    status = rpc_status.from_call(error)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details)
    [violation] = bad.field_violations
    assert violation.field == ""
    assert message_name in violation.description
    assert_catalogued(rich_error(error), Reason.MALFORMED_REQUEST)


async def raw_unary(channel: grpc.aio.Channel, path: str, payload: bytes) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary(path)(payload, timeout=5)
    return info.value


async def test_undecodable_unary_request_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    error = await raw_unary(channel, "/payrail.payments.v1.PaymentService/GetPayment", GARBAGE)
    assert_malformed(error, "payrail.payments.v1.GetPaymentRequest")


async def test_undecodable_health_check_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    error = await raw_unary(channel, "/grpc.health.v1.Health/Check", GARBAGE)
    assert_malformed(error, "grpc.health.v1.HealthCheckRequest")
    # A well-formed check still works.
    reply = await channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_undecodable_server_streaming_request_is_invalid_argument(
    channel: grpc.aio.Channel,
) -> None:
    call = channel.unary_stream("/payrail.payments.v1.PaymentService/WatchPayment")(
        GARBAGE, timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert_malformed(info.value, "payrail.payments.v1.WatchPaymentRequest")


async def test_undecodable_message_in_a_request_stream_is_invalid_argument(
    channel: grpc.aio.Channel,
) -> None:
    call = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")(
        iter([GARBAGE]), timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert_malformed(info.value, "grpc.reflection.v1alpha.ServerReflectionRequest")
    # Reflection itself still answers a real request.
    ok = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    replies = [reply async for reply in ok]
    names = {s.name for s in replies[0].list_services_response.service}
    assert PAYMENTS.full_name in names


@pytest.mark.parametrize("payment_id", ["boom", "boundary"])
async def test_unexpected_exception_is_internal_without_its_text(
    channel: grpc.aio.Channel, payment_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    stub = payments_pb2_grpc.PaymentServiceStub(channel)
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetPayment(pb.GetPaymentRequest(payment_id=payment_id), timeout=5)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "internal error; the server logged it"
    assert_says_nothing_internal(info.value)
    assert_catalogued(rich_error(info.value), Reason.INTERNAL_ERROR)
    # The server keeps what the client does not get: the exception and its traceback.
    logged = [r for r in caplog.records if r.exc_info]
    assert logged
    assert SECRET_TEXT in str(logged[-1].exc_info[1])  # type: ignore[index]


async def test_unexpected_exception_in_a_stream_is_internal(channel: grpc.aio.Channel) -> None:
    stub = payments_pb2_grpc.PaymentServiceStub(channel)
    seen: list[int] = []

    async def watch() -> None:
        async for reply in stub.WatchPayment(pb.WatchPaymentRequest(payment_id="p"), timeout=5):
            seen.append(reply.payment.version)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await watch()
    assert seen == [1]
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert_says_nothing_internal(info.value)
    assert_catalogued(rich_error(info.value), Reason.INTERNAL_ERROR)


async def test_an_unknown_health_service_is_not_found_with_a_reason(
    channel: grpc.aio.Channel,
) -> None:
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert_catalogued(rich_error(info.value), Reason.NOT_FOUND)


async def test_a_shed_call_is_server_overloaded_with_retry_info() -> None:
    """inflight_max=1: a second concurrent call is refused before any work."""
    release = asyncio.Event()

    class Slow(payments_pb2_grpc.PaymentServiceServicer):
        async def GetPayment(self, request: pb.GetPaymentRequest, context: Any) -> Any:
            await release.wait()
            return pb.GetPaymentResponse()

    configure(ServerTuning(inflight_max=1))
    try:
        handle = create_server(
            host="127.0.0.1",
            port=0,
            registrars=[
                lambda s: payments_pb2_grpc.add_PaymentServiceServicer_to_server(Slow(), s)
            ],
            service_names=(PAYMENTS.full_name,),
        )
    finally:
        configure(ServerTuning())
    await handle.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as ch:
            stub = payments_pb2_grpc.PaymentServiceStub(ch)
            first = asyncio.ensure_future(stub.GetPayment(pb.GetPaymentRequest(), timeout=5))
            await asyncio.sleep(0.3)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetPayment(pb.GetPaymentRequest(), timeout=5)
            release.set()
            await first
    finally:
        await handle.stop(0)
    error = rich_error(info.value)
    assert_catalogued(error, Reason.SERVER_OVERLOADED)
    assert error.retry_delay_s is not None
    assert error.retry_delay_s > 0


async def test_the_edge_relays_the_upstreams_invalid_argument(server: ServerHandle) -> None:
    """The edge forwards bytes without parsing them: the upstream's refusal (code,
    message and BadRequest details) is what the client hears."""
    upstream = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    edge = create_server(
        host="127.0.0.1",
        port=0,
        registrars=[lambda s: Forwarder(upstream, max_deadline_s=5).register(s, PAYMENTS)],
        service_names=(PAYMENTS.full_name,),
    )
    await edge.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as client:
            path = "/payrail.payments.v1.PaymentService/GetPayment"
            error = await raw_unary(client, path, GARBAGE)
            assert_malformed(error, "payrail.payments.v1.GetPaymentRequest")
    finally:
        await edge.stop(0)
        await upstream.close()
