"""The process entry point shared by every service's ``__main__``.

Reads the settings, configures logging, starts the Prometheus endpoint, lets the
service's composition root build its server, and serves until SIGTERM/SIGINT. A failure
to start (bad configuration, a dependency that never came up, a port in use) is one
clear log line and exit code 1, not a stack trace on the console.

Worker processes: with ``PAYRAIL_<SERVICE>_WORKERS=N`` (e.g. ``PAYRAIL_PAYMENT_WORKERS``;
default 1) the process started as ``python -m <service>`` starts N-1 more copies of
itself and all N serve the same port through SO_REUSEPORT, so a service can use more
than one core. The first process is worker 0 and the parent of the others; they share
its process group (``services.sh down`` signals the whole group) and it stops them when
it stops. Worker i > 0 serves its Prometheus metrics on ``metrics_port + 100 * i``.
Every worker is a complete copy of the service (its own pools, its own outbox relay or
consumers), which is what the services are built for: several relays split the outbox
with SKIP LOCKED, consumers of one group split the partitions.

Also read here, per service: ``PAYRAIL_<SERVICE>_INFLIGHT_MAX`` (unary calls in flight
per process before the server sheds with RESOURCE_EXHAUSTED; default
:data:`~payrail_common.grpcserver.INFLIGHT_MAX_DEFAULT`, 0 = no bound) and
``PAYRAIL_UVLOOP`` (``1`` runs the event loop on uvloop when it is installed; default
off, because it did not measurably help; see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from prometheus_client import start_http_server

from payrail_common.config import ConfigError, env_bool, env_int
from payrail_common.grpcserver import (
    INFLIGHT_MAX_DEFAULT,
    ServerHandle,
    ServerTuning,
    configure,
    serve,
)
from payrail_common.logs import configure_logging

log = logging.getLogger(__name__)

WORKERS_MAX = 64
# Set by worker 0 in the environment of the workers it starts.
WORKER_INDEX_ENV = "PAYRAIL_WORKER_INDEX"
# How much longer than its own grace worker 0 waits for the others to stop.
_CHILD_STOP_MARGIN_S = 5.0


class ServiceSettings(Protocol):
    """What the runtime needs from any service's settings."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def metrics_port(self) -> int: ...
    @property
    def shutdown_grace_s(self) -> int: ...
    @property
    def log_level(self) -> str: ...


S = TypeVar("S", bound=ServiceSettings)


@dataclass(frozen=True)
class ProcessSettings:
    """Process-level settings of one service, read once from the environment."""

    workers: int = 1
    worker_index: int = 0
    inflight_max: int = INFLIGHT_MAX_DEFAULT
    uvloop: bool = False

    @classmethod
    def from_env(cls, name: str, env: Mapping[str, str] | None = None) -> ProcessSettings:
        prefix = f"PAYRAIL_{name.removesuffix('_svc').upper()}"
        d = cls()
        return cls(
            workers=env_int(
                f"{prefix}_WORKERS", d.workers, minimum=1, maximum=WORKERS_MAX, env=env
            ),
            worker_index=env_int(WORKER_INDEX_ENV, 0, minimum=0, maximum=WORKERS_MAX, env=env),
            inflight_max=env_int(f"{prefix}_INFLIGHT_MAX", d.inflight_max, minimum=0, env=env),
            uvloop=env_bool("PAYRAIL_UVLOOP", d.uvloop, env),
        )


def _start_workers(name: str, count: int) -> list[subprocess.Popen[bytes]]:
    """Start workers 1..count-1: this same command line, with their index set."""
    children = []
    for index in range(1, count):
        env = {**os.environ, WORKER_INDEX_ENV: str(index)}
        # sys.orig_argv is the interpreter's own command line (`python -m <service>`).
        children.append(subprocess.Popen(sys.orig_argv, env=env))
        log.info("worker started", extra={"service": name, "worker": index})
    return children


def _watch_workers(children: list[subprocess.Popen[bytes]], stopping: threading.Event) -> None:
    """Log a worker that dies while the service is running (in a daemon thread)."""

    def watch(child: subprocess.Popen[bytes]) -> None:
        code = child.wait()
        if not stopping.is_set():
            log.error("worker exited", extra={"pid": child.pid, "exit_code": code})

    for child in children:
        threading.Thread(target=watch, args=(child,), daemon=True).start()


def _stop_workers(children: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)


def _run_loop(main: Callable[[], Coroutine[Any, Any, None]], use_uvloop: bool) -> None:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            log.warning("PAYRAIL_UVLOOP set but uvloop is not installed; using asyncio")
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())
            return
    asyncio.run(main())


def run_service(
    name: str, load: Callable[[], S], build: Callable[[S], Awaitable[ServerHandle]]
) -> int:
    """Run one service process to completion; return its exit code."""
    try:
        settings = load()
        process = ProcessSettings.from_env(name)
    except ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    configure_logging(name, settings.log_level)
    workers = process.workers
    if workers > 1 and settings.port == 0:
        log.warning("several workers need a fixed port; running one", extra={"workers": workers})
        workers = 1
    configure(ServerTuning(reuse_port=workers > 1, inflight_max=process.inflight_max))

    exit_code = 0

    async def main() -> None:
        nonlocal exit_code
        handle = await build(settings)
        exit_code = await serve(handle, grace_s=settings.shutdown_grace_s)

    children: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()
    try:
        if process.worker_index == 0 and workers > 1:
            children = _start_workers(name, workers)
            _watch_workers(children, stopping)
        metrics_port = settings.metrics_port
        if metrics_port and process.worker_index:
            metrics_port += 100 * process.worker_index
        if metrics_port:
            start_http_server(metrics_port, addr=settings.host)
        _run_loop(main, process.uvloop)
    except (ConfigError, TimeoutError, OSError) as exc:
        log.error("failed to start", extra={"error": str(exc)})
        return 1
    finally:
        stopping.set()
        _stop_workers(children, settings.shutdown_grace_s + _CHILD_STOP_MARGIN_S)
    return exit_code
