from __future__ import annotations

import re

import pytest

from payment_svc.domain.idempotency import IdempotencyKeyHasher

ROOT = bytes(range(1, 33))
STORED = re.compile(r"hmac-v1:[0-9a-f]{64}")


def test_keys_are_stored_as_keyed_digests_scoped_to_the_user() -> None:
    hasher = IdempotencyKeyHasher.from_root(ROOT)
    stored = hasher.stored_key("user-1", "order-4111113986882099")
    assert STORED.fullmatch(stored)
    assert stored == hasher.stored_key("user-1", "order-4111113986882099")
    assert stored != hasher.stored_key("user-2", "order-4111113986882099")
    assert stored != hasher.stored_key("user-1", "order-4111113986882098")
    assert stored != IdempotencyKeyHasher.from_root(bytes(range(2, 34))).stored_key(
        "user-1", "order-4111113986882099"
    )


def test_request_digests_are_a_purpose_of_their_own() -> None:
    hasher = IdempotencyKeyHasher.from_root(ROOT)
    assert STORED.fullmatch(hasher.stored_request_hash("ab" * 32))
    # The same text as a key and as a request fingerprint never gives the same digest.
    assert hasher.stored_request_hash("x") != hasher.stored_key("", "x")


def test_the_repr_shows_nothing_and_weak_keys_are_refused() -> None:
    assert "1" not in repr(IdempotencyKeyHasher.from_root(ROOT))
    for key in (bytes(32), bytes(16)):
        with pytest.raises(ValueError, match="32 random bytes"):
            IdempotencyKeyHasher(key)
