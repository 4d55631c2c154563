"""Operators at the edge: the admin role on every admin RPC, the audit trail, and
OperatorService (the trail itself and the health of every component).

* :class:`OperatorGuard` (a server interceptor, after authentication) refuses every
  method of the admin services to a caller without the admin role (PERMISSION_DENIED,
  before anything is forwarded; the services check again), and records each
  :data:`AUDITED` call in ``auth.operator_actions``: who (the token's user), what (the
  method and the request as JSON; these requests carry no secrets), when, and how it
  ended. The record is written *before* the call runs; when it cannot be written the
  call is refused (UNAVAILABLE), so no operator action goes unrecorded.
* :class:`OperatorServicer` serves ``payrail.admin.v1.OperatorService``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway_svc.adapters.operator_actions import PostgresOperatorActions
from payrail.admin.v1 import admin_pb2 as apb
from payrail.admin.v1 import admin_pb2_grpc
from payrail_common.authn import PRINCIPAL
from payrail_common.channels import internal_channel
from payrail_common.reasons import Reason
from payrail_common.rpcerrors import abort

log = logging.getLogger(__name__)

ADMIN_ROLE = "admin"
ACTIONS_PAGE_DEFAULT = 50
ACTIONS_PAGE_MAX = 100
HEALTH_TIMEOUT_S = 1.5
_STATUS_NAMES = {
    health_pb2.HealthCheckResponse.SERVING: "SERVING",
    health_pb2.HealthCheckResponse.NOT_SERVING: "NOT_SERVING",
    health_pb2.HealthCheckResponse.UNKNOWN: "UNKNOWN",
    health_pb2.HealthCheckResponse.SERVICE_UNKNOWN: "UNKNOWN",
}


def methods_of(services: Sequence[ServiceDescriptor]) -> dict[str, MethodDescriptor]:
    return {f"/{s.full_name}/{m.name}": m for s in services for m in s.methods}


def request_json(method: MethodDescriptor, request: Any) -> str:
    """The request as compact JSON (bytes when forwarded, a message when served here)."""
    if isinstance(request, bytes | bytearray):
        message = message_factory.GetMessageClass(method.input_type)()
        try:
            message.ParseFromString(bytes(request))
        except Exception:  # still recorded, as what it was
            return f'{{"undecodable_bytes": {len(request)}}}'
    else:
        message = request
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None)


class OperatorGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Admin role for ``admin_methods``; an audit record for each of ``audited``."""

    def __init__(
        self,
        actions: PostgresOperatorActions,
        *,
        admin_methods: dict[str, MethodDescriptor],
        audited: frozenset[str],
    ) -> None:
        self._actions = actions
        self._admin = admin_methods
        self._audited = audited

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method not in self._admin or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        descriptor = self._admin[method]
        audited = method in self._audited

        async def guarded(request: Any, context: Any) -> Any:
            principal = PRINCIPAL.get(None)
            if principal is None or principal.role != ADMIN_ROLE:
                log.warning("operator call refused", extra={"method": method})
                await abort(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    "operators only: the admin role is required",
                    reason=Reason.ADMIN_ROLE_REQUIRED,
                )
            if not audited:
                return await inner(request, context)
            try:
                action_id = await self._actions.start(
                    principal.user_id, method, request_json(descriptor, request)
                )
            except (OSError, TimeoutError, asyncpg.PostgresError):
                log.error("operator action not recorded; refused", extra={"method": method})
                await abort(
                    context,
                    grpc.StatusCode.UNAVAILABLE,
                    "the audit trail is unavailable; retry shortly",
                    reason=Reason.DEPENDENCY_UNAVAILABLE,
                )
            outcome = "INTERNAL"
            try:
                response = await inner(request, context)
                outcome = "OK"
                return response
            except BaseException:
                code = context.code()
                if isinstance(code, grpc.StatusCode):
                    outcome = code.name
                raise
            finally:
                try:
                    await self._actions.finish(action_id, outcome)
                except (OSError, TimeoutError, asyncpg.PostgresError):
                    log.error(
                        "operator action outcome not recorded",
                        extra={"method": method, "action_id": action_id, "outcome": outcome},
                    )

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class OperatorServicer(admin_pb2_grpc.OperatorServiceServicer):
    """The audit trail and the platform's health (role checked by OperatorGuard)."""

    def __init__(
        self, actions: PostgresOperatorActions, health_targets: Sequence[tuple[str, str]]
    ) -> None:
        self._actions = actions
        self._channels = [(name, internal_channel(target)) for name, target in health_targets]

    async def close(self) -> None:
        for _, channel in self._channels:
            await channel.close()

    async def ListOperatorActions(
        self, request: apb.ListOperatorActionsRequest, context: Any
    ) -> apb.ListOperatorActionsResponse:
        size = request.page_size or ACTIONS_PAGE_DEFAULT
        before: int | None = None
        if request.page_token:
            if not request.page_token.isdigit() or len(request.page_token) > 18:
                await abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "page_token is not a token from a previous page",
                    reason=Reason.VALIDATION_FAILED,
                )
            before = int(request.page_token)
        size = max(1, min(size, ACTIONS_PAGE_MAX))
        rows = await self._actions.page(before_id=before, limit=size + 1)
        response = apb.ListOperatorActionsResponse(
            actions=[
                apb.OperatorAction(
                    action_id=r.action_id,
                    actor_user_id=r.actor_user_id,
                    actor_email=r.actor_email,
                    method=r.method,
                    request_json=r.request_json,
                    outcome=r.outcome,
                    create_time=_ts(r.create_time),
                )
                for r in rows[:size]
            ]
        )
        if len(rows) > size:
            response.next_page_token = str(rows[size - 1].action_id)
        return response

    async def _component(self, name: str, channel: grpc.aio.Channel) -> apb.ComponentHealth:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            listing = await stub.List(health_pb2.HealthListRequest(), timeout=HEALTH_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            return apb.ComponentHealth(name=name, status="UNREACHABLE")
        entries = dict(listing.statuses)
        overall = entries.pop("", None)
        return apb.ComponentHealth(
            name=name,
            status="UNKNOWN" if overall is None else _STATUS_NAMES.get(overall.status, "UNKNOWN"),
            entries=[
                apb.DependencyHealth(name=key, status=_STATUS_NAMES.get(value.status, "UNKNOWN"))
                for key, value in sorted(entries.items())
                if key.startswith("payrail.")
            ],
        )

    async def GetPlatformHealth(
        self, request: apb.GetPlatformHealthRequest, context: Any
    ) -> apb.GetPlatformHealthResponse:
        components = await asyncio.gather(
            *(self._component(name, channel) for name, channel in self._channels)
        )
        return apb.GetPlatformHealthResponse(
            components=components, check_time=_ts(datetime.now(UTC))
        )
