"""How client idempotency keys are stored: as keyed digests, never as the client sent them.

A key is free text chosen by the client, and clients put order numbers, e-mail addresses
and even card numbers in it. Lookups need only equality, so the database keeps
HMAC-SHA256 of (user, key) under a key derived from the vault's fingerprint key: equal
for equal keys, useless without the secret (an unkeyed hash of a 16-digit number falls to
brute force). The request fingerprint stored next to it is an unkeyed SHA-256 over the
request, key included, so it is wrapped the same way.

Stored values carry a version prefix (``hmac-v1:``) so that rows written before hashing
can be told apart and hashed in place (``adapters/idempotency_keys.py``).
"""

from __future__ import annotations

import hashlib
import hmac

STORED_PREFIX = "hmac-v1:"
DERIVED_KEY_BYTES = 32
# Derivation label: a purpose of its own, so neither this digest nor a card fingerprint
# can stand in for the other.
_DERIVATION_LABEL = b"payrail idempotency keys v1"
_KEY_PURPOSE = b"key"
_REQUEST_PURPOSE = b"request"


class IdempotencyKeyHasher:
    """Keyed digests of idempotency keys and request fingerprints. The repr shows nothing."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != DERIVED_KEY_BYTES or not any(key):
            raise ValueError(f"the idempotency key hasher needs {DERIVED_KEY_BYTES} random bytes")
        self._key = bytes(key)

    @classmethod
    def from_root(cls, fingerprint_key: bytes) -> IdempotencyKeyHasher:
        """Derived from the vault's fingerprint key (HMAC-SHA256 with a fixed label)."""
        return cls(hmac.new(fingerprint_key, _DERIVATION_LABEL, hashlib.sha256).digest())

    def __repr__(self) -> str:
        return "IdempotencyKeyHasher(<redacted>)"

    def stored_key(self, user_id: str, idempotency_key: str) -> str:
        """What the database keeps for this user's key."""
        return self._digest(_KEY_PURPOSE, user_id, idempotency_key)

    def stored_request_hash(self, request_fingerprint: str) -> str:
        """What the database keeps for a request fingerprint (see ``request_fingerprint``)."""
        return self._digest(_REQUEST_PURPOSE, request_fingerprint)

    def _digest(self, purpose: bytes, *parts: str) -> str:
        # NUL never occurs in a purpose or a user id, and the last part runs to the end,
        # so the encoding is unambiguous.
        encoded = (part.encode("utf-8", "surrogatepass") for part in parts)
        message = b"\x00".join([purpose, *encoded])
        return STORED_PREFIX + hmac.new(self._key, message, hashlib.sha256).hexdigest()


__all__ = ["STORED_PREFIX", "IdempotencyKeyHasher"]
