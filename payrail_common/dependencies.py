"""Probe checks for the dependencies payrail services talk to.

Each factory returns an async callable for :class:`payrail_common.probes.Probe`; the
callable raises when the dependency cannot serve a trivial request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
from aiokafka.admin import AIOKafkaAdminClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis

Check = Callable[[], Awaitable[object]]


def postgres_check(pool: asyncpg.Pool) -> Check:
    async def check() -> object:
        return await pool.fetchval("SELECT 1")

    return check


def redis_check(client: Redis) -> Check:
    async def check() -> object:
        return await client.ping()

    return check


def grpc_health_check(channel: grpc.aio.Channel, *, timeout_s: float = 1.0) -> Check:
    """SERVING on the upstream's overall health status, or raise."""
    stub = health_pb2_grpc.HealthStub(channel)

    async def check() -> object:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise ConnectionError("upstream is not SERVING")
        return reply

    return check


class KafkaCheck:
    """Asks the cluster for its metadata; reconnects from scratch after any failure."""

    def __init__(self, bootstrap_servers: str, *, request_timeout_ms: int = 1000) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._request_timeout_ms = request_timeout_ms
        self._client: AIOKafkaAdminClient | None = None

    async def __call__(self) -> dict[str, Any]:
        try:
            if self._client is None:
                client = AIOKafkaAdminClient(
                    bootstrap_servers=self._bootstrap_servers,
                    request_timeout_ms=self._request_timeout_ms,
                    client_id="payrail-probe",
                )
                self._client = client
                await client.start()
            result: dict[str, Any] = await self._client.describe_cluster()
            return result
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
