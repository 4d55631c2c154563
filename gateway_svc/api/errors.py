"""The one place gateway_svc's domain errors become gRPC statuses."""

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
from payrail_common.rpcerrors import abort, error_boundary

log = logging.getLogger(__name__)


async def abort_for(context: Any, error: AuthError) -> None:
    """End the call with the status that error stands for."""
    if isinstance(error, InvalidRegistration):
        await abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            "the registration has invalid fields",
            violations=error.violations,
            reason="INVALID_REGISTRATION",
        )
    # EmailTaken has no status on purpose: Register answers alike for a taken e-mail, so
    # it never reaches a client (were it to leak, INTERNAL below says nothing either).
    if isinstance(error, InvalidCredentials):
        await abort(
            context,
            grpc.StatusCode.UNAUTHENTICATED,
            "wrong e-mail address or password",
            reason="INVALID_CREDENTIALS",
        )
    if isinstance(error, Throttled):
        await abort(
            context,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"too many attempts; retry in {error.retry_after_s:.0f} s",
            reason="TOO_MANY_ATTEMPTS",
            retry_after_s=error.retry_after_s,
        )
    if isinstance(error, Unauthenticated):
        log.info("token refused", extra={"reason": error.reason})
        await abort(
            context,
            grpc.StatusCode.UNAUTHENTICATED,
            "invalid, expired or revoked token",
            reason="INVALID_TOKEN",
        )
    await abort(context, grpc.StatusCode.INTERNAL, "internal error")


# Wraps every servicer body: domain errors -> statuses, outages -> UNAVAILABLE.
mapped_errors = error_boundary(
    AuthError,
    abort_for,  # type: ignore[arg-type]
    unavailable_message="the service is temporarily unavailable; retry with backoff",
)
