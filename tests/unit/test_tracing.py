"""Request ids: shape checks, binding, log lines, Kafka headers, and the gRPC round trip
(server interceptor, response header on success, error and stream, client propagation)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from payrail_common import tracing
from payrail_common.channels import internal_channel
from payrail_common.grpcserver import ServerHandle, create_server
from payrail_common.logs import configure_logging, redact
from payrail_common.reasons import Reason
from payrail_common.rpcerrors import abort

# A made id: a UUID in its dashed form (the PAN filter leaves those alone).
MADE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("abc-123", True),
        ("e2e-trace:1.2_3", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("-leading-dash", False),
        ("has space", False),
        ("newline\n", False),
        ("ünicode", False),
        (b"bytes-ok", True),
        (b"\xff\xfe", False),
        (None, False),
    ],
)
def test_only_well_formed_ids_are_accepted(value: str | bytes | None, accepted: bool) -> None:
    assert (tracing.accept(value) is not None) is accepted


def test_bind_sets_and_restores_and_replaces_a_malformed_id() -> None:
    assert tracing.current() is None
    with tracing.bind("outer-1") as outer:
        assert outer == "outer-1" == tracing.current()
        with tracing.bind("bad id") as inner:
            assert MADE.fullmatch(inner)
            assert tracing.current() == inner
        assert tracing.current() == "outer-1"
    assert tracing.current() is None


def test_kafka_headers_carry_the_bound_id_only() -> None:
    assert tracing.kafka_headers() == []
    with tracing.bind("req-7"):
        assert tracing.kafka_headers() == [("x-request-id", b"req-7")]
    with tracing.bind_from_headers([("event-id", b"e"), ("x-request-id", b"from-kafka")]) as rid:
        assert rid == "from-kafka"
    with tracing.bind_from_headers(None, prefix="payrail-processor-") as rid:
        assert rid.startswith("payrail-processor-")


def test_made_ids_survive_the_card_number_filter_in_logs() -> None:
    # Bare hex digits would, one id in a few hundred, hold a run of twelve or more
    # decimal digits, which the log filter masks as a card number: the id in the log
    # would then no longer find its request.
    for _ in range(2000):
        made = tracing.new_request_id()
        assert redact(made) == made
        assert redact(f"janitor-{made}") == f"janitor-{made}"


def test_every_log_line_logged_while_bound_has_the_request_id() -> None:
    stream = io.StringIO()
    configure_logging("unit", "INFO", stream)
    try:
        logger = logging.getLogger("unit.tracing")
        logger.info("outside")
        with tracing.bind("req-logged"):
            logger.info("inside", extra={"payment_id": "p-1"})
    finally:
        configure_logging("unit", "INFO")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "request_id" not in first
    assert second["request_id"] == "req-logged"
    assert second["payment_id"] == "p-1"


class _Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """A servicer under a non-infrastructure name, to see what any payrail RPC sees."""

    def __init__(self, upstream: grpc.aio.Channel | None = None) -> None:
        self.seen: list[str | None] = []
        self._upstream = upstream

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        self.seen.append(tracing.current())
        if request.service == "fail":
            await abort(
                context, grpc.StatusCode.NOT_FOUND, "no such thing", reason=Reason.NOT_FOUND
            )
        if request.service == "replay":
            await tracing.send_response_headers(context, (("x-payrail-idempotent-replay", "1"),))
        if request.service == "forward" and self._upstream is not None:
            await _check(self._upstream)(health_pb2.HealthCheckRequest(service="ok"), timeout=5)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        self.seen.append(tracing.current())
        yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def _serve(servicer: _Health) -> tuple[ServerHandle, int]:
    """A payrail server (create_server: guard, request ids...) with ``servicer`` under the
    name ``unit.Health``: the real Health service is infrastructure and not traced."""

    def register(server: grpc.aio.Server) -> None:
        handlers = {
            "Check": grpc.unary_unary_rpc_method_handler(
                servicer.Check,
                request_deserializer=health_pb2.HealthCheckRequest.FromString,
                response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
            ),
            "Watch": grpc.unary_stream_rpc_method_handler(
                servicer.Watch,
                request_deserializer=health_pb2.HealthCheckRequest.FromString,
                response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("unit.Health", handlers),)
        )

    handle = create_server(host="127.0.0.1", port=0, registrars=(register,), service_names=())
    return handle, handle.port


def _check(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(
        "/unit.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )


@pytest.mark.asyncio
async def test_servers_bind_answer_and_propagate_the_request_id() -> None:
    upstream_servicer = _Health()
    upstream, upstream_port = _serve(upstream_servicer)
    await upstream.start()
    upstream_channel = internal_channel(f"127.0.0.1:{upstream_port}")
    edge_servicer = _Health(upstream_channel)
    edge, edge_port = _serve(edge_servicer)
    await edge.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{edge_port}") as channel:
            check = _check(channel)
            # The caller's id is used and answered.
            call = check(
                health_pb2.HealthCheckRequest(service="ok"),
                metadata=(("x-request-id", "client-1"),),
                timeout=5,
            )
            await call
            assert dict(await call.initial_metadata())["x-request-id"] == "client-1"
            assert edge_servicer.seen[-1] == "client-1"
            # None sent: one is made, bound and answered.
            call = check(health_pb2.HealthCheckRequest(service="ok"), timeout=5)
            await call
            made = dict(await call.initial_metadata())["x-request-id"]
            assert MADE.fullmatch(made)
            assert edge_servicer.seen[-1] == made
            # A handler's own header goes out with the id, once.
            call = check(
                health_pb2.HealthCheckRequest(service="replay"),
                metadata=(("x-request-id", "client-2"),),
                timeout=5,
            )
            await call
            headers = tuple(await call.initial_metadata())
            assert ("x-payrail-idempotent-replay", "1") in headers
            assert [v for k, v in headers if k == "x-request-id"] == ["client-2"]
            # An error carries it too.
            call = check(
                health_pb2.HealthCheckRequest(service="fail"),
                metadata=(("x-request-id", "client-3"),),
                timeout=5,
            )
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
            assert dict(await call.initial_metadata())["x-request-id"] == "client-3"
            # A stream sends it before its first message.
            stream = channel.unary_stream(
                "/unit.Health/Watch",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )(health_pb2.HealthCheckRequest(), metadata=(("x-request-id", "client-4"),))
            async for _ in stream:
                break
            assert dict(await stream.initial_metadata())["x-request-id"] == "client-4"
            stream.cancel()
            # An internal call made while handling a request carries its id onwards.
            await check(
                health_pb2.HealthCheckRequest(service="forward"),
                metadata=(("x-request-id", "client-5"),),
                timeout=5,
            )
            assert upstream_servicer.seen[-1] == "client-5"
    finally:
        await upstream_channel.close()
        await edge.stop(0)
        await upstream.stop(0)
        await asyncio.sleep(0)
