"""The console's one upstream: the public edge, over gRPC, with the caller's token.

Every call carries the signed-in user's access token as ``authorization: Bearer`` and a
deadline; a failure becomes :class:`UpstreamError` with what the pages need from the
``google.rpc.Status`` details (field violations, ErrorInfo reason and metadata, retry
delay) and never a transport's raw text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from payrail.admin.v1 import admin_pb2_grpc
from payrail.auth.v1 import auth_pb2_grpc
from payrail.insights.v1 import insights_pb2_grpc
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.channels import internal_channel

__all__ = ["Edge", "UpstreamError"]

T = TypeVar("T")

_STATUS_DETAILS_KEY = "grpc-status-details-bin"

# What a person reads for the codes that carry no useful message of their own.
_GENERIC = {
    grpc.StatusCode.UNAVAILABLE: "The platform is not reachable right now; try again shortly.",
    grpc.StatusCode.DEADLINE_EXCEEDED: "The platform took too long to answer; try again.",
    grpc.StatusCode.INTERNAL: "Something went wrong on our side; it has been logged.",
    grpc.StatusCode.UNKNOWN: "Something went wrong on our side; it has been logged.",
}


@dataclass
class UpstreamError(Exception):
    """A refused or failed call to the edge, decoded for display."""

    code: grpc.StatusCode
    message: str
    violations: list[tuple[str, str]] = field(default_factory=list)
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> UpstreamError:
        code = error.code()
        out = cls(code=code, message=_GENERIC.get(code, error.details() or code.name))
        for key, value in error.trailing_metadata() or ():
            if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
                continue
            try:
                status = status_pb2.Status.FromString(value)
            except DecodeError:
                continue
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    out.violations.extend((v.field, v.description) for v in bad.field_violations)
                elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    out.reason = info.reason
                    out.metadata = dict(info.metadata)
        return out


class Edge:
    """Stubs of the public services (and admin services) on one channel to the edge."""

    def __init__(self, target: str, *, deadline_s: float) -> None:
        self.channel = internal_channel(target)
        self.deadline_s = deadline_s
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.payments = payments_pb2_grpc.PaymentServiceStub(self.channel)
        self.insights = insights_pb2_grpc.InsightsServiceStub(self.channel)
        self.catalog = insights_pb2_grpc.BenefitCatalogServiceStub(self.channel)
        # Operators only (the edge refuses other callers with PERMISSION_DENIED).
        self.payment_admin = admin_pb2_grpc.PaymentAdminServiceStub(self.channel)
        self.processing_admin = admin_pb2_grpc.ProcessingAdminServiceStub(self.channel)
        self.operator = admin_pb2_grpc.OperatorServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def call(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        *,
        token: str = "",
    ) -> T:
        """One unary call; raises UpstreamError on any non-OK status."""
        try:
            result: T = await method(request, timeout=self.deadline_s, metadata=_metadata(token))
        except grpc.aio.AioRpcError as error:
            raise UpstreamError.from_rpc_error(error) from None
        return result

    async def stream(
        self, method: Callable[..., Any], request: Any, *, token: str, timeout_s: float
    ) -> AsyncIterator[Any]:
        """A server stream (WatchPayment); raises UpstreamError when it fails."""
        call = method(request, timeout=timeout_s, metadata=_metadata(token))
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as error:
            raise UpstreamError.from_rpc_error(error) from None
        finally:
            call.cancel()


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()
