"""Canonical gRPC errors with ``google.rpc.Status`` details, built in one place.

Servicers never format status details by hand: they raise their service's domain errors,
and the service's error mapper calls these helpers. Messages are written for the client:
no stack traces, no internal addresses, no secrets or card data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NoReturn

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from payrail_common.fields import FieldViolation

# ErrorInfo.domain for every payrail error.
ERROR_DOMAIN = "payrail.dev"


def _status(
    code: grpc.StatusCode,
    message: str,
    *,
    violations: Iterable[FieldViolation] = (),
    reason: str | None = None,
    metadata: Mapping[str, str] | None = None,
    retry_after_s: float | None = None,
) -> grpc.Status:
    status = status_pb2.Status(code=code.value[0], message=message)
    found = list(violations)
    if found:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in found
            ]
        )
        status.details.add().Pack(bad)
    if reason is not None:
        info = error_details_pb2.ErrorInfo(
            reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata or {})
        )
        status.details.add().Pack(info)
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(max(0, round(retry_after_s * 1000)))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return rpc_status.to_status(status)


async def abort(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    *,
    violations: Iterable[FieldViolation] = (),
    reason: str | None = None,
    metadata: Mapping[str, str] | None = None,
    retry_after_s: float | None = None,
) -> NoReturn:
    """End the call with code and message plus BadRequest/ErrorInfo/RetryInfo details."""
    await context.abort_with_status(
        _status(
            code,
            message,
            violations=violations,
            reason=reason,
            metadata=metadata,
            retry_after_s=retry_after_s,
        )
    )
    raise AssertionError("abort_with_status() returned")  # it always raises


__all__ = ["ERROR_DOMAIN", "FieldViolation", "abort"]
