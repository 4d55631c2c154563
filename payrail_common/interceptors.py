"""Server interceptors for cross-cutting concerns, and the one helper that wraps handlers.

grpc.aio interceptors see a method handler, not the call; to act around the call itself
(time it, authenticate it, bind the caller to a context variable) the handler's behaviour
is wrapped. :func:`wrap_handler` does that once for unary and server-streaming RPCs, with
an async context manager factory that runs in the RPC's own task.

:class:`CallGuard`, the outermost interceptor of every server, is the last word on what a
client hears: bytes that are not the request message are INVALID_ARGUMENT (grpc itself
would answer UNKNOWN naming the parser's exception class), and an exception nothing else
mapped is INTERNAL with a fixed message, its traceback only in the server's log.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from payrail_common.fields import FieldViolation
from payrail_common.reasons import Reason
from payrail_common.rpcerrors import INTERNAL_MESSAGE, abort

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


def _code_name(context: Any, failure: str | None) -> str:
    code = context.code()
    if code is None:
        return failure or "OK"
    return str(code.name) if isinstance(code, grpc.StatusCode) else str(code)


@asynccontextmanager
async def observe(method: str, context: Any) -> AsyncIterator[None]:
    """Count, time and log one RPC."""
    started = time.perf_counter()
    # What the caller hears when the call ends without a status of its own: the guard
    # turns an unmapped exception into INTERNAL.
    failure: str | None = "INTERNAL"
    try:
        yield
        failure = None
    except asyncio.CancelledError:
        failure = "CANCELLED"
        raise
    finally:
        code = _code_name(context, failure)
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
# RetryInfo's delay on a shed call: long enough for the calls in flight to finish.
SHED_RETRY_S = 0.5


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
                await abort(
                    context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    SHED_DETAILS,
                    reason=Reason.SERVER_OVERLOADED,
                    retry_after_s=SHED_RETRY_S,
                )
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


# ---------------------------------------------------------------- the call guard

RPC_MALFORMED = Counter(
    "payrail_grpc_server_malformed_total",
    "Calls refused INVALID_ARGUMENT because their bytes were not the request message.",
    ["grpc_method"],
)


class _Undecodable:
    """What a guarded deserializer returns for bytes its message type cannot parse."""

    __slots__ = ("message_name",)

    def __init__(self, message_name: str) -> None:
        self.message_name = message_name


def _message_name(deserializer: Callable[[bytes], Any]) -> str:
    """``payrail.auth.v1.LoginRequest`` for ``LoginRequest.FromString``; "" if unknown."""
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", ""))


def _guarded(
    deserializer: Callable[[bytes], Any] | None,
) -> Callable[[bytes], Any] | None:
    if deserializer is None:  # raw bytes (the edge's forwarder): nothing to parse
        return None
    name = _message_name(deserializer)

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            # grpc would answer UNKNOWN with the exception's class and text; the
            # behaviour answers instead, once it runs with the call's context.
            return _Undecodable(name)

    return deserialize


async def _refuse_malformed(method: str, request: _Undecodable, context: Any) -> None:
    RPC_MALFORMED.labels(method).inc()
    log.info("malformed request", extra={"method": method})
    what = request.message_name or "the request message"
    await abort(
        context,
        grpc.StatusCode.INVALID_ARGUMENT,
        "the request is not a valid serialized protobuf message",
        violations=[FieldViolation("", f"could not be parsed as {what}")],
        reason=Reason.MALFORMED_REQUEST,
    )


@asynccontextmanager
async def _unexpected_to_internal(method: str, context: Any) -> AsyncIterator[None]:
    """Whatever escaped every mapping becomes INTERNAL without its text."""
    try:
        yield
    except grpc.aio.AbortError:
        raise  # the call already has its status
    except Exception:
        log.exception("unhandled error in an RPC", extra={"method": method})
        await abort(
            context, grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, reason=Reason.INTERNAL_ERROR
        )


class CallGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The outermost interceptor of every payrail server (see the module docstring).

    It guards every method, health and reflection included, and every kind of RPC: a
    stream of requests is checked message by message as the servicer reads it.
    """

    async def intercept_service(self, continuation: Continuation, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        deserialize = _guarded(handler.request_deserializer)
        serialize = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary), deserialize, serialize
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(method, handler.unary_stream), deserialize, serialize
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream_stream(method, handler.stream_stream), deserialize, serialize
            )
        return grpc.stream_unary_rpc_method_handler(
            self._stream_unary(method, handler.stream_unary), deserialize, serialize
        )

    @staticmethod
    def _unary(method: str, inner: Any) -> Any:
        async def unary(request: Any, context: Any) -> Any:
            if isinstance(request, _Undecodable):
                await _refuse_malformed(method, request, context)
            async with _unexpected_to_internal(method, context):
                return await inner(request, context)

        return unary

    @staticmethod
    def _unary_stream(method: str, inner: Any) -> Any:
        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if isinstance(request, _Undecodable):
                await _refuse_malformed(method, request, context)
            async with _unexpected_to_internal(method, context):
                result = inner(request, context)
                if inspect.isawaitable(result):  # a behaviour that writes to the context
                    await result
                    return
                async for item in result:
                    yield item

        return stream

    @staticmethod
    def _checked(method: str, requests: AsyncIterable[Any], context: Any) -> AsyncIterator[Any]:
        async def checked() -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, _Undecodable):
                    await _refuse_malformed(method, request, context)
                yield request

        return checked()

    @classmethod
    def _stream_stream(cls, method: str, inner: Any) -> Any:
        async def stream(requests: AsyncIterable[Any], context: Any) -> AsyncIterator[Any]:
            async with _unexpected_to_internal(method, context):
                result = inner(cls._checked(method, requests, context), context)
                if inspect.isawaitable(result):
                    await result
                    return
                async for item in result:
                    yield item

        return stream

    @classmethod
    def _stream_unary(cls, method: str, inner: Any) -> Any:
        async def unary(requests: AsyncIterable[Any], context: Any) -> Any:
            async with _unexpected_to_internal(method, context):
                return await inner(cls._checked(method, requests, context), context)

        return unary
