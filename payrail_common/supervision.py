"""Supervised background work: a loop that dies is logged, counted, restarted — never silent.

Every long-running task of a service (consumer loops, the janitor, the outbox relay, the
dependency monitor, ...) runs under :func:`supervised`. An unexpected exception is logged
with its traceback, counted in ``payrail_loop_failures_total``, and the loop is started
again after a capped, jittered backoff. Consecutive failures (a run shorter than
``RestartPolicy.healthy_run_s`` does not reset the count) escalate:

* ``failures_unhealthy`` in a row: the loop's health entry ``payrail.loop.<name>`` and the
  process's overall health turn NOT_SERVING (a load balancer or operator sees it);
* ``failures_fatal`` in a row: the process gives up — :class:`Supervision` fires its fatal
  event, the server shuts down gracefully and exits non-zero, and the process supervisor
  (supervisord locally, the orchestrator in production) starts a fresh process.

A loop waiting for a dependency is not failing: it reports the dependency *degraded*
(:meth:`Supervision.degrade`) for as long as it waits, and the dependency monitor shows
``payrail.dependency.<name>`` NOT_SERVING meanwhile, even when a trivial probe passes.

One :data:`supervision` per process: loops are built in many places and the health
service is built in one; this module-level registry is what joins them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

from payrail_common.faults import Backoff

__all__ = ["LoopState", "RestartPolicy", "Supervision", "supervised", "supervision"]

log = logging.getLogger(__name__)

LOOP_FAILURES = Counter(
    "payrail_loop_failures_total",
    "Unexpected ends of a supervised background loop (each one is restarted).",
    ["loop"],
)
LOOP_UP = Gauge(
    "payrail_loop_up", "1 while the supervised loop runs without repeated failures.", ["loop"]
)
DEPENDENCY_WAITING = Gauge(
    "payrail_dependency_waiting",
    "1 while some loop of this process waits for the dependency to come back.",
    ["dependency"],
)


@dataclass(frozen=True)
class RestartPolicy:
    """How a supervised loop is restarted and when its failures escalate."""

    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, max_s=15.0))
    # A run at least this long counts as healthy: the consecutive-failure count restarts.
    healthy_run_s: float = 60.0
    failures_unhealthy: int = 3
    failures_fatal: int = 10


@dataclass
class LoopState:
    failures: int = 0
    last_error: str = ""

    def healthy(self, policy: RestartPolicy) -> bool:
        return self.failures < policy.failures_unhealthy


class Supervision:
    """The process's view of its supervised loops and of the dependencies they wait for."""

    def __init__(self, *, degraded_hold_s: float = 5.0) -> None:
        self._loops: dict[str, LoopState] = {}
        self._policies: dict[str, RestartPolicy] = {}
        self._waiting: dict[str, float] = {}
        self._degraded_hold_s = degraded_hold_s
        self._fatal: asyncio.Event | None = None
        self.fatal_reason = ""

    # ---------------------------------------------------------------- loops
    def loop_started(self, name: str, policy: RestartPolicy) -> None:
        self._loops.setdefault(name, LoopState())
        self._policies[name] = policy
        LOOP_UP.labels(name).set(1)

    def loop_failed(self, name: str, error: str, *, ran_s: float) -> LoopState:
        state = self._loops.setdefault(name, LoopState())
        policy = self._policies.get(name, RestartPolicy())
        state.failures = 1 if ran_s >= policy.healthy_run_s else state.failures + 1
        state.last_error = error
        LOOP_FAILURES.labels(name).inc()
        LOOP_UP.labels(name).set(1 if state.healthy(policy) else 0)
        if state.failures >= policy.failures_fatal:
            self.fatal_reason = f"loop {name} failed {state.failures} times in a row: {error}"
            self.fatal_event().set()
        return state

    def loop_stopped(self, name: str) -> None:
        self._loops.pop(name, None)
        self._policies.pop(name, None)

    def unhealthy_loops(self) -> list[str]:
        return [
            name
            for name, state in self._loops.items()
            if not state.healthy(self._policies.get(name, RestartPolicy()))
        ]

    def loop_names(self) -> list[str]:
        return sorted(self._loops)

    def fatal_event(self) -> asyncio.Event:
        if self._fatal is None:
            self._fatal = asyncio.Event()
        return self._fatal

    # ---------------------------------------------------------------- dependencies
    def degrade(self, dependency: str) -> None:
        """``dependency`` failed a real call just now; someone is waiting for it."""
        self._waiting[dependency] = time.monotonic()
        DEPENDENCY_WAITING.labels(dependency).set(1)

    def degraded(self) -> set[str]:
        """Dependencies some loop waited for within the last ``degraded_hold_s``."""
        now = time.monotonic()
        for name, when in list(self._waiting.items()):
            if now - when > self._degraded_hold_s:
                del self._waiting[name]
                DEPENDENCY_WAITING.labels(name).set(0)
        return set(self._waiting)

    def reset(self) -> None:
        """Forget everything (tests, and a process that builds a second server)."""
        self._loops.clear()
        self._policies.clear()
        self._waiting.clear()
        self._fatal = None
        self.fatal_reason = ""


supervision = Supervision()


async def supervised(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    policy: RestartPolicy | None = None,
    registry: Supervision | None = None,
    stopping: Callable[[], bool] | None = None,
) -> None:
    """Run ``run()`` until cancelled, restarting it after every unexpected end.

    ``stopping`` tells an expected end from an unexpected one, for a loop that returns
    by itself when its owner stops it (rather than being cancelled).
    """
    policy = policy or RestartPolicy()
    registry = registry or supervision
    registry.loop_started(name, policy)
    gave_up = False
    try:
        while True:
            started = time.monotonic()
            try:
                await run()
                if stopping is not None and stopping():
                    return
                error = "returned"
                log.error("background loop ended unexpectedly; restarting", extra={"loop": name})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = type(exc).__name__
                log.exception(
                    "background loop failed; restarting", extra={"loop": name, "error": error}
                )
            state = registry.loop_failed(name, error, ran_s=time.monotonic() - started)
            if state.failures >= policy.failures_fatal:
                log.critical(
                    "background loop keeps failing; the process gives up",
                    extra={"loop": name, "failures": state.failures},
                )
                gave_up = True
                return
            await policy.backoff.sleep(state.failures)
    finally:
        if not gave_up:  # a loop that gave up stays on the books as unhealthy
            registry.loop_stopped(name)
