"""consumer_svc's composition root: pools, Kafka clients, the consumer groups, health."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from consumer_svc.config import Settings
from consumer_svc.consuming import BatchHandler, start_group
from consumer_svc.janitor import Janitor, StrandedRedriver
from consumer_svc.notifications import NOTIFICATIONS_TOPIC, NotificationSink
from consumer_svc.processor import EVENTS_TOPIC, Processor
from consumer_svc.risk.engine import RiskEngine
from consumer_svc.risk.store import RiskStore
from payrail.internal.v1 import payment_ops_pb2_grpc
from payrail_common import pg
from payrail_common.authn import ServiceTokenClientInterceptor
from payrail_common.channels import internal_channel
from payrail_common.dependencies import (
    KafkaCheck,
    grpc_health_check,
    postgres_check,
    redis_check,
)
from payrail_common.grpcserver import ServerHandle, create_server
from payrail_common.keys import read_secret_file
from payrail_common.probes import DependencyMonitor, Probe


async def build(settings: Settings) -> ServerHandle:
    """Wire consumer_svc; wait (bounded) for Kafka and PostgreSQL; return the bound server."""
    pool = await pg.create_pool(settings.pg_dsn, size_max=settings.pg_pool_max)
    kafka = KafkaCheck(settings.kafka_bootstrap)
    # Every call to payment_svc presents the service token (PaymentOpsService requires it).
    channel = internal_channel(
        settings.payment_target,
        interceptors=[
            ServiceTokenClientInterceptor(read_secret_file(Path(settings.internal_token_file)))
        ],
    )
    # The risk memory's location cache; PostgreSQL answers while it is down.
    redis = Redis.from_url(
        settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
    )
    handle = create_server(host=settings.host, port=settings.port, registrars=[], service_names=())
    monitor = DependencyMonitor(
        handle.health,
        [
            Probe("postgres", postgres_check(pool)),
            Probe("kafka", kafka),
            Probe("payment_svc", grpc_health_check(channel)),
            Probe("redis", redis_check(redis), essential=False),
        ],
    )

    async def close_channel() -> None:
        await channel.close()

    handle.on_stop.extend([pool.close, kafka.close, close_channel, redis.aclose])
    try:
        await monitor.wait_ready(("postgres", "kafka"), settings.startup_timeout_s)
    except TimeoutError:
        await handle.stop(0)
        raise
    roles = set(settings.roles.split(","))
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        request_timeout_ms=10_000,
        client_id="payrail-processor",
    )
    await producer.start()
    handle.on_stop.append(producer.stop)
    stub = payment_ops_pb2_grpc.PaymentOpsServiceStub(channel)
    processor = Processor(
        ops_stub=stub,
        producer=producer,
        pool=pool,
        risk=RiskEngine(RiskStore(pool, redis), settings.risk),
        group=settings.processor_group,
    )
    # on_stop runs last-in first-out: stop consuming, then leave the group, then flush.
    if "processor" in roles:
        await _consume(
            handle,
            settings,
            topic=EVENTS_TOPIC,
            group=settings.processor_group,
            batch_handler=processor.handle_batch,
            producer=producer,
        )
    if "notifications" in roles:
        sink = NotificationSink(
            pool=pool,
            path=Path(settings.notifications_sink_file),
            group=settings.notifications_group,
        )
        await _consume(
            handle,
            settings,
            topic=NOTIFICATIONS_TOPIC,
            group=settings.notifications_group,
            batch_handler=sink.handle_batch,
            producer=producer,
        )
    if "janitor" in roles:
        janitor = Janitor(
            ops_stub=stub,
            processor=processor,
            interval_s=settings.janitor_interval_s,
            batch_max=settings.janitor_batch_max,
            redriver=StrandedRedriver(
                ops_stub=stub,
                pool=pool,
                producer=producer,
                group=settings.processor_group,
                redrive_after_s=settings.janitor_redrive_after_s,
                batch_max=settings.janitor_batch_max,
            ),
        )
        janitor.start()
        handle.on_stop.append(janitor.stop)
    handle.monitor = monitor
    return handle


async def _consume(
    handle: ServerHandle,
    settings: Settings,
    *,
    topic: str,
    group: str,
    handler: Callable[[bytes], Awaitable[str]] | None = None,
    batch_handler: BatchHandler | None = None,
    producer: AIOKafkaProducer,
) -> None:
    """Join ``group`` on ``topic`` and run ``handler`` (or ``batch_handler``) over it
    until the server stops."""
    loop, consumer = await start_group(
        bootstrap_servers=settings.kafka_bootstrap,
        topic=topic,
        group=group,
        client_id=f"payrail-{group}",
        handler=handler,
        batch_handler=batch_handler,
        producer=producer,
        linger_ms=settings.consumer_linger_ms,
    )
    handle.on_stop.extend([consumer.stop, loop.stop])
