"""Fixtures for integration tests: gateway_svc and payment_svc in-process on free ports,
wired to the real test stack exactly as their composition roots wire them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
import pytest_asyncio

from gateway_svc import bootstrap as gateway_bootstrap
from gateway_svc.config import Settings as GatewaySettings
from payment_svc import bootstrap as payment_bootstrap
from payment_svc.config import Settings as PaymentSettings
from payrail_common.grpcserver import ServerHandle
from tests.conftest import JwtKeys, StackEnv

Platform = tuple[ServerHandle, ServerHandle]


def payment_settings(stack: StackEnv, keys: JwtKeys) -> PaymentSettings:
    return PaymentSettings(
        jwt_public_keys=keys.public_spec,
        vault_keys=keys.vault_spec,
        vault_active_key=keys.kid,
        vault_fingerprint_key=str(keys.fingerprint_key_path),
        internal_token_file=str(keys.internal_token_path),
        edge_assertion_keys=str(keys.edge_assertion_key_path),
        port=0,
        metrics_port=0,
        pg_dsn=stack.pg_dsn,
        redis_url=stack.redis_url,
        kafka_bootstrap=stack.kafka_bootstrap,
        startup_timeout_s=10,
        shutdown_grace_s=1,
        # Payments made here are never processed and stay in the shared database: the
        # admission bound would count them (test_admission.py sets its own).
        unsettled_max=100_000,
    )


def gateway_settings(stack: StackEnv, keys: JwtKeys, payment_port: int) -> GatewaySettings:
    return GatewaySettings(
        jwt_signing_keys=keys.signing_spec,
        jwt_active_kid=keys.kid,
        edge_assertion_keys=str(keys.edge_assertion_key_path),
        port=0,
        metrics_port=0,
        payment_target=f"127.0.0.1:{payment_port}",
        pg_dsn=stack.pg_dsn,
        redis_url=stack.redis_url,
        startup_timeout_s=10,
        shutdown_grace_s=1,
        upstream_deadline_ms=2000,
        kafka_bootstrap=stack.kafka_bootstrap,
        # Every test registers from 127.0.0.1 (test_register_enumeration.py sets its own).
        register_max_per_peer=100_000,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(stack: StackEnv, jwt_keys: JwtKeys) -> AsyncIterator[Platform]:
    """(gateway, payment_svc), one pair per test module."""
    payment = await payment_bootstrap.build(payment_settings(stack, jwt_keys))
    await payment.start()
    # A generous per-peer login budget: every test logs in from 127.0.0.1.
    settings = replace(
        gateway_settings(stack, jwt_keys, payment.port), login_max_failures_per_peer=10_000
    )
    gateway = await gateway_bootstrap.build(settings)
    await gateway.start()
    yield gateway, payment
    await gateway.stop(1)
    await payment.stop(1)


@pytest_asyncio.fixture(loop_scope="session")
async def channel(platform: Platform) -> AsyncIterator[grpc.aio.Channel]:
    """A client channel to the gateway, as an outside client would hold one."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform[0].port}") as ch:
        yield ch
