"""Canonical gRPC errors with ``google.rpc.Status`` details, built in one place.

Servicers never format status details by hand: they raise their service's domain errors,
and the service's error mapper calls these helpers. Messages are written for the client:
no stack traces, no internal addresses, no secrets or card data.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NoReturn

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from payrail_common.faults import is_transient
from payrail_common.fields import FieldViolation
from payrail_common.tracing import send_response_headers_quietly

log = logging.getLogger(__name__)

# ErrorInfo.domain for every payrail error.
ERROR_DOMAIN = "payrail.dev"
# What a client hears about a failure nobody mapped; the details are in the server's log.
INTERNAL_MESSAGE = "internal error; the server logged it"


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
    # The request id goes out as a header with the error too: a client can quote it.
    await send_response_headers_quietly(context)
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


ErrorMapper = Callable[[Any, Exception], Awaitable[None]]


def error_boundary(
    domain_error: type[Exception], abort_for: ErrorMapper, *, unavailable_message: str
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A servicer-body context manager for one service: its domain errors become the
    statuses ``abort_for`` chooses, dependency outages UNAVAILABLE (retry with backoff);
    anything else propagates to the server's CallGuard (every server has one), which logs
    it with its traceback and answers INTERNAL with a fixed message, never its text."""

    @asynccontextmanager
    async def boundary(context: Any) -> AsyncIterator[None]:
        try:
            yield
        except domain_error as error:
            await abort_for(context, error)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("dependency unavailable", exc_info=True)
            await abort(context, grpc.StatusCode.UNAVAILABLE, unavailable_message)

    return boundary


__all__ = ["ERROR_DOMAIN", "INTERNAL_MESSAGE", "FieldViolation", "abort", "error_boundary"]
