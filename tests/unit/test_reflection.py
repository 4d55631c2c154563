"""Server reflection v1 and v1alpha on the server every payrail service runs in: both
list the services and describe them, on a real in-process server; and grpcurl (which
asks v1 first) lists and describes through it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.grpcserver import ServerHandle, create_server

pytestmark = pytest.mark.asyncio

PAYMENTS = pb.DESCRIPTOR.services_by_name["PaymentService"].full_name
EXPECTED = {
    PAYMENTS,
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}
VERSIONS = ["grpc.reflection.v1", "grpc.reflection.v1alpha"]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[ServerHandle]:
    handle = create_server(
        host="127.0.0.1",
        port=0,
        registrars=[
            lambda s: payments_pb2_grpc.add_PaymentServiceServicer_to_server(
                payments_pb2_grpc.PaymentServiceServicer(), s
            )
        ],
        service_names=[PAYMENTS],
    )
    await handle.start()
    yield handle
    await handle.stop(0)


async def ask(
    port: int, version: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    """One request on ``version``'s stream (the two versions share their wire format)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(
            f"/{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        responses = [r async for r in call(iter([request]), timeout=5)]
    assert len(responses) == 1
    return responses[0]


@pytest.mark.parametrize("version", VERSIONS)
async def test_both_versions_list_the_services(server: ServerHandle, version: str) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = await ask(server.port, version, request)
    assert {s.name for s in reply.list_services_response.service} == EXPECTED


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("symbol", [PAYMENTS, *sorted(n for n in EXPECTED if "reflection" in n)])
async def test_both_versions_describe_each_service(
    server: ServerHandle, version: str, symbol: str
) -> None:
    reply = await ask(
        server.port, version, reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    )
    assert not reply.HasField("error_response"), reply.error_response
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]
    package, _, name = symbol.rpartition(".")
    described = [f for f in files if f.package == package]
    assert [s.name for s in described[0].service] == [name]


async def test_grpcurl_lists_and_describes_over_v1(server: ServerHandle, grpcurl: str) -> None:
    async def run(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            grpcurl,
            "-plaintext",
            "-max-time",
            "10",
            f"127.0.0.1:{server.port}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=20)
        assert process.returncode == 0, err.decode()
        return out.decode()

    assert set((await run("list")).split()) == EXPECTED
    assert "rpc ListPayments" in await run("describe", PAYMENTS)
    v1 = await run("describe", "grpc.reflection.v1.ServerReflection")
    assert "rpc ServerReflectionInfo" in v1
