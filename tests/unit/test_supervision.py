"""Supervised loops: restarted after a crash, counted, unhealthy and then fatal when they
keep failing; and what errors mean for a retry."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from aiokafka import errors as kafka_errors
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from redis import exceptions as redis_errors

from payrail_common.background import BackgroundLoop
from payrail_common.faults import Backoff, Fault, classify, dependency_of, describe
from payrail_common.grpcserver import create_server, serve
from payrail_common.probes import DependencyMonitor, Probe
from payrail_common.supervision import RestartPolicy, Supervision, supervised
from payrail_common.supervision import supervision as process_registry

FAST = RestartPolicy(
    backoff=Backoff(base_s=0.001, max_s=0.002),
    healthy_run_s=60.0,
    failures_unhealthy=2,
    failures_fatal=4,
)


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata())


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (rpc_error(grpc.StatusCode.UNAVAILABLE), Fault.TRANSIENT),
        (rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED), Fault.TRANSIENT),
        (rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED), Fault.TRANSIENT),
        (rpc_error(grpc.StatusCode.FAILED_PRECONDITION), Fault.PERMANENT),
        (rpc_error(grpc.StatusCode.INVALID_ARGUMENT), Fault.PERMANENT),
        (rpc_error(grpc.StatusCode.INTERNAL), Fault.UNKNOWN),
        (asyncpg.exceptions.AdminShutdownError(), Fault.TRANSIENT),
        (asyncpg.exceptions.CannotConnectNowError(), Fault.TRANSIENT),
        (asyncpg.exceptions.SerializationError(), Fault.TRANSIENT),
        (asyncpg.exceptions.ConnectionDoesNotExistError(), Fault.TRANSIENT),
        (asyncpg.exceptions.UniqueViolationError(), Fault.PERMANENT),
        (asyncpg.exceptions.CheckViolationError(), Fault.PERMANENT),
        (kafka_errors.KafkaConnectionError(), Fault.TRANSIENT),
        (kafka_errors.KafkaTimeoutError(), Fault.TRANSIENT),
        (kafka_errors.NotEnoughReplicasError(), Fault.TRANSIENT),
        (kafka_errors.MessageSizeTooLargeError(), Fault.PERMANENT),
        (redis_errors.ConnectionError(), Fault.TRANSIENT),
        (ConnectionRefusedError(), Fault.TRANSIENT),
        (TimeoutError(), Fault.TRANSIENT),
        (KeyError("x"), Fault.UNKNOWN),
    ],
)
def test_errors_are_classified_by_what_they_mean(error: BaseException, fault: Fault) -> None:
    assert classify(error) is fault


def test_the_dependency_and_description_of_an_error_carry_no_message_text() -> None:
    assert dependency_of(asyncpg.exceptions.AdminShutdownError()) == "postgres"
    assert dependency_of(kafka_errors.KafkaConnectionError()) == "kafka"
    assert dependency_of(rpc_error(grpc.StatusCode.UNAVAILABLE), grpc_upstream="x") == "x"
    error = asyncpg.exceptions.UniqueViolationError("secret detail 4111111111111111")
    assert describe(error) == "UniqueViolationError (SQLSTATE 23505)"


@pytest.mark.asyncio
async def test_a_crashing_loop_is_restarted_and_counted() -> None:
    registry = Supervision()
    runs = 0
    done = asyncio.Event()

    async def run() -> None:
        nonlocal runs
        runs += 1
        if runs < 2:
            raise RuntimeError("boom")
        done.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(supervised("demo", run, policy=FAST, registry=registry))
    await asyncio.wait_for(done.wait(), timeout=5)
    assert runs == 2
    assert registry.unhealthy_loops() == []
    assert not registry.fatal_event().is_set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert registry.loop_names() == []


@pytest.mark.asyncio
async def test_a_loop_that_keeps_failing_turns_health_down_then_gives_up() -> None:
    registry = Supervision()
    health = HealthServicer()
    monitor = DependencyMonitor(health, [], loops=registry)
    unhealthy_seen = asyncio.Event()

    class Broken(BackgroundLoop):
        task_name = "broken"
        restart_policy = FAST

        async def _run(self) -> None:
            if registry.unhealthy_loops():
                unhealthy_seen.set()
            raise ValueError("always")

    loop = Broken()
    loop.registry = registry
    loop.start()
    await asyncio.wait_for(registry.fatal_event().wait(), timeout=5)
    assert unhealthy_seen.is_set()
    assert "broken" in registry.fatal_reason
    assert await monitor.check_once() is False
    reply = await health.Check(health_pb2.HealthCheckRequest(service="payrail.loop.broken"), None)
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    await loop.stop()


@pytest.mark.asyncio
async def test_a_dependency_a_loop_waits_for_shows_degraded_even_when_its_probe_passes() -> None:
    registry = Supervision(degraded_hold_s=60)
    health = HealthServicer()

    async def ok() -> None:
        return None

    monitor = DependencyMonitor(
        health, [Probe("payment_svc", ok), Probe("redis", ok, essential=False)], loops=registry
    )
    assert await monitor.check_once() is True
    registry.degrade("payment_svc")
    registry.degrade("kafka")
    assert await monitor.check_once() is False
    for name, expected in (
        ("payrail.dependency.payment_svc", health_pb2.HealthCheckResponse.NOT_SERVING),
        ("payrail.dependency.kafka", health_pb2.HealthCheckResponse.NOT_SERVING),
        ("payrail.dependency.redis", health_pb2.HealthCheckResponse.SERVING),
    ):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name), None)
        assert reply.status == expected, name


@pytest.mark.asyncio
async def test_a_loop_that_returns_because_its_owner_stops_it_is_not_restarted() -> None:
    registry = Supervision()
    runs = 0
    stopping = False

    async def run() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            nonlocal stopping
            stopping = True
        await asyncio.sleep(0)

    await asyncio.wait_for(
        supervised("owned", run, policy=FAST, registry=registry, stopping=lambda: stopping),
        timeout=5,
    )
    assert runs == 2  # the first return was unexpected (restarted), the second was not
    assert registry.loop_names() == []


@pytest.mark.asyncio
async def test_the_server_shuts_down_and_exits_1_when_a_loop_gives_up() -> None:
    process_registry.reset()
    handle = create_server(host="127.0.0.1", port=0, registrars=[], service_names=())

    class Doomed(BackgroundLoop):
        task_name = "doomed"
        restart_policy = FAST

        async def _run(self) -> None:
            raise RuntimeError("cannot recover")

    loop = Doomed()
    handle.on_stop.append(loop.stop)
    loop.start()
    try:
        assert await asyncio.wait_for(serve(handle, grace_s=0.1), timeout=10) == 1
    finally:
        process_registry.reset()
