"""Step-up verification use cases: flag a payment for its owner, deny one risk refused,
and take the owner's answer.

The one-time code is made here and returned to the caller that delivers it
(consumer_svc publishes it on the notifications topic); storage only ever sees its keyed
hash. Answers are judged by the pure rules in :mod:`payment_svc.domain.verification`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from payment_svc.domain.errors import (
    ValidationFailed,
    VerificationClosed,
    VerificationCodeInvalid,
)
from payment_svc.domain.verification import (
    CODE_DIGITS,
    Answer,
    CodeHasher,
    is_well_formed,
    new_code,
)
from payment_svc.service import lifecycle
from payment_svc.service.ports import PaymentCache, PaymentView
from payment_svc.service.verification_ports import VerificationRepository
from payrail_common.fields import FieldViolation

REASON_MAX = 500
FAILURE_CODE_MAX = 64


@dataclass(frozen=True)
class Challenge:
    """What RequireVerification hands back: the code to deliver (or "" when none was
    issued) and when it expires."""

    payment: PaymentView
    code: str
    expire_time: datetime | None

    def __repr__(self) -> str:  # the code never reaches a log through a repr
        return f"Challenge(payment_id={self.payment.payment_id!r}, code=<redacted>)"


class Verifications:
    def __init__(
        self,
        *,
        repository: VerificationRepository,
        cache: PaymentCache,
        hasher: CodeHasher,
        ttl_s: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        make_code: Callable[[], str] = new_code,
    ) -> None:
        self._repository = repository
        self._cache = cache
        self._hasher = hasher
        self._ttl_s = ttl_s
        self._clock = clock
        self._make_code = make_code

    async def require(self, payment_id: str, reason: str) -> Challenge:
        code = self._make_code()
        issued = await self._repository.require(
            payment_id,
            reason[:REASON_MAX],
            self._hasher.digest(payment_id, code),
            self._clock(),
            self._ttl_s,
        )
        await self._cache.put(issued.payment)
        if issued.expire_time is None:
            return Challenge(issued.payment, "", None)
        lifecycle.step("requires verification", issued.payment, reason=reason[:REASON_MAX])
        return Challenge(issued.payment, code, issued.expire_time)

    async def deny(self, payment_id: str, failure_code: str, failure_message: str) -> PaymentView:
        if not failure_code or len(failure_code) > FAILURE_CODE_MAX:
            raise ValidationFailed(
                [FieldViolation("failure_code", f"must be 1 to {FAILURE_CODE_MAX} characters")]
            )
        view = await self._repository.deny(
            payment_id, failure_code, failure_message[:REASON_MAX], self._clock()
        )
        await self._cache.put(view)
        lifecycle.step("denied", view)
        return view

    async def answer(self, user_id: str, payment_id: str, code: str, decline: bool) -> PaymentView:
        """Apply the owner's answer; raises VerificationCodeInvalid for a wrong code with
        attempts left and VerificationClosed when the payment is (or just became) no
        longer verifiable. State changes are committed before any error is raised."""
        if not decline and not is_well_formed(code):
            raise ValidationFailed(
                [FieldViolation("code", f"must be the {CODE_DIGITS}-digit code that was sent")]
            )
        result = await self._repository.answer(
            user_id,
            payment_id,
            decline=decline,
            matches=lambda stored: self._hasher.matches(payment_id, code, stored),
            now=self._clock(),
        )
        await self._cache.put(result.payment)
        if result.declined:
            lifecycle.step("declined by its owner", result.payment)
            return result.payment
        if result.answer is Answer.WRONG:
            raise VerificationCodeInvalid(result.attempts_remaining)
        if result.answer is Answer.EXHAUSTED:
            raise VerificationClosed("attempts_exhausted", result.payment.status.value)
        if result.answer is Answer.EXPIRED:
            raise VerificationClosed("expired", result.payment.status.value)
        lifecycle.step("verified", result.payment)
        return result.payment
