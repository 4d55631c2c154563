"""The card vault: AES-256-GCM sealing of PANs and CVCs, and keyed PAN fingerprints.

No I/O: keys come in through the constructor (the composition root reads them), sealed
values go out as plain dataclasses the adapters store.

- Each seal uses a fresh random 96-bit nonce. NIST SP 800-38D bounds random nonces to
  2**32 seals per key; rotate the active key long before that (monthly is plenty).
- Associated data binds a ciphertext to its purpose (PAN or CVC), its key id and its
  payment id, so a ciphertext copied onto another payment, or a PAN ciphertext offered as
  a CVC, fails authentication instead of decrypting.
- Rotation: every key id ever used stays in ``keys`` until nothing sealed with it is
  left; new seals use ``active_key_id``; ``needs_rotation`` finds what to re-seal.
- Fingerprints are HMAC-SHA256 under a separate key: stable for matching the same card
  across payments, useless for recovering the PAN without the key (an unkeyed hash of a
  PAN falls to brute force). Changing the fingerprint key changes every fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from payment_svc.domain.cards import PanSecret, Secret
from payment_svc.domain.errors import DecryptionFailed
from payment_svc.domain.idempotency import IdempotencyKeyHasher

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's native nonce size; other sizes are hashed and weaker
TAG_BYTES = 16
KEY_COUNT_MAX = 64
KEY_ID_MAX_CHARS = 32
PAYMENT_ID_MAX_CHARS = 128
_KEY_ID_RE = re.compile(rf"[A-Za-z0-9._-]{{1,{KEY_ID_MAX_CHARS}}}")

# Domain-separation labels; a "v1" change means a new format, never a silent edit.
_PAN_PURPOSE = b"payrail/card-vault/pan/v1"
_CVC_PURPOSE = b"payrail/card-vault/cvc/v1"
_FINGERPRINT_PURPOSE = b"payrail/card-vault/fingerprint/v1"


@dataclass(frozen=True, slots=True)
class SealedPan:
    """An encrypted PAN: which key, the nonce, and ciphertext with its 16-byte GCM tag."""

    key_id: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class SealedCvc:
    """An encrypted CVC, for short-lived storage (Redis with a TTL) only."""

    key_id: str
    nonce: bytes
    ciphertext: bytes


def _check_key(name: str, key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"{name} must be bytes")
    if len(key) != KEY_BYTES:
        raise ValueError(f"{name} must be exactly {KEY_BYTES} bytes")
    # An all-zero key is the classic placeholder that reached production.
    if not any(key):
        raise ValueError(f"{name} must not be all zero bytes")
    return bytes(key)


def _associated_data(purpose: bytes, key_id: str, payment_id: str) -> bytes:
    if not isinstance(payment_id, str) or not 1 <= len(payment_id) <= PAYMENT_ID_MAX_CHARS:
        raise ValueError(f"payment_id must be 1 to {PAYMENT_ID_MAX_CHARS} characters")
    # Purpose and key id never contain NUL, so this encoding is unambiguous.
    return b"\x00".join((purpose, key_id.encode("ascii"), payment_id.encode("utf-8")))


class CardVault:
    """Seals and opens card data with AES-256-GCM; fingerprints PANs with HMAC-SHA256.

    ``keys`` maps key id → 32-byte data-encryption key; ``active_key_id`` names the one
    new seals use; ``fingerprint_key`` is a separate 32-byte HMAC key. The repr shows
    key ids only.
    """

    __slots__ = ("_active_key_id", "_aeads", "_fingerprint_key")

    def __init__(
        self,
        keys: Mapping[str, bytes],
        *,
        active_key_id: str,
        fingerprint_key: bytes,
    ) -> None:
        if not 1 <= len(keys) <= KEY_COUNT_MAX:
            raise ValueError(f"the vault needs 1 to {KEY_COUNT_MAX} keys")
        checked: dict[str, bytes] = {}
        for key_id, key in keys.items():
            if not _KEY_ID_RE.fullmatch(key_id):
                raise ValueError(
                    f"key ids are 1 to {KEY_ID_MAX_CHARS} of A-Z a-z 0-9 . _ -; got {key_id!r}"
                )
            checked[key_id] = _check_key(f"key {key_id!r}", key)
        if active_key_id not in checked:
            raise ValueError(f"active key id {active_key_id!r} is not among the keys")
        fingerprint_key = _check_key("fingerprint_key", fingerprint_key)
        if any(hmac.compare_digest(fingerprint_key, key) for key in checked.values()):
            # One key for two jobs couples their rotation and their compromise.
            raise ValueError("fingerprint_key must differ from every data-encryption key")
        self._active_key_id = active_key_id
        self._aeads = {key_id: AESGCM(key) for key_id, key in checked.items()}
        self._fingerprint_key = fingerprint_key

    def __repr__(self) -> str:
        return f"CardVault(active_key_id={self._active_key_id!r}, key_ids={self.key_ids})"

    @property
    def active_key_id(self) -> str:
        return self._active_key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._aeads))

    def needs_rotation(self, sealed: SealedPan | SealedCvc) -> bool:
        """Sealed under a key other than the active one: re-seal it."""
        return sealed.key_id != self._active_key_id

    def fingerprint(self, pan: PanSecret) -> str:
        """Hex HMAC-SHA256 of the normalised PAN: equal for equal cards, keyed."""
        message = _FINGERPRINT_PURPOSE + b"\x00" + pan.reveal().encode("ascii")
        return hmac.new(self._fingerprint_key, message, hashlib.sha256).hexdigest()

    def idempotency_hasher(self) -> IdempotencyKeyHasher:
        """Keyed digests of idempotency keys, under a key derived from the fingerprint key."""
        return IdempotencyKeyHasher.from_root(self._fingerprint_key)

    def encrypt_pan(self, pan: PanSecret, payment_id: str) -> SealedPan:
        key_id, nonce, ciphertext = self._seal(_PAN_PURPOSE, pan.reveal(), payment_id)
        return SealedPan(key_id=key_id, nonce=nonce, ciphertext=ciphertext)

    def decrypt_pan(self, sealed: SealedPan, payment_id: str) -> PanSecret:
        plaintext = self._open(
            _PAN_PURPOSE, sealed.key_id, sealed.nonce, sealed.ciphertext, payment_id
        )
        try:
            return PanSecret(plaintext)
        except ValueError:
            # Authentic but not a PAN: only a bug on the sealing side can do this.
            raise DecryptionFailed("sealed card data is not a card number") from None

    def seal_cvc(self, cvc: Secret, payment_id: str) -> SealedCvc:
        key_id, nonce, ciphertext = self._seal(_CVC_PURPOSE, cvc.reveal(), payment_id)
        return SealedCvc(key_id=key_id, nonce=nonce, ciphertext=ciphertext)

    def open_cvc(self, sealed: SealedCvc, payment_id: str) -> Secret:
        plaintext = self._open(
            _CVC_PURPOSE, sealed.key_id, sealed.nonce, sealed.ciphertext, payment_id
        )
        return Secret(plaintext)

    def _seal(self, purpose: bytes, plaintext: str, payment_id: str) -> tuple[str, bytes, bytes]:
        key_id = self._active_key_id
        associated = _associated_data(purpose, key_id, payment_id)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._aeads[key_id].encrypt(nonce, plaintext.encode("utf-8"), associated)
        return key_id, nonce, ciphertext

    def _open(
        self, purpose: bytes, key_id: str, nonce: bytes, ciphertext: bytes, payment_id: str
    ) -> str:
        aead = self._aeads.get(key_id)
        if aead is None:
            # The key id is not secret, and naming it tells operators which key is missing.
            raise DecryptionFailed(f"sealed card data uses unknown key id {key_id!r}")
        if len(nonce) != NONCE_BYTES or len(ciphertext) < TAG_BYTES:
            raise DecryptionFailed("sealed card data is malformed")
        associated = _associated_data(purpose, key_id, payment_id)
        try:
            plaintext = aead.decrypt(nonce, ciphertext, associated)
        except InvalidTag:
            # Tampered, bound to another payment or purpose: indistinguishable, on purpose.
            raise DecryptionFailed("sealed card data failed authentication") from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionFailed("sealed card data is malformed") from None


__all__ = [
    "KEY_BYTES",
    "NONCE_BYTES",
    "CardVault",
    "SealedCvc",
    "SealedPan",
]
