"""Canonical gRPC errors with ``google.rpc.Status`` details, built in one place.

Servicers never format status details by hand: they raise their service's domain errors,
and the service's error mapper calls these helpers. Messages are written for the client:
no stack traces, no internal addresses, no secrets or card data. Every status carries an
``ErrorInfo`` with a :class:`~payrail_common.reasons.Reason` from the one catalogue
(:mod:`payrail_common.reasons`, docs/errors.md) and the domain ``payrail.dev``:
:func:`abort` takes the reason as a required argument.
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
from payrail_common.reasons import ERROR_DOMAIN, Reason
from payrail_common.tracing import send_response_headers_quietly

log = logging.getLogger(__name__)

# What a client hears about a failure nobody mapped; the details are in the server's log.
INTERNAL_MESSAGE = "internal error; the server logged it"
# RetryInfo's delay on DEPENDENCY_UNAVAILABLE: an outage is seldom over sooner.
UNAVAILABLE_RETRY_S = 1.0


def rich_status(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: Reason,
    violations: Iterable[FieldViolation] = (),
    metadata: Mapping[str, str] | None = None,
    retry_after_s: float | None = None,
) -> status_pb2.Status:
    """The ``google.rpc.Status``: code, message, BadRequest (when there are violations),
    ErrorInfo (always) and RetryInfo (when ``retry_after_s`` is given)."""
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
    info = error_details_pb2.ErrorInfo(
        reason=Reason(reason).value, domain=ERROR_DOMAIN, metadata=dict(metadata or {})
    )
    status.details.add().Pack(info)
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(max(0, round(retry_after_s * 1000)))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


async def abort(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    *,
    reason: Reason,
    violations: Iterable[FieldViolation] = (),
    metadata: Mapping[str, str] | None = None,
    retry_after_s: float | None = None,
) -> NoReturn:
    """End the call with code and message plus ErrorInfo (``reason``, required) and,
    when given, BadRequest and RetryInfo details."""
    # The request id goes out as a header with the error too: a client can quote it.
    await send_response_headers_quietly(context)
    status = rich_status(
        code,
        message,
        reason=reason,
        violations=violations,
        metadata=metadata,
        retry_after_s=retry_after_s,
    )
    await context.abort_with_status(rpc_status.to_status(status))
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
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                unavailable_message,
                reason=Reason.DEPENDENCY_UNAVAILABLE,
                retry_after_s=UNAVAILABLE_RETRY_S,
            )

    return boundary


__all__ = [
    "ERROR_DOMAIN",
    "INTERNAL_MESSAGE",
    "UNAVAILABLE_RETRY_S",
    "FieldViolation",
    "Reason",
    "abort",
    "error_boundary",
    "rich_status",
]
