"""Step-up codes: generation, keyed hashing, and how answers are judged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from payment_svc.domain.verification import (
    ATTEMPTS_MAX,
    Answer,
    Challenge,
    CodeHasher,
    attempts_remaining,
    is_well_formed,
    judge,
    new_code,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
KEY = b"k" * 32


def test_codes_are_six_digits_with_leading_zeros() -> None:
    assert new_code(lambda _: 42) == "000042"
    assert new_code(lambda _: 999_999) == "999999"
    codes = {new_code() for _ in range(200)}
    assert all(is_well_formed(c) for c in codes)
    assert len(codes) > 190  # random, not a counter


# The last but one is six full-width digits: str.isdigit() accepts them, codes must not.
FULL_WIDTH = "\uff11\uff12\uff13\uff14\uff15\uff16"


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12a456", FULL_WIDTH, " 123456"])
def test_malformed_codes(code: str) -> None:
    assert not is_well_formed(code)


def test_hash_is_keyed_and_bound_to_the_payment() -> None:
    hasher = CodeHasher(KEY)
    digest = hasher.digest("pay-1", "123456")
    assert len(digest) == 32
    assert b"123456" not in digest
    assert hasher.matches("pay-1", "123456", digest)
    assert not hasher.matches("pay-1", "123457", digest)
    assert not hasher.matches("pay-2", "123456", digest)  # useless for another payment
    assert not CodeHasher(b"x" * 32).matches("pay-1", "123456", digest)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        CodeHasher(b"short")


def challenge(failed: int = 0, expires_in: timedelta = timedelta(minutes=10)) -> Challenge:
    return Challenge(b"h" * 32, failed, NOW + expires_in)


def test_right_code_verifies() -> None:
    assert judge(challenge(), True, NOW) is Answer.VERIFIED


def test_wrong_codes_count_down_to_exhaustion() -> None:
    for failed in range(ATTEMPTS_MAX - 1):
        assert judge(challenge(failed), False, NOW) is Answer.WRONG
    assert judge(challenge(ATTEMPTS_MAX - 1), False, NOW) is Answer.EXHAUSTED
    assert attempts_remaining(0) == 5
    assert attempts_remaining(4) == 1


def test_an_expired_challenge_refuses_even_the_right_code() -> None:
    assert judge(challenge(expires_in=timedelta(0)), True, NOW) is Answer.EXPIRED
    assert judge(challenge(expires_in=-timedelta(seconds=1)), False, NOW) is Answer.EXPIRED
