"""DependencyMonitor drives the health service from probe results."""

from __future__ import annotations

import asyncio

import pytest
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from payrail_common.grpcserver import ListingHealthServicer
from payrail_common.probes import DependencyMonitor, Probe

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Switch:
    def __init__(self, up: bool) -> None:
        self.up = up

    async def __call__(self) -> None:
        if not self.up:
            raise ConnectionError("down")


async def status(health: HealthServicer, name: str) -> int:
    reply = await health.Check(health_pb2.HealthCheckRequest(service=name), None)
    return int(reply.status)


@pytest.mark.asyncio
async def test_non_essential_outage_degrades_without_taking_service_down() -> None:
    health = HealthServicer()
    db, kafka = Switch(True), Switch(False)
    monitor = DependencyMonitor(
        health, [Probe("postgres", db), Probe("kafka", kafka, essential=False)]
    )
    assert await monitor.check_once() is True
    assert await status(health, "") == SERVING
    assert await status(health, "payrail.dependency.kafka") == NOT_SERVING

    db.up = False
    assert await monitor.check_once() is False
    assert await status(health, "") == NOT_SERVING
    assert monitor.status == {"postgres": False, "kafka": False}

    db.up = kafka.up = True
    await monitor.check_once()
    assert await status(health, "") == SERVING
    assert await status(health, "payrail.dependency.kafka") == SERVING


@pytest.mark.asyncio
async def test_a_hanging_probe_times_out_as_down() -> None:
    async def hang() -> None:
        await asyncio.sleep(60)

    monitor = DependencyMonitor(HealthServicer(), [Probe("slow", hang)], timeout_s=0.05)
    assert await monitor.check_once() is False


@pytest.mark.asyncio
async def test_wait_ready_names_what_is_missing() -> None:
    monitor = DependencyMonitor(
        HealthServicer(), [Probe("redis", Switch(False))], interval_s=0.01, timeout_s=0.01
    )
    with pytest.raises(TimeoutError, match="redis"):
        await monitor.wait_ready(("redis",), timeout_s=0.05)


@pytest.mark.asyncio
async def test_health_list_shows_every_dependency_and_loop_entry() -> None:
    health = ListingHealthServicer()
    await health.set("payrail.dependency.kafka", NOT_SERVING)
    await health.set("payrail.loop.janitor", SERVING)
    reply = await health.List(health_pb2.HealthListRequest(), None)
    assert {name: s.status for name, s in reply.statuses.items()} == {
        "": SERVING,
        "payrail.dependency.kafka": NOT_SERVING,
        "payrail.loop.janitor": SERVING,
    }
