"""The insights process's composition root: pool, Kafka clients, the loyalty and
benefits consumer groups, the lag reporter, and the gRPC server."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumer_svc.consuming import BatchHandler, ConsumerLoop, start_group
from consumer_svc.insights.admin import ProcessingAdminServicer
from consumer_svc.insights.api import BenefitCatalogServicer, InsightsServicer
from consumer_svc.insights.config import BENEFITS, LOYALTY, Settings
from consumer_svc.insights.handlers import EVENTS_TOPIC, BenefitsHandler, LoyaltyHandler
from consumer_svc.insights.lag import LagReporter
from consumer_svc.insights.store import InsightsStore
from payrail.admin.v1 import admin_pb2, admin_pb2_grpc
from payrail.insights.v1 import insights_pb2, insights_pb2_grpc
from payrail_common import pg
from payrail_common.authn import Authenticator, method_paths
from payrail_common.dependencies import KafkaCheck, postgres_check
from payrail_common.edge_assertion import load_edge_assertions
from payrail_common.grpcserver import ServerHandle, create_server
from payrail_common.pagetokens import load_page_tokens
from payrail_common.probes import DependencyMonitor, Probe
from payrail_common.tokens import KeyRing, TokenPolicy

INSIGHTS = insights_pb2.DESCRIPTOR.services_by_name["InsightsService"]
CATALOG = insights_pb2.DESCRIPTOR.services_by_name["BenefitCatalogService"]
# Operators' view of the processing pipeline (risk decisions, dead letters); admin only.
PROCESSING_ADMIN = admin_pb2.DESCRIPTOR.services_by_name["ProcessingAdminService"]
SERVICE_NAMES = (INSIGHTS.full_name, CATALOG.full_name, PROCESSING_ADMIN.full_name)


async def _start_group(
    settings: Settings, group: str, handler: BatchHandler, role: str
) -> tuple[ConsumerLoop, AIOKafkaConsumer, AIOKafkaProducer]:
    """One consumer group over payments.events, a partition's batch at a time, through
    ConsumerLoop (waits out outages, dead-letters only what can never succeed). Its
    producer only writes dead letters."""
    client_id = f"payrail-{role}"
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        request_timeout_ms=10_000,
        client_id=client_id,
    )
    await producer.start()
    loop, consumer = await start_group(
        bootstrap_servers=settings.kafka_bootstrap,
        topic=EVENTS_TOPIC,
        group=group,
        client_id=client_id,
        batch_handler=handler,
        producer=producer,
        linger_ms=settings.consumer_linger_ms,
    )
    return loop, consumer, producer


async def build(settings: Settings) -> ServerHandle:
    """Wire the insights process; wait (bounded) for PostgreSQL and Kafka; return the
    bound server."""
    # Public keys only, like payment_svc: every forwarded token is verified again here,
    # with the edge's assertion that its session was live for this call.
    ring = KeyRing.from_files(public_spec=settings.jwt_public_keys)
    authenticator = Authenticator(
        ring,
        TokenPolicy(issuer=settings.jwt_issuer, audience=settings.jwt_audience),
        edge_assertions=load_edge_assertions(settings.edge_assertion_keys),
    )
    tiers = settings.tiers
    # Page tokens are signed with a key derived from the edge assertion key.
    page_tokens = load_page_tokens(settings.edge_assertion_keys)
    pool = await pg.create_pool(settings.pg_dsn, size_max=settings.pg_pool_max)
    store = InsightsStore(pool)
    kafka = KafkaCheck(settings.kafka_bootstrap)
    handle = create_server(
        host=settings.host,
        port=settings.port,
        registrars=[
            lambda s: insights_pb2_grpc.add_InsightsServiceServicer_to_server(
                InsightsServicer(store, tiers, page_tokens), s
            ),
            lambda s: insights_pb2_grpc.add_BenefitCatalogServiceServicer_to_server(
                BenefitCatalogServicer(store), s
            ),
            lambda s: admin_pb2_grpc.add_ProcessingAdminServiceServicer_to_server(
                ProcessingAdminServicer(pool, kafka_bootstrap=settings.kafka_bootstrap), s
            ),
        ],
        service_names=SERVICE_NAMES,
        interceptors=[
            authenticator.interceptor(
                method_paths(INSIGHTS) | method_paths(CATALOG) | method_paths(PROCESSING_ADMIN)
            )
        ],
    )
    monitor = DependencyMonitor(
        handle.health,
        [Probe("postgres", postgres_check(pool)), Probe("kafka", kafka)],
    )
    handle.on_stop.extend([pool.close, kafka.close])
    try:
        await monitor.wait_ready(("postgres", "kafka"), settings.startup_timeout_s)
    except TimeoutError:
        await handle.stop(0)
        raise
    groups: dict[str, tuple[str, BatchHandler]] = {
        LOYALTY: (
            settings.loyalty_group,
            LoyaltyHandler(store, group=settings.loyalty_group).handle_batch,
        ),
        BENEFITS: (
            settings.benefits_group,
            BenefitsHandler(store, group=settings.benefits_group).handle_batch,
        ),
    }
    for role, (group, handler) in groups.items():
        if role not in settings.enabled_groups:
            continue
        loop, consumer, producer = await _start_group(settings, group, handler, role)
        # on_stop runs last-in first-out: stop consuming, then leave the group, then flush.
        handle.on_stop.extend([producer.stop, consumer.stop, loop.stop])
    # Lag of both groups, running here or not, so a switched-off group is visible.
    lag = LagReporter(
        bootstrap_servers=settings.kafka_bootstrap,
        topic=EVENTS_TOPIC,
        groups=[group for group, _ in groups.values()],
        interval_s=settings.lag_interval_s,
    )
    lag.start()
    handle.on_stop.append(lag.stop)
    handle.monitor = monitor
    return handle
