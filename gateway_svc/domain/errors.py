"""The one error hierarchy of gateway_svc; api/errors.py maps it to gRPC statuses."""

from __future__ import annotations

from collections.abc import Sequence

from payrail_common.fields import FieldViolation


class AuthError(Exception):
    """Base of every error gateway_svc reports to a client."""


class InvalidRegistration(AuthError):
    """One or more registration fields are invalid; nothing was written."""

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


class Throttled(AuthError):
    """Too many failed attempts; retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many attempts")
        self.retry_after_s = retry_after_s


class Unauthenticated(AuthError):
    """The access or refresh token is missing, invalid, expired or revoked.

    ``reason`` is for logs and metrics only; clients get one generic message.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
