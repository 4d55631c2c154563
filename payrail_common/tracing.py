"""Request ids: one id per client request, carried into every log line the request causes.

A request id is bound (a context variable) for the duration of whatever a request
causes in one process: the RPC that received it, the Kafka record that carried it on,
the outbox row written on its behalf. It travels

* between processes over gRPC as the ``x-request-id`` metadata key (the edge takes the
  client's own id when it is well-formed, otherwise makes one, and every payrail server
  sends it back as a response header so a client can quote it);
* over Kafka as the ``x-request-id`` record header (the outbox stores it with the row,
  the relay publishes it, every consumer binds it while it handles the record, and
  whatever the record causes — an RPC, another record — carries it on);
* into logs as the ``request_id`` field of every JSON line (:class:`RequestIdFilter`).

Work nobody requested (a janitor pass, a re-drive) binds an id of its own, so its lines
can be grouped too. The id is an opaque token for correlation, never an authority: it is
validated for shape (at most 64 visible characters of a small set) and nothing else.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc

__all__ = [
    "REQUEST_ID_KEY",
    "RequestIdClientInterceptor",
    "RequestIdFilter",
    "accept",
    "bind",
    "bind_from_headers",
    "current",
    "kafka_headers",
    "new_request_id",
    "request_id_interceptor",
    "send_response_headers",
    "send_response_headers_quietly",
]

# The gRPC metadata key and the Kafka header name.
REQUEST_ID_KEY = "x-request-id"
REQUEST_ID_MAX_CHARS = 64
_WELL_FORMED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


@dataclass
class _Bound:
    request_id: str
    # Whether this RPC's response headers went out (a header can only be sent once).
    headers_sent: bool = False


_CURRENT: ContextVar[_Bound | None] = ContextVar("payrail_request_id", default=None)


def new_request_id(prefix: str = "") -> str:
    """A fresh id: a UUID in its dashed form, after ``prefix`` (e.g. "janitor-") when
    given. Dashed, because the log filter that masks card numbers leaves UUIDs alone but
    would mask a run of twelve or more digits inside 32 bare hex digits."""
    return f"{prefix}{uuid.uuid4()}"


def accept(value: str | bytes | None) -> str | None:
    """``value`` if it is a well-formed request id, else None (then make a new one)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if _WELL_FORMED.fullmatch(value) else None


def current() -> str | None:
    """The request id bound in this context, if any."""
    bound = _CURRENT.get()
    return None if bound is None else bound.request_id


@contextmanager
def bind(request_id: str | None) -> Iterator[str]:
    """Bind ``request_id`` (a new one when None or malformed) until the block ends."""
    chosen = accept(request_id) or new_request_id()
    token = _CURRENT.set(_Bound(chosen))
    try:
        yield chosen
    finally:
        _CURRENT.reset(token)


def _header(headers: Iterable[tuple[str, Any]] | None) -> str | None:
    for key, value in headers or ():
        if key == REQUEST_ID_KEY:
            return accept(value)
    return None


@contextmanager
def bind_from_headers(
    headers: Iterable[tuple[str, Any]] | None, *, prefix: str = ""
) -> Iterator[str]:
    """Bind the id a Kafka record (or gRPC metadata) carries; a new one when it has none."""
    with bind(_header(headers) or new_request_id(prefix)) as request_id:
        yield request_id


def kafka_headers() -> list[tuple[str, bytes]]:
    """The header to add to a record produced on behalf of the bound request."""
    request_id = current()
    return [] if request_id is None else [(REQUEST_ID_KEY, request_id.encode("ascii"))]


def metadata() -> tuple[tuple[str, str], ...]:
    """The metadata to add to an outgoing RPC made on behalf of the bound request."""
    request_id = current()
    return () if request_id is None else ((REQUEST_ID_KEY, request_id),)


# ---------------------------------------------------------------- gRPC servers


async def send_response_headers(
    context: grpc.aio.ServicerContext, pairs: Sequence[tuple[str, Any]] = ()
) -> None:
    """Send the response headers once: ``pairs`` plus the bound request id.

    Handlers that add headers of their own (the idempotent-replay flag, the edge relaying
    an upstream's headers) call this instead of ``send_initial_metadata``; the request-id
    interceptor calls it with no pairs when the handler did not.
    """
    bound = _CURRENT.get()
    if bound is None:
        if pairs:
            await context.send_initial_metadata(tuple(pairs))
        return
    if bound.headers_sent:
        return
    bound.headers_sent = True
    kept = tuple((k, v) for k, v in pairs if k != REQUEST_ID_KEY)
    await context.send_initial_metadata((*kept, (REQUEST_ID_KEY, bound.request_id)))


async def send_response_headers_quietly(context: Any) -> None:
    """:func:`send_response_headers` before a status goes out (once a call has ended,
    headers can no longer be sent: then nothing happens)."""
    try:
        await send_response_headers(context)
    except Exception:  # the call already ended (cancelled, or a status was sent)
        logging.getLogger(__name__).debug("response headers not sent", exc_info=True)


def request_id_interceptor() -> grpc.aio.ServerInterceptor:
    """Binds each RPC's request id (the caller's ``x-request-id`` or a new one) for the
    call's whole task, and sends it back as a response header."""
    from payrail_common.interceptors import INFRA_PREFIXES, Continuation, wrap_handler

    class _RequestIds(grpc.aio.ServerInterceptor):  # type: ignore[misc]
        async def intercept_service(self, continuation: Continuation, details: Any) -> Any:
            handler = await continuation(details)
            if handler is None or details.method.startswith(INFRA_PREFIXES):
                return handler
            # A stream's headers go out before its first message; a unary call's with
            # its response or its status.
            around = _around_stream if handler.unary_stream is not None else _around_unary
            return wrap_handler(handler, details.method, around)

    return _RequestIds()


class _Around:
    """The async context manager run around one RPC (see interceptors.wrap_handler)."""

    def __init__(self, context: Any, *, streaming: bool) -> None:
        self._context = context
        self._streaming = streaming

    async def __aenter__(self) -> None:
        incoming = self._context.invocation_metadata() or ()
        # Not reset on exit: each RPC runs in a task of its own, and the server's
        # outermost guard still logs (with this id) after the handler ends.
        _CURRENT.set(_Bound(_header(incoming) or new_request_id()))
        if self._streaming:
            await send_response_headers_quietly(self._context)

    async def __aexit__(self, *exc: object) -> None:
        # A unary response has not gone out yet: the header still can. (A status sent
        # with abort() already carried it: rpcerrors sends it first.)
        await send_response_headers_quietly(self._context)


def _around_unary(_method: str, context: Any) -> _Around:
    return _Around(context, streaming=False)


def _around_stream(_method: str, context: Any) -> _Around:
    return _Around(context, streaming=True)


# ---------------------------------------------------------------- gRPC clients


class RequestIdClientInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds the bound request id to every call made on a channel."""

    @staticmethod
    def _details(details: Any) -> Any:
        extra = metadata()
        if not extra:
            return details
        kept = tuple((k, v) for k, v in (details.metadata or ()) if k != REQUEST_ID_KEY)
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=grpc.aio.Metadata(*kept, *extra),
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


# ---------------------------------------------------------------- logs


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record logged while a request id is bound."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request_id = current()
            if request_id is not None:
                record.request_id = request_id
        return True
