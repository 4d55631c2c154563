"""Dependency probes that drive the gRPC health service.

Each :class:`Probe` checks one dependency (PostgreSQL, Redis, Kafka, an upstream gRPC
service) with a timeout. :class:`DependencyMonitor` runs them on an interval and
publishes the result on the health service under ``payrail.dependency.<name>``; the
overall status (service name "") is SERVING only while every *essential* probe passes.
A non-essential dependency (Kafka for payment_svc, whose outbox absorbs outages) shows as
degraded under its own name without taking the service out of rotation.

A trivial probe can pass while real work fails (a broker that answers metadata but cannot
take writes, an upstream whose health is SERVING but whose calls time out). So the
monitor also folds in what the process's supervised loops report
(:mod:`payrail_common.supervision`): a dependency some loop is waiting for shows
NOT_SERVING too, each supervised loop has an entry ``payrail.loop.<name>``, and a loop
that keeps failing takes the overall status down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from prometheus_client import Gauge

from payrail_common.background import BackgroundLoop
from payrail_common.supervision import Supervision, supervision

log = logging.getLogger(__name__)

DEPENDENCY_UP = Gauge(
    "payrail_dependency_up", "1 while the dependency's last probe passed.", ["dependency"]
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class Probe:
    """A named check; raises (or times out) when the dependency is unusable."""

    name: str
    check: Callable[[], Awaitable[object]]
    essential: bool = True


def health_name(probe_name: str) -> str:
    return f"payrail.dependency.{probe_name}"


def loop_health_name(loop_name: str) -> str:
    return f"payrail.loop.{loop_name}"


class DependencyMonitor(BackgroundLoop):
    """Runs probes every interval_s and mirrors their results into the health service."""

    task_name = "dependency-monitor"

    def __init__(
        self,
        health: HealthServicer,
        probes: Sequence[Probe],
        *,
        interval_s: float = 2.0,
        timeout_s: float = 1.5,
        loops: Supervision | None = None,
    ) -> None:
        self._loops = loops or supervision
        self._health = health
        self._probes = tuple(probes)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._up: dict[str, bool] = {}

    @property
    def status(self) -> dict[str, bool]:
        """Last result per probe name."""
        return dict(self._up)

    async def _run_one(self, probe: Probe) -> bool:
        try:
            await asyncio.wait_for(probe.check(), timeout=self._timeout_s)
        except Exception as exc:  # any failure means "down"; the reason goes to the log
            if self._up.get(probe.name, True):
                log.warning(
                    "dependency down",
                    extra={"dependency": probe.name, "error": type(exc).__name__},
                )
            return False
        if self._up.get(probe.name) is False:
            log.info("dependency recovered", extra={"dependency": probe.name})
        return True

    async def check_once(self) -> bool:
        """Probe everything now; return whether every essential probe passed."""
        probed = await asyncio.gather(*(self._run_one(p) for p in self._probes))
        waiting = self._loops.degraded()
        results = [
            ok and probe.name not in waiting for probe, ok in zip(self._probes, probed, strict=True)
        ]
        for probe, ok in zip(self._probes, results, strict=True):
            self._up[probe.name] = ok
            DEPENDENCY_UP.labels(probe.name).set(1 if ok else 0)
            await self._health.set(health_name(probe.name), SERVING if ok else NOT_SERVING)
        for name in waiting - {probe.name for probe in self._probes}:
            await self._health.set(health_name(name), NOT_SERVING)
        failing = set(self._loops.unhealthy_loops())
        for name in self._loops.loop_names():
            status = NOT_SERVING if name in failing else SERVING
            await self._health.set(loop_health_name(name), status)
        healthy = not failing and all(
            ok for probe, ok in zip(self._probes, results, strict=True) if probe.essential
        )
        await self._health.set("", SERVING if healthy else NOT_SERVING)
        return healthy

    async def wait_ready(self, names: Sequence[str], timeout_s: float) -> None:
        """Probe until the named dependencies all pass; TimeoutError names the failing ones.

        Services wait at start-up for the stores they cannot serve without; upstream
        services are not waited for (start order must not matter), only reported.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            await self.check_once()
            down = [name for name in names if not self._up.get(name)]
            if not down:
                return
            if loop.time() >= deadline:
                raise TimeoutError(f"dependencies not ready after {timeout_s:.0f} s: {down}")
            await asyncio.sleep(min(0.5, self._interval_s))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check_once()
