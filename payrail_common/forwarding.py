"""A byte-level gRPC forwarder from the public edge to an internal service.

gateway_svc does not re-implement payment_svc's RPCs: for each forwarded service it
registers a generic handler that passes the serialized request through unchanged, with
a deadline (the caller's remaining time, capped by configuration), the metadata the
upstream needs, and the upstream's status, details and metadata (including
``grpc-status-details-bin`` rich error details) passed back to the caller unchanged. A
status the upstream's client library made (no connection, the capped deadline) carries
no details: the edge gives it its ErrorInfo (``DEPENDENCY_UNAVAILABLE``), so every
status a client hears has a reason from :mod:`payrail_common.reasons`.
Because nothing is decoded, the edge adds no serialization cost and never sees fields
it does not need.

A call the edge authenticated (the Authenticator bound a principal, after checking the
token and its live session) also carries an edge assertion for its method and token
(:mod:`payrail_common.edge_assertion`): the internal services accept a bearer token only
with one, so a revoked or stolen token is useless on their ports too. A client's own
``x-payrail-edge-assertion`` never passes: only :data:`FORWARDED_KEYS` do.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.rpc import error_details_pb2, status_pb2

from payrail_common.authn import PRINCIPAL, bearer_token
from payrail_common.edge_assertion import EDGE_ASSERTION_KEY, EdgeAssertions
from payrail_common.reasons import ERROR_DOMAIN, Reason
from payrail_common.rpcerrors import INTERNAL_MESSAGE, UNAVAILABLE_RETRY_S, rich_status
from payrail_common.tracing import send_response_headers, send_response_headers_quietly

log = logging.getLogger(__name__)

# Request metadata keys passed through to the upstream; everything else stays at the edge.
# (The request id is not among them: the edge's channel sends the one it bound for this
# call, the client's own when well-formed — see payrail_common.tracing.)
FORWARDED_KEYS = frozenset({"authorization", "x-payrail-signature"})


def _outgoing_metadata(
    context: grpc.aio.ServicerContext, extra: Iterable[tuple[str, str]]
) -> tuple[tuple[str, str | bytes], ...]:
    incoming = context.invocation_metadata() or ()
    kept = tuple((k, v) for k, v in incoming if k in FORWARDED_KEYS)
    return kept + tuple(extra)


def _timeout_s(context: grpc.aio.ServicerContext, max_deadline_s: float) -> float:
    remaining = context.time_remaining()
    if remaining is None:
        return max_deadline_s
    return max(0.0, min(float(remaining), max_deadline_s))


UNAVAILABLE_MESSAGE = "the payment service is temporarily unavailable; retry with backoff"

# The trailing metadata key of a status's google.rpc.Status details.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
# Detail-less upstream statuses that mean "it did not answer": the caller hears them as
# DEPENDENCY_UNAVAILABLE (CANCELLED, say by an upstream shutting down, as UNAVAILABLE).
_NO_ANSWER = {
    grpc.StatusCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED: grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def _upstream_status(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The upstream's rich status if a payrail server sent one (it has our ErrorInfo)."""
    for key, value in error.trailing_metadata() or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # a status we cannot read is no status of ours
            return None
        info = error_details_pb2.ErrorInfo()
        if any(d.Unpack(info) and info.domain == ERROR_DOMAIN for d in status.details):
            return status
    return None


async def _relay_error(
    context: grpc.aio.ServicerContext,
    error: grpc.aio.AioRpcError,
    unavailable_message: str = UNAVAILABLE_MESSAGE,
) -> None:
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        # The upstream's own transport text says nothing useful to a client.
        log.warning("upstream unavailable", extra={"error": details})
        details = unavailable_message
    status = _upstream_status(error)
    if status is None and code in _NO_ANSWER:
        # Made by the edge's own client library (no connection, the capped deadline).
        code = _NO_ANSWER[code]
        details = unavailable_message if code == grpc.StatusCode.UNAVAILABLE else details
        status = rich_status(
            code,
            details,
            reason=Reason.DEPENDENCY_UNAVAILABLE,
            retry_after_s=UNAVAILABLE_RETRY_S,
        )
    elif status is None:
        log.error("upstream status without details", extra={"code": code.name})
        code, details = grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
        status = rich_status(code, details, reason=Reason.INTERNAL_ERROR)
    # The upstream's details, unchanged; the message as the caller hears it (a client
    # library refuses details whose message differs from the status's).
    status.message = details
    kept = [(k, v) for k, v in error.trailing_metadata() or () if k != STATUS_DETAILS_KEY]
    trailing = (*kept, (STATUS_DETAILS_KEY, status.SerializeToString()))
    await send_response_headers_quietly(context)
    await context.abort(code, details, trailing_metadata=trailing)


class Forwarder:
    """Builds generic handlers that forward every RPC of a service to ``channel``."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        max_deadline_s: float,
        unavailable_message: str = UNAVAILABLE_MESSAGE,
        edge_assertions: EdgeAssertions | None = None,
    ) -> None:
        self._channel = channel
        self._max_deadline_s = max_deadline_s
        # What a caller hears while the upstream cannot be reached.
        self._unavailable_message = unavailable_message
        self._edge_assertions = edge_assertions

    def _assertion(
        self, path: str, context: grpc.aio.ServicerContext
    ) -> tuple[tuple[str, str], ...]:
        """The edge assertion for this call, if the edge authenticated it."""
        if self._edge_assertions is None or PRINCIPAL.get(None) is None:
            return ()
        return ((EDGE_ASSERTION_KEY, self._edge_assertions.sign(path, bearer_token(context))),)

    def handler_for(self, service: ServiceDescriptor) -> grpc.GenericRpcHandler:
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            if method.client_streaming:
                raise ValueError(f"{path}: client streaming is not forwarded")
            if method.server_streaming:
                handlers[method.name] = grpc.unary_stream_rpc_method_handler(self._stream(path))
            else:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(self._unary(path))
        return grpc.method_handlers_generic_handler(service.full_name, handlers)

    def register(self, server: grpc.aio.Server, service: ServiceDescriptor) -> None:
        server.add_generic_rpc_handlers((self.handler_for(service),))

    def _unary(self, path: str) -> Any:
        call_upstream = self._channel.unary_unary(path)

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            call = call_upstream(
                request,
                timeout=_timeout_s(context, self._max_deadline_s),
                metadata=_outgoing_metadata(context, self._assertion(path, context)),
            )
            try:
                response: bytes = await call
                initial = await call.initial_metadata()
                trailing = await call.trailing_metadata()
            except grpc.aio.AioRpcError as error:
                await _relay_error(context, error, self._unavailable_message)
                raise  # abort() raises; this line is never reached
            # The upstream's headers (with the same request id) and the edge's, once.
            await send_response_headers(context, tuple(initial or ()))
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
            return response

        return forward

    def _stream(self, path: str) -> Any:
        call_upstream = self._channel.unary_stream(path)

        async def forward(
            request: bytes, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            # Streams are long-lived by design (WatchPayment): only the caller's own
            # deadline bounds them, never the unary cap.
            call = call_upstream(
                request,
                timeout=context.time_remaining(),
                metadata=_outgoing_metadata(context, self._assertion(path, context)),
            )
            try:
                async for item in call:
                    yield item
            except grpc.aio.AioRpcError as error:
                await _relay_error(context, error, self._unavailable_message)
            finally:
                # The caller hung up or the stream ended: release the upstream stream too.
                call.cancel()

        return forward
