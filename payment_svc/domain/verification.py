"""Step-up verification: six-digit one-time codes, kept only as keyed hashes.

A payment the risk rules flag waits in REQUIRES_VERIFICATION for its owner. The owner
gets a code through the notifications channel and answers with VerifyPayment: the right
code approves the payment for dispatch; the ``ATTEMPTS_MAX``-th wrong code, an explicit
decline or expiry deny it. The code itself is never stored: only
HMAC-SHA256(key, payment id ":" code), compared in constant time, so a copy of the
database does not reveal a live code and a code for one payment is useless for another.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from payrail_common.failure_codes import (
    DECLINED_BY_OWNER,
    VERIFICATION_EXPIRED,
    VERIFICATION_FAILED,
)

CODE_DIGITS = 6
# Wrong codes allowed per challenge; the last one denies the payment.
ATTEMPTS_MAX = 5
# Failure codes of the DENIED payments this module produces.
DENIED_WRONG_CODES = VERIFICATION_FAILED
DENIED_DECLINED = DECLINED_BY_OWNER
DENIED_EXPIRED = VERIFICATION_EXPIRED


def new_code(randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    """A uniformly random code of CODE_DIGITS digits (leading zeros kept)."""
    return f"{randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def is_well_formed(code: str) -> bool:
    return len(code) == CODE_DIGITS and code.isascii() and code.isdigit()


class CodeHasher:
    """Keyed hashes of codes, bound to their payment."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the code hashing key must be at least 16 bytes")
        self._key = key

    def digest(self, payment_id: str, code: str) -> bytes:
        return hmac.new(self._key, f"{payment_id}:{code}".encode(), hashlib.sha256).digest()

    def matches(self, payment_id: str, code: str, stored: bytes) -> bool:
        return hmac.compare_digest(self.digest(payment_id, code), stored)


@dataclass(frozen=True)
class Challenge:
    """An open challenge as stored."""

    code_hash: bytes
    failed_attempts: int
    expire_time: datetime


class Answer(enum.Enum):
    VERIFIED = "verified"
    WRONG = "wrong"  # wrong code, attempts remain
    EXHAUSTED = "exhausted"  # wrong code, the last allowed one
    EXPIRED = "expired"


def judge(challenge: Challenge, code_matches: bool, now: datetime) -> Answer:
    """What an answer with a well-formed code does to an open challenge."""
    if now >= challenge.expire_time:
        return Answer.EXPIRED
    if code_matches:
        return Answer.VERIFIED
    if challenge.failed_attempts + 1 >= ATTEMPTS_MAX:
        return Answer.EXHAUSTED
    return Answer.WRONG


def attempts_remaining(failed_attempts: int) -> int:
    return max(0, ATTEMPTS_MAX - failed_attempts)
