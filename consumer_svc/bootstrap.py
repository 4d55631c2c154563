"""consumer_svc's composition root. The consumer groups arrive with the processing issue;
today it serves health (Kafka and PostgreSQL probed) so deployments can already wire it."""

from __future__ import annotations

import asyncpg

from consumer_svc.config import Settings
from payrail_common.dependencies import KafkaCheck, postgres_check
from payrail_common.grpcserver import ServerHandle, create_server
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
    handle = create_server(host=settings.host, port=settings.port, registrars=[], service_names=())
    monitor = DependencyMonitor(
        handle.health, [Probe("postgres", postgres_check(pool)), Probe("kafka", kafka)]
    )
    handle.on_stop.extend([pool.close, kafka.close])
    try:
        await monitor.wait_ready(("postgres", "kafka"), settings.startup_timeout_s)
    except TimeoutError:
        await handle.stop(0)
        raise
    handle.monitor = monitor
    return handle
