"""Server interceptors for cross-cutting concerns, and the one helper that wraps handlers.

grpc.aio interceptors see a method handler, not the call; to act around the call itself
(time it, authenticate it, bind the caller to a context variable) the handler's behaviour
is wrapped. :func:`wrap_handler` does that once for unary and server-streaming RPCs, with
an async context manager factory that runs in the RPC's own task.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger(__name__)

Around = Callable[[str, Any], AbstractAsyncContextManager[None]]
Continuation = Callable[[Any], Awaitable[Any]]

# Infrastructure RPCs that are neither measured, logged nor authenticated.
INFRA_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

# A successful call this slow is logged at INFO; faster ones only at DEBUG.
SLOW_RPC_S = 0.5

RPC_TOTAL = Counter(
    "payrail_grpc_server_handled_total",
    "RPCs completed by the server, by method and status code.",
    ["grpc_method", "grpc_code"],
)
RPC_SECONDS = Histogram(
    "payrail_grpc_server_handling_seconds",
    "Server-side RPC latency in seconds, by method.",
    ["grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def wrap_handler(handler: Any, method: str, around: Around) -> Any:
    """The same handler, its behaviour run inside ``around(method, context)``."""
    if handler.unary_unary is not None:
        inner_unary = handler.unary_unary

        async def unary(request: Any, context: Any) -> Any:
            async with around(method, context):
                return await inner_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        inner_stream = handler.unary_stream

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            async with around(method, context):
                result = inner_stream(request, context)
                # A streaming behaviour may also be a coroutine that writes or aborts.
                if inspect.isawaitable(result):
                    await result
                    return
                async for item in result:
                    yield item

        return grpc.unary_stream_rpc_method_handler(
            stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler  # client streaming: payrail defines none


class AroundInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Runs every non-infrastructure RPC (optionally only ``methods``) inside ``around``."""

    def __init__(self, around: Around, methods: frozenset[str] | None = None) -> None:
        self._around = around
        self._methods = methods

    async def intercept_service(self, continuation: Continuation, details: Any) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(INFRA_PREFIXES):
            return handler
        if self._methods is not None and method not in self._methods:
            return handler
        return wrap_handler(handler, method, self._around)


def _code_name(context: Any, failed: bool) -> str:
    code = context.code()
    if code is None:
        return "UNKNOWN" if failed else "OK"
    return str(code.name) if isinstance(code, grpc.StatusCode) else str(code)


@asynccontextmanager
async def observe(method: str, context: Any) -> AsyncIterator[None]:
    """Count, time and log one RPC."""
    started = time.perf_counter()
    failed = True
    try:
        yield
        failed = False
    finally:
        code = _code_name(context, failed)
        elapsed = time.perf_counter() - started
        RPC_TOTAL.labels(method, code).inc()
        RPC_SECONDS.labels(method).observe(elapsed)
        # Every call is counted and timed above; the log line is for the ones worth a look
        # (failed or slow). A line per successful call costs each service a formatted,
        # redacted, written JSON record per request (a few % of its CPU at load) and says
        # nothing the metrics do not; PAYRAIL_LOG_LEVEL=DEBUG brings them back.
        level = logging.INFO if code != "OK" or elapsed >= SLOW_RPC_S else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(
                level, "rpc", extra={"method": method, "code": code, "ms": round(elapsed * 1000, 2)}
            )


def observability_interceptor() -> AroundInterceptor:
    return AroundInterceptor(observe)


RPC_SHED = Counter(
    "payrail_grpc_server_shed_total",
    "Unary RPCs answered RESOURCE_EXHAUSTED because the process had inflight_max in flight.",
    ["grpc_method"],
)
INFLIGHT = Gauge("payrail_grpc_server_inflight", "Unary RPCs this process is working on right now.")
SHED_DETAILS = "server busy: too many calls in flight; retry with backoff"


class InflightLimiter(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Load shedding: at most ``inflight_max`` unary calls in flight in this process.

    A call beyond the bound is answered RESOURCE_EXHAUSTED at once, before any
    authentication or work, so an overloaded process spends its time on the calls it
    admitted (which then finish within their deadlines) instead of queueing every call
    until all of them time out. Streaming calls (WatchPayment) are long-lived and are
    not counted; infrastructure calls (health, reflection) are never shed.
    """

    def __init__(self, inflight_max: int) -> None:
        if inflight_max < 1:
            raise ValueError(f"inflight_max must be >= 1, got {inflight_max}")
        self._max = inflight_max
        self._inflight = 0

    @property
    def inflight(self) -> int:
        return self._inflight

    async def intercept_service(self, continuation: Continuation, details: Any) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or handler.unary_unary is None or method.startswith(INFRA_PREFIXES):
            return handler
        inner = handler.unary_unary

        async def limited(request: Any, context: Any) -> Any:
            if self._inflight >= self._max:
                RPC_SHED.labels(method).inc()
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, SHED_DETAILS)
            self._inflight += 1
            INFLIGHT.set(self._inflight)
            try:
                return await inner(request, context)
            finally:
                self._inflight -= 1
                INFLIGHT.set(self._inflight)

        return grpc.unary_unary_rpc_method_handler(
            limited,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
