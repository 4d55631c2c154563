"""gateway_svc's composition root: the one place that builds pools, channels and servers."""

from __future__ import annotations

from redis.asyncio import Redis

from gateway_svc.adapters.argon2_hasher import Argon2Hasher, Argon2Params
from gateway_svc.adapters.kafka_notifier import KafkaNotifier
from gateway_svc.adapters.operator_actions import PostgresOperatorActions
from gateway_svc.adapters.postgres import PostgresAccountStore
from gateway_svc.adapters.redis_store import RedisAttemptThrottle, RedisSessionCache
from gateway_svc.api.auth import AUTHENTICATED_METHODS, AuthServicer
from gateway_svc.api.operators import OperatorGuard, OperatorServicer, methods_of
from gateway_svc.config import Settings
from gateway_svc.service.accounts import Accounts, LoginLimits, RegisterLimits
from payrail.admin.v1 import admin_pb2, admin_pb2_grpc
from payrail.auth.v1 import auth_pb2, auth_pb2_grpc
from payrail.callbacks.v1 import callbacks_pb2
from payrail.insights.v1 import insights_pb2
from payrail.payments.v1 import payments_pb2
from payrail_common import pg
from payrail_common.authn import Authenticator, method_paths
from payrail_common.channels import internal_channel
from payrail_common.dependencies import (
    KafkaCheck,
    grpc_health_check,
    postgres_check,
    redis_check,
)
from payrail_common.edge_assertion import load_edge_assertions
from payrail_common.forwarding import Forwarder
from payrail_common.grpcserver import ServerHandle, create_server
from payrail_common.probes import DependencyMonitor, Probe
from payrail_common.tokens import KeyRing, TokenPolicy

AUTH = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
PAYMENTS = payments_pb2.DESCRIPTOR.services_by_name["PaymentService"]
CALLBACKS = callbacks_pb2.DESCRIPTOR.services_by_name["CallbackService"]
INSIGHTS = insights_pb2.DESCRIPTOR.services_by_name["InsightsService"]
CATALOG = insights_pb2.DESCRIPTOR.services_by_name["BenefitCatalogService"]
PAYMENT_ADMIN = admin_pb2.DESCRIPTOR.services_by_name["PaymentAdminService"]
PROCESSING_ADMIN = admin_pb2.DESCRIPTOR.services_by_name["ProcessingAdminService"]
OPERATOR = admin_pb2.DESCRIPTOR.services_by_name["OperatorService"]
SERVICE_NAMES = (
    AUTH.full_name,
    PAYMENTS.full_name,
    CALLBACKS.full_name,
    INSIGHTS.full_name,
    CATALOG.full_name,
    PAYMENT_ADMIN.full_name,
    PROCESSING_ADMIN.full_name,
    OPERATOR.full_name,
)
# Operator RPCs (and the admin-only catalog): the admin role is checked here before
# anything is forwarded, and again by the service that answers.
ADMIN_METHODS = methods_of([PAYMENT_ADMIN, PROCESSING_ADMIN, OPERATOR, CATALOG])
# What the audit trail records: every change, and every read across users' payments.
AUDITED = frozenset(
    {
        f"/{PAYMENT_ADMIN.full_name}/UpdateGateway",
        f"/{PAYMENT_ADMIN.full_name}/SearchPayments",
        f"/{PAYMENT_ADMIN.full_name}/GetPaymentStory",
        f"/{PROCESSING_ADMIN.full_name}/RedriveDeadLetter",
        f"/{CATALOG.full_name}/PutBenefit",
        f"/{CATALOG.full_name}/DeleteBenefit",
    }
)
# Every PaymentService, InsightsService and BenefitCatalogService call and the
# session-bound AuthService calls need a bearer token (the admin role for the catalog is
# checked upstream). CallbackService is authenticated by its HMAC signature instead, in
# payment_svc.
PROTECTED_METHODS = (
    method_paths(PAYMENTS)
    | method_paths(AUTH, AUTHENTICATED_METHODS)
    | method_paths(INSIGHTS)
    | method_paths(CATALOG)
    | method_paths(PAYMENT_ADMIN)
    | method_paths(PROCESSING_ADMIN)
    | method_paths(OPERATOR)
)


