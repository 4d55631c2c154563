"""payment_svc's composition root: the one place that builds pools, clients and servers."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from payment_svc.adapters.admin_queries import AdminQueries
from payment_svc.adapters.admission import UnsettledBacklogGate
from payment_svc.adapters.change_feed import ChangeFeed
from payment_svc.adapters.gateway_crypto import SdkGatewayCrypto
from payment_svc.adapters.idempotency_keys import hash_clear_keys
from payment_svc.adapters.outbox_relay import OutboxRelay
from payment_svc.adapters.postgres import PostgresPaymentRepository
from payment_svc.adapters.processing import PostgresProcessingRepository, PostgresSweeper
from payment_svc.adapters.redis_store import RedisCvcStore, RedisPaymentCache
from payment_svc.adapters.results import PostgresResultsRepository
from payment_svc.adapters.verification import PostgresVerificationRepository
from payment_svc.api.admin import PaymentAdminServicer
from payment_svc.api.ops import CallbackServicer, PaymentOpsServicer
from payment_svc.api.servicers import PaymentServicer
from payment_svc.config import Settings
from payment_svc.domain.admission import BacklogPolicy
from payment_svc.domain.money import AmountLimits, select_currencies
from payment_svc.domain.verification import CodeHasher
from payment_svc.service.payments import Payments
from payment_svc.service.processing import JanitorPolicy, Processing
from payment_svc.service.verification import Verifications
from payment_svc.vault import CardVault
from payrail.admin.v1 import admin_pb2, admin_pb2_grpc
from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc
from payrail.internal.v1 import payment_ops_pb2, payment_ops_pb2_grpc
from payrail.payments.v1 import payments_pb2, payments_pb2_grpc
from payrail_common import pg
from payrail_common.authn import Authenticator, ServiceTokenAuthenticator, method_paths
from payrail_common.config import ConfigError
from payrail_common.dependencies import postgres_check, redis_check
from payrail_common.edge_assertion import load_edge_assertions
from payrail_common.grpcserver import ServerHandle, create_server
from payrail_common.keys import read_secret_file
from payrail_common.pagetokens import load_page_tokens
from payrail_common.probes import DependencyMonitor, Probe
from payrail_common.tokens import KeyRing, TokenPolicy, parse_key_spec

PAYMENTS = payments_pb2.DESCRIPTOR.services_by_name["PaymentService"]
CALLBACKS = callbacks_pb2.DESCRIPTOR.services_by_name["CallbackService"]
OPS = payment_ops_pb2.DESCRIPTOR.services_by_name["PaymentOpsService"]
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["PaymentAdminService"]
SERVICE_NAMES = (PAYMENTS.full_name, CALLBACKS.full_name, OPS.full_name, ADMIN.full_name)


log = logging.getLogger(__name__)


def build_vault(settings: Settings) -> CardVault:
    keys = {
        kid: read_secret_file(path) for kid, path in parse_key_spec(settings.vault_keys).items()
    }
    try:
        return CardVault(
            keys,
            active_key_id=settings.vault_active_key,
            fingerprint_key=read_secret_file(Path(settings.vault_fingerprint_key)),
        )
    except ValueError as exc:
        raise ConfigError(f"card vault: {exc}") from None


def build_code_hasher(settings: Settings) -> CodeHasher:
    """One-time codes are hashed with a key derived from the fingerprint key (a separate
    purpose, so neither hash can stand in for the other)."""
    root = read_secret_file(Path(settings.vault_fingerprint_key))
    return CodeHasher(hmac.new(root, b"payrail verification codes v1", hashlib.sha256).digest())


def build_payments(
    settings: Settings,
    pool: asyncpg.Pool,
    redis: Redis,
    vault: CardVault,
    cache: RedisPaymentCache,
    changes: ChangeFeed,
    admission: UnsettledBacklogGate,
) -> Payments:
    try:
        currencies = select_currencies(
            code.strip() for code in settings.supported_currencies.split(",") if code.strip()
        )
    except ValueError as exc:
        raise ConfigError(f"PAYRAIL_SUPPORTED_CURRENCIES: {exc}") from None
    return Payments(
        changes=changes,
        admission=admission,
        repository=PostgresPaymentRepository(pool),
        cache=cache,
        cvcs=RedisCvcStore(redis, ttl_s=settings.cvc_ttl_s),
        vault=vault,
        currencies=currencies,
        limits=AmountLimits(),
    )


async def build(settings: Settings) -> ServerHandle:
    """Wire payment_svc; wait (bounded) for PostgreSQL and Redis; return the bound server."""
    # payment_svc holds only public keys: it re-verifies every forwarded access token
    # rather than trusting the edge, and could never mint one. It cannot see sessions,
    # so it also requires the edge's assertion that the token's session was live for
    # this very call: a revoked or stolen token sent straight here is refused.
    ring = KeyRing.from_files(public_spec=settings.jwt_public_keys)
    authenticator = Authenticator(
        ring,
        TokenPolicy(issuer=settings.jwt_issuer, audience=settings.jwt_audience),
        edge_assertions=load_edge_assertions(settings.edge_assertion_keys),
    )
    # ListPayments' page tokens are signed with a key derived from the edge assertion key.
    page_tokens = load_page_tokens(settings.edge_assertion_keys)
    # min_size=0: connections open on demand, so a late PostgreSQL is waited for by the
    # monitor below instead of failing pool creation.
    pool = await pg.create_pool(settings.pg_dsn, size_max=settings.pg_pool_max)
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        health_check_interval=30,
    )
    vault = build_vault(settings)
    cache = RedisPaymentCache(redis, ttl_s=settings.payment_cache_ttl_s)
    changes = ChangeFeed(settings.pg_dsn)
    admission = UnsettledBacklogGate(
        pool,
        BacklogPolicy(
            unsettled_max=settings.unsettled_max,
            check_interval_s=settings.unsettled_check_ms / 1000,
        ),
    )
    payments = build_payments(settings, pool, redis, vault, cache, changes, admission)
    processing = Processing(
        repository=PostgresProcessingRepository(pool),
        vault=vault,
        cvcs=RedisCvcStore(redis, ttl_s=settings.cvc_ttl_s),
        crypto=SdkGatewayCrypto(),
        cache=cache,
        sweeper=PostgresSweeper(pool),
        janitor=JanitorPolicy(
            pending_ttl_s=settings.pending_ttl_s,
            verification_ttl_s=settings.verification_ttl_s,
            dispatch_attempts_max=settings.dispatch_attempts_max,
        ),
        results=PostgresResultsRepository(pool),
    )
    verifications = Verifications(
        repository=PostgresVerificationRepository(pool),
        cache=cache,
        hasher=build_code_hasher(settings),
        ttl_s=settings.verification_ttl_s,
    )
    # Publishes what CreatePayment and every state change wrote to the outbox; several
    # payment_svc processes may each run one.
    relay = OutboxRelay(
        settings.pg_dsn,
        settings.kafka_bootstrap,
        batch_max=settings.outbox_batch_max,
        notify_linger_ms=settings.outbox_linger_ms,
    )
    handle = create_server(
        host=settings.host,
        port=settings.port,
        registrars=[
            lambda s: payments_pb2_grpc.add_PaymentServiceServicer_to_server(
                PaymentServicer(payments, verifications, page_tokens), s
            ),
            lambda s: callbacks_pb2_grpc.add_CallbackServiceServicer_to_server(
                CallbackServicer(processing), s
            ),
            lambda s: payment_ops_pb2_grpc.add_PaymentOpsServiceServicer_to_server(
                PaymentOpsServicer(processing, verifications), s
            ),
            # Operators (admin role, checked by the servicer), forwarded by the edge.
            lambda s: admin_pb2_grpc.add_PaymentAdminServiceServicer_to_server(
                PaymentAdminServicer(AdminQueries(pool)), s
            ),
        ],
        service_names=SERVICE_NAMES,
        interceptors=[
            authenticator.interceptor(method_paths(PAYMENTS) | method_paths(ADMIN)),
            ServiceTokenAuthenticator(
                read_secret_file(Path(settings.internal_token_file))
            ).interceptor(method_paths(OPS)),
        ],
    )
    monitor = DependencyMonitor(
        handle.health,
        [
            Probe("postgres", postgres_check(pool)),
            # Redis holds caches only: reads fall back to PostgreSQL while it is down.
            Probe("redis", redis_check(redis), essential=False),
            # The outbox absorbs Kafka outages: degraded, not down. The relay's circuit
            # breaker is the judge, so the probe adds no traffic of its own.
            Probe("kafka", relay.check_kafka, essential=False),
        ],
    )
    handle.on_stop.extend([pool.close, redis.aclose])
    try:
        await monitor.wait_ready(("postgres",), settings.startup_timeout_s)
    except TimeoutError:
        await handle.stop(0)
        raise
    # Keys stored in clear by an earlier version are hashed before anything serves (a
    # no-op index probe once they are; safe in several processes at once).
    hashed = await hash_clear_keys(pool, vault.idempotency_hasher())
    if hashed:
        log.info("idempotency keys hashed in place", extra={"rows": hashed})
    await relay.start()
    changes.start()
    admission.start()
    handle.on_stop.extend([changes.stop, admission.stop])
    # on_stop runs last-in first-out: the relay flushes before the pools close.
    handle.on_stop.append(relay.stop)
    handle.monitor = monitor
    return handle
