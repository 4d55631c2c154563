"""Step-up verification over PostgreSQL: challenges, answers and risk denials.

Each call is one transaction that locks the payment row first, so an answer, a re-issue,
the janitor and a cancellation of the same payment never interleave.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

from payment_svc.adapters.processing import locked_payment, payment_uuid, save
from payment_svc.domain.errors import NotFound, VerificationClosed
from payment_svc.domain.payment import ChallengeReissued, VerificationRequired
from payment_svc.domain.verification import (
    DENIED_DECLINED,
    DENIED_EXPIRED,
    DENIED_WRONG_CODES,
    Answer,
    Challenge,
    attempts_remaining,
    judge,
)
from payment_svc.service.ports import PaymentView
from payment_svc.service.verification_ports import AnswerResult, IssuedChallenge


async def _close(conn: asyncpg.Connection, pid: uuid.UUID, outcome: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE payments.verifications SET outcome = $2, answer_time = $3"
        " WHERE payment_id = $1 AND outcome IS NULL",
        pid,
        outcome,
        now,
    )


async def _deny(
    conn: asyncpg.Connection, current: PaymentView, code: str, message: str, now: datetime
) -> PaymentView:
    return await save(conn, current.deny_at_verification(code, message, now))


class PostgresVerificationRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def require(
        self, payment_id: str, reason: str, code_hash: bytes, now: datetime, ttl_s: int
    ) -> IssuedChallenge:
        pid = payment_uuid(payment_id)
        async with self._pool.acquire() as conn, conn.transaction():
            current = await locked_payment(conn, pid)
            change = current.require_verification(reason, now)
            if any(isinstance(e, VerificationRequired) for e in change.events):
                expire_time = now + timedelta(seconds=ttl_s)
                await conn.execute(
                    "INSERT INTO payments.verifications"
                    " (payment_id, code_hash, issue_time, expire_time) VALUES ($1, $2, $3, $4)",
                    pid,
                    code_hash,
                    now,
                    expire_time,
                )
                await conn.execute(
                    "UPDATE payments.payments SET verification_reason = $2 WHERE id = $1",
                    pid,
                    reason,
                )
                return IssuedChallenge(await save(conn, change), expire_time)
            if any(isinstance(e, ChallengeReissued) for e in change.events):
                # A re-delivered risk decision: a fresh code replaces the undelivered one;
                # the wrong-code count and the expiry stay as they were.
                expire_time = await conn.fetchval(
                    "UPDATE payments.verifications SET code_hash = $2,"
                    " issue_count = issue_count + 1, issue_time = $3"
                    " WHERE payment_id = $1 AND outcome IS NULL AND expire_time > $3"
                    " RETURNING expire_time",
                    pid,
                    code_hash,
                    now,
                )
                return IssuedChallenge(current, expire_time)
            return IssuedChallenge(current, None)

    async def deny(
        self, payment_id: str, failure_code: str, failure_message: str, now: datetime
    ) -> PaymentView:
        pid = payment_uuid(payment_id)
        async with self._pool.acquire() as conn, conn.transaction():
            current = await locked_payment(conn, pid)
            return await save(conn, current.deny(failure_code, failure_message, now))

    async def answer(
        self,
        user_id: str,
        payment_id: str,
        *,
        decline: bool,
        matches: Callable[[bytes], bool],
        now: datetime,
    ) -> AnswerResult:
        pid = payment_uuid(payment_id)
        try:
            uid = uuid.UUID(user_id)
        except ValueError:
            raise NotFound("payment") from None
        async with self._pool.acquire() as conn, conn.transaction():
            current = await locked_payment(conn, pid)
            if current.user_id != str(uid):
                raise NotFound("payment")  # someone else's: the same answer as absent
            row = None
            if current.awaiting_verification:
                row = await conn.fetchrow(
                    "SELECT code_hash, failed_attempts, expire_time FROM payments.verifications"
                    " WHERE payment_id = $1 AND outcome IS NULL FOR UPDATE",
                    pid,
                )
            if row is None:
                raise VerificationClosed("not_awaiting", current.status.value)
            if decline:
                await _close(conn, pid, "DECLINED", now)
                denied = await _deny(
                    conn, current, DENIED_DECLINED, "declined by its owner at verification", now
                )
                return AnswerResult(denied, Answer.VERIFIED, 0, declined=True)
            challenge = Challenge(
                bytes(row["code_hash"]), row["failed_attempts"], row["expire_time"]
            )
            verdict = judge(challenge, matches(challenge.code_hash), now)
            if verdict is Answer.EXPIRED:
                await _close(conn, pid, "EXPIRED", now)
                denied = await _deny(
                    conn, current, DENIED_EXPIRED, "the verification code expired", now
                )
                return AnswerResult(denied, verdict, 0)
            if verdict is Answer.VERIFIED:
                await _close(conn, pid, "VERIFIED", now)
                verified = await save(conn, current.verify(now))
                remaining = attempts_remaining(challenge.failed_attempts)
                return AnswerResult(verified, verdict, remaining)
            failed = challenge.failed_attempts + 1
            await conn.execute(
                "UPDATE payments.verifications SET failed_attempts = $2 WHERE payment_id = $1",
                pid,
                failed,
            )
            if verdict is Answer.EXHAUSTED:
                await _close(conn, pid, "FAILED", now)
                denied = await _deny(
                    conn, current, DENIED_WRONG_CODES, "too many wrong verification codes", now
                )
                return AnswerResult(denied, verdict, 0)
            return AnswerResult(current, verdict, attempts_remaining(failed))
