"""The one error hierarchy of gateway_svc; api/errors.py maps it to gRPC statuses.

Every error carries the ``reason`` a client hears (payrail_common.reasons).
"""

from __future__ import annotations

from collections.abc import Sequence

from payrail_common.fields import FieldViolation
from payrail_common.reasons import Reason


class AuthError(Exception):
    """Base of every error gateway_svc reports to a client."""

    # A subclass that no mapping names is a fault of the server: INTERNAL.
    reason: Reason = Reason.INTERNAL_ERROR


class InvalidRegistration(AuthError):
    """One or more registration fields are invalid; nothing was written."""

    reason = Reason.VALIDATION_FAILED

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        super().__init__("invalid registration")
        self.violations = tuple(violations)


class EmailTaken(AuthError):
    """An account with this e-mail (in any case) exists.

    Raised by the account store and handled by Register, which answers a taken e-mail
    like a new one: it never reaches a client.
    """


class InvalidCredentials(AuthError):
    """Wrong password or unknown e-mail: deliberately indistinguishable."""

    reason = Reason.INVALID_CREDENTIALS


class Throttled(AuthError):
    """Too many failed attempts; retry after ``retry_after_s`` seconds."""

    reason = Reason.TOO_MANY_ATTEMPTS

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many attempts")
        self.retry_after_s = retry_after_s


class Unauthenticated(AuthError):
    """The access token's account is gone (or the token is otherwise refused).

    ``detail`` is for logs and metrics only; clients get one generic message.
    """

    reason = Reason.ACCESS_TOKEN_INVALID

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class RefreshTokenRefused(Unauthenticated):
    """The refresh token is missing, unknown, expired, revoked or already spent."""

    reason = Reason.REFRESH_TOKEN_INVALID
