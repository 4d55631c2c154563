"""The one place gateway_svc's domain errors become gRPC statuses.

Each status carries the error's own ``reason`` (payrail_common.reasons); an error no
branch names is INTERNAL with INTERNAL_ERROR.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from gateway_svc.domain.errors import (
    AuthError,
    InvalidCredentials,
    InvalidRegistration,
    Throttled,
    Unauthenticated,
)
from payrail_common.reasons import Reason
from payrail_common.rpcerrors import INTERNAL_MESSAGE, abort, error_boundary

log = logging.getLogger(__name__)


async def abort_for(context: Any, error: AuthError) -> None:
    """End the call with the status that error stands for."""
    if isinstance(error, InvalidRegistration):
        await abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            "the registration has invalid fields",
            violations=error.violations,
            reason=error.reason,
        )
    # EmailTaken has no status on purpose: Register answers alike for a taken e-mail, so
    # it never reaches a client (were it to leak, INTERNAL below says nothing either).
    if isinstance(error, InvalidCredentials):
        await abort(
            context,
            grpc.StatusCode.UNAUTHENTICATED,
            "wrong e-mail address or password",
            reason=error.reason,
        )
    if isinstance(error, Throttled):
        await abort(
            context,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"too many attempts; retry in {error.retry_after_s:.0f} s",
            reason=error.reason,
            retry_after_s=error.retry_after_s,
        )
    if isinstance(error, Unauthenticated):
        log.info("token refused", extra={"reason": error.detail})
        await abort(
            context,
            grpc.StatusCode.UNAUTHENTICATED,
            "invalid, expired or revoked token",
            reason=error.reason,
        )
    log.error("unmapped domain error", extra={"error": type(error).__name__})
    await abort(context, grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, reason=Reason.INTERNAL_ERROR)


# Wraps every servicer body: domain errors -> statuses, outages -> UNAVAILABLE.
mapped_errors = error_boundary(
    AuthError,
    abort_for,  # type: ignore[arg-type]
    unavailable_message="the service is temporarily unavailable; retry with backoff",
)
