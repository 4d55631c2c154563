"""The one place gateway_svc's domain errors become gRPC statuses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from gateway_svc.domain.errors import (
    AuthError,
    EmailTaken,
    InvalidCredentials,
    InvalidRegistration,
    Throttled,
    Unauthenticated,
)
from payrail_common.dependencies import TRANSIENT_ERRORS
from payrail_common.rpcerrors import abort

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
    if isinstance(error, EmailTaken):
        await abort(
            context,
            grpc.StatusCode.ALREADY_EXISTS,
            "an account with this e-mail address already exists",
            reason="EMAIL_TAKEN",
        )
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
            f"too many failed attempts; retry in {error.retry_after_s:.0f} s",
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


@asynccontextmanager
async def mapped_errors(context: Any) -> AsyncIterator[None]:
    """Run a servicer body; domain errors become their statuses, store outages UNAVAILABLE."""
    try:
        yield
    except AuthError as error:
        await abort_for(context, error)
    except TRANSIENT_ERRORS:
        log.warning("dependency unavailable", exc_info=True)
        await abort(
            context,
            grpc.StatusCode.UNAVAILABLE,
            "the service is temporarily unavailable; retry with backoff",
        )
