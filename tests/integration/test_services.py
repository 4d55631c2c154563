"""gateway_svc and payment_svc started in-process on free ports against the real stack."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from dataclasses import replace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway_svc import bootstrap as gateway_bootstrap
from payrail.internal.v1 import payment_ops_pb2 as ops
from payrail.internal.v1 import payment_ops_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.authn import service_token_metadata
from payrail_common.keys import read_secret_file
from tests.conftest import JwtKeys, StackEnv, free_port
from tests.helpers import register_and_login
from tests.integration.conftest import Platform, gateway_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_status(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
    return int(reply.status)


async def test_both_services_report_serving(platform: Platform) -> None:
    gateway, payment = platform
    assert await health_status(gateway.port) == SERVING
    assert await health_status(payment.port) == SERVING
    assert await health_status(gateway.port, "payrail.dependency.payment_svc") == SERVING
    assert await health_status(payment.port, "payrail.dependency.postgres") == SERVING
    assert await health_status(payment.port, "payrail.payments.v1.PaymentService") == SERVING


async def test_grpcurl_lists_the_public_services(platform: Platform, grpcurl: str) -> None:
    gateway, _ = platform
    listing = await asyncio.to_thread(
        subprocess.run,
        [grpcurl, "-plaintext", f"127.0.0.1:{gateway.port}", "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    assert set(listing.stdout.split()) >= {
        "payrail.auth.v1.AuthService",
        "payrail.payments.v1.PaymentService",
        "payrail.callbacks.v1.CallbackService",
        "grpc.health.v1.Health",
    }


async def test_verify_payment_answers_through_the_edge(platform: Platform) -> None:
    gateway, _ = platform
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        user = await register_and_login(channel)
        payments = payments_pb2_grpc.PaymentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await payments.VerifyPayment(
                pb.VerifyPaymentRequest(payment_id=str(uuid.uuid4()), code="123456"),
                metadata=user.metadata,
                timeout=5,
            )
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await payments.VerifyPayment(pb.VerifyPaymentRequest(payment_id="x"), timeout=5)
    # payment_svc's answer came back through the forwarder; the edge refused the anonymous.
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert unknown.value.details() == "payment not found"
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_edge_without_payment_svc_is_unavailable_and_not_serving(
    stack: StackEnv, jwt_keys: JwtKeys
) -> None:
    settings = replace(gateway_settings(stack, jwt_keys, free_port()), upstream_deadline_ms=500)
    gateway = await gateway_bootstrap.build(settings)
    await gateway.start()
    try:
        assert await health_status(gateway.port) == NOT_SERVING
        assert await health_status(gateway.port, "payrail.dependency.redis") == SERVING
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            user = await register_and_login(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await payments_pb2_grpc.PaymentServiceStub(channel).GetPayment(
                    pb.GetPaymentRequest(payment_id="x"), metadata=user.metadata, timeout=5
                )
    finally:
        await gateway.stop(0)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # A clear message for the client; no internal addresses or transport noise.
    assert "temporarily unavailable" in (info.value.details() or "")
    assert "127.0.0.1" not in (info.value.details() or "")


async def test_internal_operations_require_the_service_token(
    platform: Platform, jwt_keys: JwtKeys
) -> None:
    _, payment = platform
    async with grpc.aio.insecure_channel(f"127.0.0.1:{payment.port}") as channel:
        stub = payment_ops_pb2_grpc.PaymentOpsServiceStub(channel)
        for metadata in ((), (("x-payrail-service-token", "00" * 32),)):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.FailPayment(
                    ops.FailPaymentRequest(payment_id="x", failure_code="x"),
                    metadata=metadata,
                    timeout=5,
                )
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        token = read_secret_file(jwt_keys.internal_token_path)
        listed = await stub.ListGateways(
            ops.ListGatewaysRequest(), metadata=service_token_metadata(token), timeout=5
        )
        assert all(g.topic.startswith("gateway.") for g in listed.gateways)
