"""consumer_svc's composition root: pools, Kafka clients, the consumer groups, health."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumer_svc.config import Settings
from consumer_svc.consuming import ConsumerLoop
from consumer_svc.janitor import Janitor
from consumer_svc.processor import EVENTS_TOPIC, Processor
from payrail.internal.v1 import payment_ops_pb2_grpc
from payrail_common.authn import ServiceTokenClientInterceptor
from payrail_common.dependencies import KafkaCheck, grpc_health_check, postgres_check
from payrail_common.grpcserver import ServerHandle, create_server
from payrail_common.keys import read_secret_file
from payrail_common.probes import DependencyMonitor, Probe


async def build(settings: Settings) -> ServerHandle:
    """Wire consumer_svc; wait (bounded) for Kafka and PostgreSQL; return the bound server."""
    pool = await asyncpg.create_pool(
        settings.pg_dsn,
        min_size=0,
        max_size=settings.pg_pool_max,
        timeout=5,
        command_timeout=10,
    )
    kafka = KafkaCheck(settings.kafka_bootstrap)
    # Every call to payment_svc presents the service token (PaymentOpsService requires it).
    channel = grpc.aio.insecure_channel(
        settings.payment_target,
        interceptors=[
            ServiceTokenClientInterceptor(read_secret_file(Path(settings.internal_token_file)))
        ],
    )
    handle = create_server(host=settings.host, port=settings.port, registrars=[], service_names=())
    monitor = DependencyMonitor(
        handle.health,
        [
            Probe("postgres", postgres_check(pool)),
            Probe("kafka", kafka),
            Probe("payment_svc", grpc_health_check(channel)),
        ],
    )

    async def close_channel() -> None:
        await channel.close()

    handle.on_stop.extend([pool.close, kafka.close, close_channel])
    try:
        await monitor.wait_ready(("postgres", "kafka"), settings.startup_timeout_s)
    except TimeoutError:
        await handle.stop(0)
        raise
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        request_timeout_ms=10_000,
        client_id="payrail-processor",
    )
    consumer = AIOKafkaConsumer(
        EVENTS_TOPIC,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.processor_group,
        client_id="payrail-processor",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=300_000,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
    )
    await producer.start()
    await consumer.start()
    processor = Processor(
        ops_stub=payment_ops_pb2_grpc.PaymentOpsServiceStub(channel),
        producer=producer,
        pool=pool,
        group=settings.processor_group,
    )
    loop = ConsumerLoop(
        consumer=consumer,
        producer=producer,
        handler=processor.handle,
        group=settings.processor_group,
    )
    loop.start()
    janitor = Janitor(
        ops_stub=payment_ops_pb2_grpc.PaymentOpsServiceStub(channel),
        processor=processor,
        interval_s=settings.janitor_interval_s,
        batch_max=settings.janitor_batch_max,
    )
    janitor.start()
    # on_stop runs last-in first-out: stop consuming, then leave the group, then flush.
    handle.on_stop.extend([producer.stop, consumer.stop, loop.stop, janitor.stop])
    handle.monitor = monitor
    return handle
