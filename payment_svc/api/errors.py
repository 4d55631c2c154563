"""The one place payment_svc's domain errors become gRPC statuses.

Each status carries the error's own ``reason`` (payrail_common.reasons); an error no
branch names is INTERNAL with INTERNAL_ERROR.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from payment_svc.domain.errors import (
    CallbackRejected,
    DomainError,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidTransition,
    NotFound,
    ProcessingBacklog,
    ResultConflict,
    ValidationFailed,
    VerificationClosed,
    VerificationCodeInvalid,
)
from payrail_common.fields import FieldViolation
from payrail_common.reasons import Reason
from payrail_common.rpcerrors import INTERNAL_MESSAGE, abort, error_boundary

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
        await abort(context, grpc.StatusCode.NOT_FOUND, str(error), reason=error.reason)
    if isinstance(error, IdempotencyKeyReused):
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            "this idempotency_key was already used with different parameters",
            reason=error.reason,
        )
    if isinstance(error, InsufficientFunds):
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            f"insufficient available balance in {error.currency_code}",
            reason=error.reason,
            metadata={"currency_code": error.currency_code},
        )
    if isinstance(error, InvalidTransition):
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            f"not possible for a payment in status {error.current}",
            reason=error.reason,
            metadata={"status": error.current},
        )
    if isinstance(error, CallbackRejected):
        log.warning("callback rejected", extra={"detail": error.detail})
        await abort(
            context,
            grpc.StatusCode.UNAUTHENTICATED,
            "callback signature, timestamp or gateway not accepted",
            reason=error.reason,
        )
    if isinstance(error, ResultConflict):
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            f"the payment is already {error.current}; this result conflicts with it",
            reason=error.reason,
            metadata={"status": error.current},
        )
    if isinstance(error, VerificationCodeInvalid):
        await abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            str(error),
            violations=[FieldViolation("code", "is not the code that was sent")],
            reason=error.reason,
            metadata={"attempts_remaining": str(error.attempts_remaining)},
        )
    if isinstance(error, VerificationClosed):
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            str(error),
            reason=error.reason,
            metadata={"status": error.status},
        )
    if isinstance(error, ProcessingBacklog):
        await abort(
            context,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            str(error),
            reason=error.reason,
            metadata={"unsettled": str(error.unsettled), "unsettled_max": str(error.unsettled_max)},
            retry_after_s=error.retry_after_s,
        )
    log.error("unmapped domain error", extra={"error": type(error).__name__})
    await abort(context, grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, reason=Reason.INTERNAL_ERROR)


# Wraps every servicer body: domain errors -> statuses, outages -> UNAVAILABLE.
mapped_errors = error_boundary(
    DomainError,
    abort_for,  # type: ignore[arg-type]
    unavailable_message="the payment service is temporarily unavailable; retry with backoff",
)
