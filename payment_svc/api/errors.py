"""The one place payment_svc's domain errors become gRPC statuses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from payment_svc.domain.errors import (
    DomainError,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidTransition,
    NotFound,
    ValidationFailed,
)
from payrail_common.dependencies import TRANSIENT_ERRORS
from payrail_common.rpcerrors import abort

log = logging.getLogger(__name__)


async def abort_for(context: Any, error: DomainError) -> None:
    if isinstance(error, ValidationFailed):
        await abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            "the request has invalid fields",
            violations=error.violations,
            reason=error.reason,
        )
    if isinstance(error, NotFound):
        # The same answer for "does not exist" and "is someone else's".
        await abort(context, grpc.StatusCode.NOT_FOUND, "payment not found", reason=error.reason)
    if isinstance(error, IdempotencyKeyReused):
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            "this idempotency_key was already used with different parameters",
            reason="IDEMPOTENCY_KEY_REUSED",
        )
    if isinstance(error, InsufficientFunds):
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            f"insufficient available balance in {error.currency_code}",
            reason="INSUFFICIENT_FUNDS",
            metadata={"currency_code": error.currency_code},
        )
    if isinstance(error, InvalidTransition):
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            f"not possible for a payment in status {error.current}",
            reason="PAYMENT_STATUS_CONFLICT",
            metadata={"status": error.current},
        )
    log.error("unmapped domain error", extra={"reason": error.reason})
    await abort(context, grpc.StatusCode.INTERNAL, "internal error")


@asynccontextmanager
async def mapped_errors(context: Any) -> AsyncIterator[None]:
    """Run a servicer body; domain errors become their statuses, outages UNAVAILABLE."""
    try:
        yield
    except DomainError as error:
        await abort_for(context, error)
    except TRANSIENT_ERRORS:
        log.warning("dependency unavailable", exc_info=True)
        await abort(
            context,
            grpc.StatusCode.UNAVAILABLE,
            "the payment service is temporarily unavailable; retry with backoff",
        )
