"""The gRPC server shell every payrail service runs in.

:func:`create_server` builds a ``grpc.aio`` server with the standard health service,
server reflection (v1 and v1alpha, :mod:`payrail_common.reflection`), the call guard
(malformed requests are INVALID_ARGUMENT, unmapped exceptions INTERNAL without their
text: :class:`~payrail_common.interceptors.CallGuard`)
and the metrics/access-log interceptor, binds it and returns it with
the bound port (port 0 picks a free one, which is how tests start services in-process).
:func:`serve` runs it until SIGTERM or SIGINT and then shuts down gracefully: health
turns NOT_SERVING first so load balancers stop sending, in-flight calls get a grace
period, then the service's own resources are closed.

Process-level tuning (:class:`ServerTuning`, set once by :mod:`payrail_common.runtime`
from the environment before the service builds its server): ``reuse_port`` lets several
worker processes of one service bind the same port (SO_REUSEPORT; the kernel spreads
incoming connections over them), and ``inflight_max`` bounds the unary calls one process
works on at once; beyond it a call is answered RESOURCE_EXHAUSTED at once (load
shedding) instead of queueing until every caller times out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from payrail_common.interceptors import CallGuard, InflightLimiter, observability_interceptor
from payrail_common.probes import DependencyMonitor
from payrail_common.reasons import Reason
from payrail_common.reflection import enable_reflection
from payrail_common.rpcerrors import abort
from payrail_common.supervision import supervision
from payrail_common.tracing import request_id_interceptor

log = logging.getLogger(__name__)

# Largest message a client may send; bounds memory per call.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


# Unary calls one server process works on at once before it sheds (RESOURCE_EXHAUSTED).
# A call admitted at the bound waits behind at most this many others, so the bound is
# roughly throughput x acceptable queueing: on the 2-core benchmark machine a process
# manages ~200 CreatePayment/s, and 64 keeps admitted calls within ~0.4 s under overload
# (256 let them queue for seconds; docs/performance.md). Normal load keeps a few in flight.
INFLIGHT_MAX_DEFAULT = 64

Registrar = Callable[[grpc.aio.Server], None]


@dataclass(frozen=True)
class ServerTuning:
    """How this process's servers are built; see the module docstring."""

    reuse_port: bool = False
    # 0 turns the in-flight bound off.
    inflight_max: int = INFLIGHT_MAX_DEFAULT


_tuning = ServerTuning()


def configure(tuning: ServerTuning) -> None:
    """Set the tuning for every server this process creates from now on."""
    global _tuning
    _tuning = tuning


def current_tuning() -> ServerTuning:
    return _tuning


class ListingHealthServicer(HealthServicer):  # type: ignore[misc]
    """The standard health service plus ``List`` (every entry and its status), so an
    operator's ``make status`` sees each dependency and supervised loop without knowing
    their names in advance. ``Check`` of a name it does not know answers NOT_FOUND, as
    the protocol says, with an ErrorInfo like every other payrail error."""

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self._server_status.get(request.service)
        if status is None:
            await abort(
                context, grpc.StatusCode.NOT_FOUND, "unknown service", reason=Reason.NOT_FOUND
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in sorted(self._server_status.items())
            }
        )


@dataclass
class ServerHandle:
    """A bound, not yet started server with its health servicer and port."""

    server: grpc.aio.Server
    health: HealthServicer
    port: int
    service_names: tuple[str, ...]
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    monitor: DependencyMonitor | None = None

    async def start(self) -> None:
        """Start serving; the overall status follows the dependency monitor, if any."""
        await self.server.start()
        for name in self.service_names:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.monitor is None:
            await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        else:
            await self.monitor.check_once()
            self.monitor.start()

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING first, then drain in-flight calls for grace_s, then close resources."""
        if self.monitor is not None:
            await self.monitor.stop()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        for close in reversed(self.on_stop):
            try:
                await close()
            except Exception:
                log.exception("error while closing a resource during shutdown")


def create_server(
    *,
    host: str,
    port: int,
    registrars: Iterable[Registrar],
    service_names: Sequence[str],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> ServerHandle:
    """Build a server with health, reflection and observability, bound to host:port."""
    tuning = _tuning
    # The guard is outermost, so nothing reaches a client past it: a malformed request is
    # refused before any other work, and an exception escaping the interceptors below it
    # (authentication...) is INTERNAL too. Then the request id, bound for every log line
    # the call causes (the guard's too) and sent back as a header. Then the limiter: a
    # shed call costs no authentication and no access log.
    limiter = [InflightLimiter(tuning.inflight_max)] if tuning.inflight_max > 0 else []
    server = grpc.aio.server(
        interceptors=[
            CallGuard(),
            request_id_interceptor(),
            *limiter,
            observability_interceptor(),
            *interceptors,
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # Off unless this service runs several worker processes: then a second,
            # unrelated process on the same port would silently share its traffic.
            ("grpc.so_reuseport", 1 if tuning.reuse_port else 0),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
        ],
    )
    for register in registrars:
        register(server)
    health = ListingHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    enable_reflection(
        (*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    return ServerHandle(
        server=server, health=health, port=bound, service_names=tuple(service_names)
    )


async def serve(handle: ServerHandle, *, grace_s: float) -> int:
    """Start the server and run until SIGTERM/SIGINT, then shut down gracefully.

    Returns the process's exit code: 0 after a signal, 1 when a supervised background loop
    kept failing past its bound (:mod:`payrail_common.supervision`) — the process then
    shuts down just as gracefully, and its own supervisor starts a fresh one.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fatal = supervision.fatal_event()
    await handle.start()
    log.info("serving", extra={"port": handle.port})
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(fatal.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    code = 0
    if fatal.is_set() and not stop.is_set():
        log.critical("giving up", extra={"reason": supervision.fatal_reason})
        code = 1
    log.info("shutting down", extra={"grace_s": grace_s})
    await handle.stop(grace_s)
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
    log.info("stopped", extra={"exit_code": code})
    return code
