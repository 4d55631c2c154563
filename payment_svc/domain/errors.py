"""The one error hierarchy of payment_svc's domain; the api layer maps it to gRPC statuses.

Every error carries a stable ``reason`` from the one catalogue
(:class:`payrail_common.reasons.Reason`, sent to clients as the ``google.rpc.ErrorInfo``
reason) and says whether retrying the same call can help.
Messages are shown to clients and written to logs, so none of them ever contains card
data, a secret or another user's information.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from payrail_common.fields import FieldViolation
from payrail_common.reasons import Reason


class DomainError(Exception):
    """Base of every error payment_svc reports to a client."""

    # A subclass that no mapping names is a fault of the server: INTERNAL.
    reason: Reason = Reason.INTERNAL_ERROR
    # True when the same call may succeed later without the caller changing anything.
    retriable: ClassVar[bool] = False


class ValidationFailed(DomainError):
    """One or more request fields are invalid; nothing was written."""

    reason = Reason.VALIDATION_FAILED

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        if not violations:
            raise ValueError("ValidationFailed needs at least one violation")
        super().__init__(f"{len(violations)} invalid field(s)")
        self.violations = tuple(violations)


class InvalidTransition(DomainError):
    """A payment cannot move from its current status to the requested one."""

    reason = Reason.PAYMENT_STATUS_CONFLICT

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a payment in status {current} cannot become {target}")
        self.current = current
        self.target = target


class InsufficientFunds(DomainError):
    """The wallet's available balance in this currency does not cover the amount."""

    reason = Reason.INSUFFICIENT_FUNDS

    def __init__(self, currency_code: str) -> None:
        super().__init__(f"insufficient available balance in {currency_code}")
        self.currency_code = currency_code


class IdempotencyKeyReused(DomainError):
    """The idempotency key was used before by this user with other parameters."""

    reason = Reason.IDEMPOTENCY_KEY_REUSED

    def __init__(self) -> None:
        super().__init__("the idempotency key was already used with different parameters")


class NotFound(DomainError):
    """The resource does not exist, or belongs to someone else: deliberately the same."""

    reason = Reason.NOT_FOUND

    def __init__(self, resource: str) -> None:
        super().__init__(f"{resource} not found")
        self.resource = resource


class DecryptionFailed(DomainError):
    """Sealed card data could not be opened: tampered, bound to another payment, or
    sealed with a key this process does not hold. The message never describes content.
    Never a client's doing: if it reaches one, it is INTERNAL."""

    reason = Reason.INTERNAL_ERROR


__all__ = [
    "DecryptionFailed",
    "DomainError",
    "IdempotencyKeyReused",
    "InsufficientFunds",
    "InvalidTransition",
    "NotFound",
    "ValidationFailed",
]


class CallbackRejected(DomainError):
    """A gateway callback failed authentication: unknown gateway, bad, missing or stale
    signature. ``detail`` is for logs only; the client hears one generic message."""

    reason = Reason.CALLBACK_REJECTED

    def __init__(self, detail: str) -> None:
        super().__init__("callback rejected")
        self.detail = detail


class ResultConflict(DomainError):
    """A gateway reported an outcome that contradicts the payment's final state."""

    reason = Reason.RESULT_CONFLICT

    def __init__(self, current: str) -> None:
        super().__init__(f"the payment is already {current}")
        self.current = current


class VerificationCodeInvalid(DomainError):
    """A wrong one-time code; the challenge stays open with fewer attempts left."""

    reason = Reason.VERIFICATION_CODE_INVALID

    def __init__(self, attempts_remaining: int) -> None:
        super().__init__(
            f"the verification code is not correct; {attempts_remaining} attempt(s) left"
        )
        self.attempts_remaining = attempts_remaining


class VerificationClosed(DomainError):
    """The payment does not (or no longer) await verification. ``outcome`` says why:
    ``not_awaiting`` (never flagged, already verified or already final),
    ``attempts_exhausted`` or ``expired`` (both just made it DENIED)."""

    reason = Reason.PAYMENT_NOT_AWAITING_VERIFICATION
    _REASONS: ClassVar[dict[str, Reason]] = {
        "attempts_exhausted": Reason.VERIFICATION_ATTEMPTS_EXHAUSTED,
        "expired": Reason.VERIFICATION_EXPIRED,
    }

    def __init__(self, outcome: str, status: str) -> None:
        messages = {
            "attempts_exhausted": "too many wrong codes; the payment is now DENIED",
            "expired": "the verification code expired; the payment is now DENIED",
        }
        super().__init__(
            messages.get(outcome, f"the payment does not await verification (status {status})")
        )
        self.outcome = outcome
        self.status = status
        self.reason = self._REASONS.get(outcome, Reason.PAYMENT_NOT_AWAITING_VERIFICATION)


class ProcessingBacklog(DomainError):
    """Too many accepted payments are not settled yet (PENDING or PROCESSING): a new one
    is refused until the pipeline catches up, so accepting never outruns settling
    without bound."""

    reason = Reason.PROCESSING_BACKLOG
    retriable = True

    def __init__(self, unsettled: int, unsettled_max: int, retry_after_s: float) -> None:
        super().__init__(
            f"{unsettled} accepted payments are still being processed (at most {unsettled_max});"
            " retry later"
        )
        self.unsettled = unsettled
        self.unsettled_max = unsettled_max
        self.retry_after_s = retry_after_s
