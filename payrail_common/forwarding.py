"""A byte-level gRPC forwarder from the public edge to an internal service.

gateway_svc does not re-implement payment_svc's RPCs: for each forwarded service it
registers a generic handler that passes the serialized request through unchanged, with
a deadline (the caller's remaining time, capped by configuration), the metadata the
upstream needs, and the upstream's status, details and metadata (including
``grpc-status-details-bin`` rich error details) passed back to the caller unchanged.
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

from payrail_common.authn import PRINCIPAL, bearer_token
from payrail_common.edge_assertion import EDGE_ASSERTION_KEY, EdgeAssertions
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
    await send_response_headers_quietly(context)
    await context.abort(code, details, trailing_metadata=tuple(error.trailing_metadata() or ()))


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