async def build(settings: Settings) -> ServerHandle:
    """Wire gateway_svc; wait (bounded) for its own stores; return the bound server."""
    ring = KeyRing.from_files(
        signing_spec=settings.jwt_signing_keys,
        public_spec=settings.jwt_public_keys,
        active_kid=settings.jwt_active_kid,
    )
    policy = TokenPolicy(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        access_ttl_s=settings.access_token_ttl_s,
    )
    pool = await pg.create_pool(settings.pg_dsn, size_max=settings.pg_pool_max)
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        health_check_interval=30,
    )
    hasher = Argon2Hasher(
        Argon2Params(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        )
    )
    sessions = RedisSessionCache(redis)
    # Notices to account owners go out through Kafka in the background: Register never
    # waits for it, so its answer cannot depend on whether a notice was due.
    notifier = KafkaNotifier(bootstrap_servers=settings.kafka_bootstrap)
    accounts = Accounts(
        store=PostgresAccountStore(pool),
        sessions=sessions,
        throttle=RedisAttemptThrottle(redis, window_s=settings.login_window_s),
        hasher=hasher,
        notifier=notifier,
        ring=ring,
        policy=policy,
        session_ttl_s=settings.session_ttl_s,
        limits=LoginLimits(
            per_email=settings.login_max_failures_per_email,
            per_peer=settings.login_max_failures_per_peer,
        ),
        register_throttle=RedisAttemptThrottle(redis, window_s=settings.register_window_s),
        register_limits=RegisterLimits(
            per_email=settings.register_max_per_email,
            per_peer=settings.register_max_per_peer,
        ),
    )
    authenticator = Authenticator(ring, policy, session_check=accounts.session_is_live)
    # Each call the authenticator let through (token and live session checked) is
    # forwarded with an assertion signed for its method and token: the internal
    # services accept nothing less, so a revoked token is refused there too.
    edge_assertions = load_edge_assertions(settings.edge_assertion_keys)
    channel = internal_channel(settings.payment_target)
    forwarder = Forwarder(
        channel,
        max_deadline_s=settings.upstream_deadline_ms / 1000,
        edge_assertions=edge_assertions,
    )
    # The insights process on a channel of its own: while it is down its calls answer
    # UNAVAILABLE and nothing else is affected.
    insights_channel = internal_channel(settings.insights_target)
    insights_forwarder = Forwarder(
        insights_channel,
        max_deadline_s=settings.upstream_deadline_ms / 1000,
        unavailable_message="insights are temporarily unavailable; retry with backoff",
        edge_assertions=edge_assertions,
    )
    kafka = KafkaCheck(settings.kafka_bootstrap)
    operator_actions = PostgresOperatorActions(pool)
    operators = OperatorServicer(
        operator_actions,
        [
            # Itself, through its own port, so the answer is what any client would see.
            *([("gateway_svc", f"127.0.0.1:{settings.port}")] if settings.port else []),
            ("payment_svc", settings.payment_target),
            ("consumer_insights", settings.insights_target),
            *settings.health_target_list(),
        ],
    )
    handle = create_server(
        host=settings.host,
        port=settings.port,
        registrars=[
            lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(accounts), s),
            lambda s: forwarder.register(s, PAYMENTS),
            lambda s: forwarder.register(s, CALLBACKS),
            lambda s: insights_forwarder.register(s, INSIGHTS),
            lambda s: insights_forwarder.register(s, CATALOG),
            lambda s: forwarder.register(s, PAYMENT_ADMIN),
            lambda s: insights_forwarder.register(s, PROCESSING_ADMIN),
            lambda s: admin_pb2_grpc.add_OperatorServiceServicer_to_server(operators, s),
        ],
        service_names=SERVICE_NAMES,
        interceptors=[
            authenticator.interceptor(PROTECTED_METHODS),
            # After authentication (it needs the caller): role, then the audit record.
            OperatorGuard(operator_actions, admin_methods=ADMIN_METHODS, audited=AUDITED),
        ],
    )
    monitor = DependencyMonitor(
        handle.health,
        [
            Probe("postgres", postgres_check(pool)),
            Probe("redis", redis_check(redis)),
            Probe("payment_svc", grpc_health_check(channel)),
            # Shown under its own name, never a reason to stop serving payments.
            Probe("consumer_insights", grpc_health_check(insights_channel), essential=False),
            # Only account notices use it; they wait in memory while it is down.
            Probe("kafka", kafka, essential=False),
        ],
    )

    async def close_channel() -> None:
        await channel.close()
        await insights_channel.close()
        await operators.close()

    notifier.start()
    handle.on_stop.extend(
        [pool.close, redis.aclose, close_channel, hasher.close, kafka.close, notifier.stop]
    )
    try:
        await monitor.wait_ready(("postgres", "redis"), settings.startup_timeout_s)
    except TimeoutError:
        await handle.stop(0)
        raise
    handle.monitor = monitor
    return handle
