"""payment_svc's composition root: the one place that builds pools, clients and servers."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from payment_svc.api.servicers import CallbackServicer, PaymentServicer
from payment_svc.config import Settings
from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc
from payrail.payments.v1 import payments_pb2, payments_pb2_grpc
from payrail_common.authn import Authenticator, method_paths
from payrail_common.dependencies import KafkaCheck, postgres_check, redis_check
from payrail_common.grpcserver import ServerHandle, create_server
from payrail_common.probes import DependencyMonitor, Probe
from payrail_common.tokens import KeyRing, TokenPolicy

PAYMENTS = payments_pb2.DESCRIPTOR.services_by_name["PaymentService"]
CALLBACKS = callbacks_pb2.DESCRIPTOR.services_by_name["CallbackService"]
SERVICE_NAMES = (PAYMENTS.full_name, CALLBACKS.full_name)


async def build(settings: Settings) -> ServerHandle:
    """Wire payment_svc; wait (bounded) for PostgreSQL and Redis; return the bound server."""
    # payment_svc holds only public keys: it re-verifies every forwarded access token
    # rather than trusting the edge, and could never mint one.
    ring = KeyRing.from_files(public_spec=settings.jwt_public_keys)
    authenticator = Authenticator(
        ring, TokenPolicy(issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    )
    # min_size=0: connections open on demand, so a late PostgreSQL is waited for by the
    # monitor below instead of failing pool creation.
    pool = await asyncpg.create_pool(
        settings.pg_dsn,
        min_size=0,
        max_size=settings.pg_pool_max,
        timeout=5,
        command_timeout=10,
    )
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        health_check_interval=30,
    )
    kafka = KafkaCheck(settings.kafka_bootstrap)
    handle = create_server(
        host=settings.host,
        port=settings.port,
        registrars=[
            lambda s: payments_pb2_grpc.add_PaymentServiceServicer_to_server(PaymentServicer(), s),
            lambda s: callbacks_pb2_grpc.add_CallbackServiceServicer_to_server(
                CallbackServicer(), s
            ),
        ],
        service_names=SERVICE_NAMES,
        interceptors=[authenticator.interceptor(method_paths(PAYMENTS))],
    )
    monitor = DependencyMonitor(
        handle.health,
        [
            Probe("postgres", postgres_check(pool)),
            Probe("redis", redis_check(redis)),
            # The outbox absorbs Kafka outages: degraded, not down.
            Probe("kafka", kafka, essential=False),
        ],
    )
    handle.on_stop.extend([pool.close, redis.aclose, kafka.close])
    try:
        await monitor.wait_ready(("postgres", "redis"), settings.startup_timeout_s)
    except TimeoutError:
        await handle.stop(0)
        raise
    handle.monitor = monitor
    return handle
