"""What the step-up verification use cases need from storage; adapters/ implements it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from payment_svc.domain.verification import Answer
from payment_svc.service.ports import PaymentView


@dataclass(frozen=True)
class IssuedChallenge:
    """The payment after RequireVerification; expire_time is None when no code was
    issued (the payment was neither PENDING nor waiting for an answer)."""

    payment: PaymentView
    expire_time: datetime | None


@dataclass(frozen=True)
class AnswerResult:
    """The payment after an answer, what the answer did, and the attempts left."""

    payment: PaymentView
    answer: Answer
    attempts_remaining: int
    declined: bool = False


class VerificationRepository(Protocol):
    async def require(
        self, payment_id: str, reason: str, code_hash: bytes, now: datetime, ttl_s: int
    ) -> IssuedChallenge:
        """PENDING -> REQUIRES_VERIFICATION with a new challenge, or re-issue the code of
        an open one."""

    async def deny(
        self, payment_id: str, failure_code: str, failure_message: str, now: datetime
    ) -> PaymentView:
        """PENDING -> DENIED; anything else is returned unchanged."""

    async def answer(
        self,
        user_id: str,
        payment_id: str,
        *,
        decline: bool,
        matches: Callable[[bytes], bool],
        now: datetime,
    ) -> AnswerResult:
        """Apply the owner's answer in one transaction. Raises NotFound (absent or not the
        caller's) or VerificationClosed("not_awaiting")."""
