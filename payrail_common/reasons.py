"""The one catalogue of ``google.rpc.ErrorInfo`` reasons payrail sends (standard library only).

Every non-OK status a payrail server sends carries an ``ErrorInfo`` whose ``domain`` is
:data:`ERROR_DOMAIN` and whose ``reason`` is one of :class:`Reason`: one reason per kind
of failure, the same in every service, so a client can program against it (the message
is for people and may change). :func:`payrail_common.rpcerrors.abort` takes a
``Reason``, so a status cannot be sent without one from here.

:data:`CATALOGUE` says, per reason, the gRPC code(s) it comes with, what it means,
whether the same call may succeed later unchanged, the ``ErrorInfo.metadata`` keys it
carries and the other details (``BadRequest``, ``RetryInfo``). docs/errors.md is the
reference table for clients; a test keeps the two equal.

Deliberately coarse where finer would help an attacker: a forged, malformed, revoked
(logged out) or unasserted access token is one reason, ``ACCESS_TOKEN_INVALID``; only
a genuine token whose lifetime is over is ``ACCESS_TOKEN_EXPIRED`` (its ``exp`` claim
says as much to anyone holding it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum, auto
from typing import Final

# ErrorInfo.domain of every payrail error.
ERROR_DOMAIN: Final = "payrail.dev"

# The names of the other google.rpc details a status may carry.
BAD_REQUEST: Final = "BadRequest"
RETRY_INFO: Final = "RetryInfo"


class Reason(StrEnum):
    """Every ErrorInfo reason (its value is its name); the meaning of each is in
    :data:`CATALOGUE`."""

    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[str]) -> str:
        return name

    # The request
    VALIDATION_FAILED = auto()
    MALFORMED_REQUEST = auto()
    VERIFICATION_CODE_INVALID = auto()
    # Who is calling
    ACCESS_TOKEN_MISSING = auto()
    ACCESS_TOKEN_EXPIRED = auto()
    ACCESS_TOKEN_INVALID = auto()
    REFRESH_TOKEN_INVALID = auto()
    INVALID_CREDENTIALS = auto()
    SERVICE_TOKEN_INVALID = auto()
    CALLBACK_REJECTED = auto()
    # What the caller may do
    ADMIN_ROLE_REQUIRED = auto()
    NOT_FOUND = auto()
    # The state of things
    IDEMPOTENCY_KEY_REUSED = auto()
    INSUFFICIENT_FUNDS = auto()
    PAYMENT_STATUS_CONFLICT = auto()
    RESULT_CONFLICT = auto()
    PAYMENT_NOT_AWAITING_VERIFICATION = auto()
    VERIFICATION_ATTEMPTS_EXHAUSTED = auto()
    VERIFICATION_EXPIRED = auto()
    # Capacity and health
    TOO_MANY_ATTEMPTS = auto()
    PROCESSING_BACKLOG = auto()
    SERVER_OVERLOADED = auto()
    DEPENDENCY_UNAVAILABLE = auto()
    INTERNAL_ERROR = auto()


@dataclass(frozen=True)
class ReasonInfo:
    """What a client needs to know of one reason."""

    # gRPC status code names this reason is sent with.
    codes: tuple[str, ...]
    # One line: what happened.
    meaning: str
    # True when the same call, unchanged, may succeed later (after RetryInfo's delay or
    # with backoff); False when something must change first (the request, a token...).
    retriable: bool
    # The keys of ErrorInfo.metadata; always all of them.
    metadata: tuple[str, ...] = ()
    # Other google.rpc details in the status (BAD_REQUEST, RETRY_INFO).
    details: tuple[str, ...] = ()


CATALOGUE: Final[Mapping[Reason, ReasonInfo]] = {
    Reason.VALIDATION_FAILED: ReasonInfo(
        ("INVALID_ARGUMENT",),
        "one or more request fields are invalid (each is named in BadRequest); nothing was written",
        retriable=False,
        details=(BAD_REQUEST,),
    ),
    Reason.MALFORMED_REQUEST: ReasonInfo(
        ("INVALID_ARGUMENT",),
        "the request bytes are not a serialized message of the RPC's request type",
        retriable=False,
        details=(BAD_REQUEST,),
    ),
    Reason.VERIFICATION_CODE_INVALID: ReasonInfo(
        ("INVALID_ARGUMENT",),
        "the one-time code is not the one that was sent; the challenge stays open",
        retriable=False,
        metadata=("attempts_remaining",),
        details=(BAD_REQUEST,),
    ),
    Reason.ACCESS_TOKEN_MISSING: ReasonInfo(
        ("UNAUTHENTICATED",),
        "the RPC needs `authorization: Bearer <access_token>` and none was sent",
        retriable=False,
    ),
    Reason.ACCESS_TOKEN_EXPIRED: ReasonInfo(
        ("UNAUTHENTICATED",),
        "the access token is genuine but its lifetime is over: refresh it",
        retriable=False,
    ),
    Reason.ACCESS_TOKEN_INVALID: ReasonInfo(
        ("UNAUTHENTICATED",),
        "the access token is not accepted: malformed, forged, signed with an unknown"
        " key, its session ended (logout, refresh-token reuse), its account is gone, or"
        " (internal ports) the call did not come through the edge",
        retriable=False,
    ),
    Reason.REFRESH_TOKEN_INVALID: ReasonInfo(
        ("UNAUTHENTICATED",),
        "the refresh token is missing, unknown, expired, revoked or already spent: log in again",
        retriable=False,
    ),
    Reason.INVALID_CREDENTIALS: ReasonInfo(
        ("UNAUTHENTICATED",),
        "wrong e-mail address or password (deliberately indistinguishable)",
        retriable=False,
    ),
    Reason.SERVICE_TOKEN_INVALID: ReasonInfo(
        ("UNAUTHENTICATED",),
        "an internal RPC without the service token, or with a wrong one",
        retriable=False,
    ),
    Reason.CALLBACK_REJECTED: ReasonInfo(
        ("UNAUTHENTICATED",),
        "a gateway callback's signature, timestamp, gateway or payload is not accepted;"
        " nothing was applied",
        retriable=False,
    ),
    Reason.ADMIN_ROLE_REQUIRED: ReasonInfo(
        ("PERMISSION_DENIED",),
        "the RPC is for callers whose token carries the admin role",
        retriable=False,
    ),
    Reason.NOT_FOUND: ReasonInfo(
        ("NOT_FOUND",),
        "the resource does not exist or is someone else's (deliberately the same answer)",
        retriable=False,
    ),
    Reason.IDEMPOTENCY_KEY_REUSED: ReasonInfo(
        ("FAILED_PRECONDITION",),
        "the idempotency_key was used before by this user with other parameters",
        retriable=False,
    ),
    Reason.INSUFFICIENT_FUNDS: ReasonInfo(
        ("FAILED_PRECONDITION",),
        "the wallet's available balance in the currency does not cover the amount",
        retriable=False,
        metadata=("currency_code",),
    ),
    Reason.PAYMENT_STATUS_CONFLICT: ReasonInfo(
        ("FAILED_PRECONDITION",),
        "not possible for a payment in its current status (e.g. cancelling one already dispatched)",
        retriable=False,
        metadata=("status",),
    ),
    Reason.RESULT_CONFLICT: ReasonInfo(
        ("FAILED_PRECONDITION",),
        "a gateway's result contradicts the payment's state (e.g. DECLINED for a payment"
        " already COMPLETED); nothing was applied",
        retriable=False,
        metadata=("status",),
    ),
    Reason.PAYMENT_NOT_AWAITING_VERIFICATION: ReasonInfo(
        ("FAILED_PRECONDITION",),
        "the payment does not await step-up verification (never flagged, already"
        " verified, or final)",
        retriable=False,
        metadata=("status",),
    ),
    Reason.VERIFICATION_ATTEMPTS_EXHAUSTED: ReasonInfo(
        ("FAILED_PRECONDITION",),
        "the last allowed wrong code: the payment is now DENIED",
        retriable=False,
        metadata=("status",),
    ),
    Reason.VERIFICATION_EXPIRED: ReasonInfo(
        ("FAILED_PRECONDITION",),
        "the verification code expired: the payment is now DENIED",
        retriable=False,
        metadata=("status",),
    ),
    Reason.TOO_MANY_ATTEMPTS: ReasonInfo(
        ("RESOURCE_EXHAUSTED",),
        "too many logins or registrations for this e-mail or client address; retry"
        " after RetryInfo's delay",
        retriable=True,
        details=(RETRY_INFO,),
    ),
    Reason.PROCESSING_BACKLOG: ReasonInfo(
        ("RESOURCE_EXHAUSTED",),
        "too many accepted payments are not settled yet; nothing was written, retry"
        " after RetryInfo's delay",
        retriable=True,
        metadata=("unsettled", "unsettled_max"),
        details=(RETRY_INFO,),
    ),
    Reason.SERVER_OVERLOADED: ReasonInfo(
        ("RESOURCE_EXHAUSTED",),
        "the process has too many calls in flight and shed this one before any work;"
        " retry after RetryInfo's delay",
        retriable=True,
        details=(RETRY_INFO,),
    ),
    Reason.DEPENDENCY_UNAVAILABLE: ReasonInfo(
        ("UNAVAILABLE", "DEADLINE_EXCEEDED"),
        "a service or store the call needs did not answer (in time); retry with backoff",
        retriable=True,
        details=(RETRY_INFO,),
    ),
    Reason.INTERNAL_ERROR: ReasonInfo(
        ("INTERNAL",),
        "a fault of the server, logged there with its details; the client's request may"
        " or may not have taken effect",
        retriable=False,
    ),
}


__all__ = ["BAD_REQUEST", "CATALOGUE", "ERROR_DOMAIN", "RETRY_INFO", "Reason", "ReasonInfo"]
