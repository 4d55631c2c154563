"""Card data sealed to one gateway's X25519 public key (ECIES-style, version 1).

Sealing, per message:

1. a fresh ephemeral X25519 key pair; ``shared = X25519(ephemeral_private, recipient_public)``;
2. ``key = HKDF-SHA256(ikm=shared, salt=ephemeral_public || recipient_public,
   info=b"payrail card seal v1", length=32)``;
3. ``ciphertext || tag = AES-256-GCM(key, nonce=12 random bytes, plaintext,
   associated_data)``, the associated data being the payment id (UTF-8), so a sealed
   card cannot be moved to another payment.

The envelope is ``0x01 || ephemeral_public (32) || nonce (12) || ciphertext || tag (16)``,
base64 (standard alphabet, padded) in text formats. Only the holder of the gateway's
private key reads it; payrail itself keeps no key that opens it.

Every failure to open an envelope is the same :class:`SealingError`: it says neither
which check failed nor anything about the content.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENVELOPE_VERSION: Final = 1
HKDF_INFO: Final = b"payrail card seal v1"
PUBLIC_KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
KEY_BYTES: Final = 32
_HEADER_BYTES = 1 + PUBLIC_KEY_BYTES + NONCE_BYTES
# A card document is under 700 bytes even with a 100-character name of 4-byte characters;
# 1 KiB bounds what a sealed envelope may make us decrypt and parse.
PLAINTEXT_MAX_BYTES: Final = 1024
ENVELOPE_MIN_BYTES: Final = _HEADER_BYTES + TAG_BYTES
ENVELOPE_MAX_BYTES: Final = _HEADER_BYTES + PLAINTEXT_MAX_BYTES + TAG_BYTES
ASSOCIATED_DATA_MAX_BYTES: Final = 256

PAN_MIN_DIGITS: Final = 12
PAN_MAX_DIGITS: Final = 19
HOLDER_NAME_MAX_CHARS: Final = 100
_DIGITS_RE = re.compile(r"[0-9]+")
_CVC_RE = re.compile(r"[0-9]{3,4}")
_PEM_PREFIX = b"-----BEGIN"
_REDACTED = "<redacted>"

SealingReason = Literal["malformed", "unsupported_version", "unseal_failed", "invalid_key"]


class SealingError(ValueError):
    """A sealed envelope or a key was not usable. ``reason`` is stable and safe to log:
    ``malformed`` (not an envelope), ``unsupported_version``, ``unseal_failed`` (wrong
    key, wrong associated data or tampered: deliberately not told apart) or
    ``invalid_key``. The message never describes content."""

    def __init__(self, reason: SealingReason) -> None:
        super().__init__(f"sealed card not usable: {reason}")
        self.reason: SealingReason = reason


@dataclass(frozen=True, slots=True)
class SealedCard:
    """A version-1 envelope. Holds ciphertext only, so its repr is harmless."""

    ephemeral_public_key: bytes
    nonce: bytes
    ciphertext: bytes  # AES-GCM output: the encrypted plaintext followed by the 16-byte tag
    version: int = ENVELOPE_VERSION

    def __post_init__(self) -> None:
        if self.version != ENVELOPE_VERSION:
            raise SealingError("unsupported_version")
        if (
            not isinstance(self.ephemeral_public_key, bytes)
            or not isinstance(self.nonce, bytes)
            or not isinstance(self.ciphertext, bytes)
            or len(self.ephemeral_public_key) != PUBLIC_KEY_BYTES
            or len(self.nonce) != NONCE_BYTES
            or not TAG_BYTES <= len(self.ciphertext) <= PLAINTEXT_MAX_BYTES + TAG_BYTES
        ):
            raise SealingError("malformed")

    def to_bytes(self) -> bytes:
        """The canonical encoding: version, ephemeral public key, nonce, ciphertext+tag."""
        return bytes([self.version]) + self.ephemeral_public_key + self.nonce + self.ciphertext

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedCard:
        if not isinstance(data, bytes) or not ENVELOPE_MIN_BYTES <= len(data) <= ENVELOPE_MAX_BYTES:
            raise SealingError("malformed")
        if data[0] != ENVELOPE_VERSION:
            raise SealingError("unsupported_version")
        return cls(
            ephemeral_public_key=data[1 : 1 + PUBLIC_KEY_BYTES],
            nonce=data[1 + PUBLIC_KEY_BYTES : _HEADER_BYTES],
            ciphertext=data[_HEADER_BYTES:],
        )

    def to_base64(self) -> str:
        return base64.b64encode(self.to_bytes()).decode("ascii")

    @classmethod
    def from_base64(cls, text: str) -> SealedCard:
        """Strict standard base64 (padding required, no white space)."""
        # Checked before decoding so an oversized string costs nothing.
        if not isinstance(text, str) or len(text) > 4 * ((ENVELOPE_MAX_BYTES + 2) // 3):
            raise SealingError("malformed")
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise SealingError("malformed") from None
        return cls.from_bytes(raw)


# ------------------------------------------------------------------------------ keys


def generate_key_pair() -> tuple[X25519PrivateKey, X25519PublicKey]:
    """A gateway's key pair: keep the private key secret, register the public one."""
    private_key = X25519PrivateKey.generate()
    return private_key, private_key.public_key()


def load_private_key(data: bytes) -> X25519PrivateKey:
    """An X25519 private key from 32 raw bytes or unencrypted PKCS#8 PEM."""
    try:
        if data.startswith(_PEM_PREFIX):
            key = serialization.load_pem_private_key(data, password=None)
            if isinstance(key, X25519PrivateKey):
                return key
        elif len(data) == PUBLIC_KEY_BYTES:
            return X25519PrivateKey.from_private_bytes(data)
    except (ValueError, TypeError):
        pass
    raise SealingError("invalid_key")


def load_public_key(data: bytes) -> X25519PublicKey:
    """An X25519 public key from 32 raw bytes (the registry's form) or SPKI PEM."""
    try:
        if data.startswith(_PEM_PREFIX):
            key = serialization.load_pem_public_key(data)
            if isinstance(key, X25519PublicKey):
                return key
        elif len(data) == PUBLIC_KEY_BYTES:
            return X25519PublicKey.from_public_bytes(data)
    except (ValueError, TypeError):
        pass
    raise SealingError("invalid_key")


def private_key_to_pem(key: X25519PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM; protect the file, not the bytes."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_to_raw(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def public_key_to_pem(key: X25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_to_raw(key: X25519PublicKey) -> bytes:
    """The 32 bytes the gateway registry stores (base64 in its key files)."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _as_public_key(key: X25519PublicKey | bytes) -> X25519PublicKey:
    return key if isinstance(key, X25519PublicKey) else load_public_key(key)


# --------------------------------------------------------------------------- sealing


def _derive_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=ephemeral_public + recipient_public,
        info=HKDF_INFO,
    ).derive(shared)


def _check_associated_data(associated_data: bytes) -> None:
    if not isinstance(associated_data, bytes) or not associated_data:
        raise TypeError("associated_data is non-empty bytes (the payment id)")
    if len(associated_data) > ASSOCIATED_DATA_MAX_BYTES:
        raise ValueError(f"associated_data is at most {ASSOCIATED_DATA_MAX_BYTES} bytes")


def _seal_with(
    ephemeral_private: X25519PrivateKey,
    nonce: bytes,
    recipient_public_key: X25519PublicKey | bytes,
    plaintext: bytes,
    *,
    associated_data: bytes,
) -> SealedCard:
    """Sealing with given randomness; only :func:`seal` (fresh randomness) and the
    published test vector, which must be reproducible, call this."""
    if not isinstance(plaintext, bytes) or len(plaintext) > PLAINTEXT_MAX_BYTES:
        raise ValueError(f"plaintext is bytes, at most {PLAINTEXT_MAX_BYTES}")
    _check_associated_data(associated_data)
    recipient = _as_public_key(recipient_public_key)
    ephemeral_public = public_key_to_raw(ephemeral_private.public_key())
    try:
        shared = ephemeral_private.exchange(recipient)
    except ValueError:
        # A low-order "public key" gives an all-zero shared secret; refuse to seal to it.
        raise SealingError("invalid_key") from None
    key = _derive_key(shared, ephemeral_public, public_key_to_raw(recipient))
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, associated_data)
    return SealedCard(ephemeral_public_key=ephemeral_public, nonce=nonce, ciphertext=ciphertext)


def seal(
    recipient_public_key: X25519PublicKey | bytes, plaintext: bytes, *, associated_data: bytes
) -> SealedCard:
    """Encrypt ``plaintext`` so only the holder of the matching private key can read it,
    bound to ``associated_data``."""
    return _seal_with(
        X25519PrivateKey.generate(),
        os.urandom(NONCE_BYTES),
        recipient_public_key,
        plaintext,
        associated_data=associated_data,
    )


def unseal(
    private_key: X25519PrivateKey, sealed: SealedCard | bytes, *, associated_data: bytes
) -> bytes:
    """The plaintext of an envelope sealed to ``private_key``'s public key with the same
    associated data; :class:`SealingError` otherwise."""
    _check_associated_data(associated_data)
    envelope = sealed if isinstance(sealed, SealedCard) else SealedCard.from_bytes(sealed)
    try:
        ephemeral = X25519PublicKey.from_public_bytes(envelope.ephemeral_public_key)
        shared = private_key.exchange(ephemeral)
    except ValueError:
        raise SealingError("unseal_failed") from None
    recipient_public = public_key_to_raw(private_key.public_key())
    key = _derive_key(shared, envelope.ephemeral_public_key, recipient_public)
    try:
        return AESGCM(key).decrypt(envelope.nonce, envelope.ciphertext, associated_data)
    except InvalidTag:
        raise SealingError("unseal_failed") from None


# ------------------------------------------------------------------------------ cards


def mask_card_number(number: str) -> str:
    """BIN (first six) and last four, the rest ``*``: ``424242******4242``."""
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


class CardData:
    """A card as sealed for a gateway. ``repr`` and ``str`` show the masked number only;
    the CVC and the holder's name never; pickling is refused. Attributes are read-only.

    The sealed document is UTF-8 JSON with sorted keys and no white space:
    ``{"cvc": "123", "exp_month": 12, "exp_year": 2030, "holder_name": "...",
    "number": "4242424242424242"}``, ``cvc`` left out when there is none.
    """

    __slots__ = ("_cvc", "_exp_month", "_exp_year", "_holder_name", "_number")

    def __init__(
        self,
        *,
        number: str,
        exp_month: int,
        exp_year: int,
        cvc: str | None = None,
        holder_name: str = "",
    ) -> None:
        # Messages name the field, never the value: they may reach a log.
        if (
            not isinstance(number, str)
            or not _DIGITS_RE.fullmatch(number)
            or not PAN_MIN_DIGITS <= len(number) <= PAN_MAX_DIGITS
        ):
            raise ValueError(f"number is {PAN_MIN_DIGITS} to {PAN_MAX_DIGITS} ASCII digits")
        if not _is_int(exp_month) or not 1 <= exp_month <= 12:
            raise ValueError("exp_month is an int from 1 to 12")
        if not _is_int(exp_year) or not 1000 <= exp_year <= 9999:
            raise ValueError("exp_year is an int of four digits")
        if cvc is not None and (not isinstance(cvc, str) or not _CVC_RE.fullmatch(cvc)):
            raise ValueError("cvc is None or 3 to 4 ASCII digits")
        if not isinstance(holder_name, str) or len(holder_name) > HOLDER_NAME_MAX_CHARS:
            raise ValueError(f"holder_name is a str of at most {HOLDER_NAME_MAX_CHARS} chars")
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in holder_name):
            raise ValueError("holder_name is not valid Unicode text")
        self._number = number
        self._exp_month = exp_month
        self._exp_year = exp_year
        self._cvc = cvc
        self._holder_name = holder_name

    @property
    def number(self) -> str:
        return self._number

    @property
    def exp_month(self) -> int:
        return self._exp_month

    @property
    def exp_year(self) -> int:
        return self._exp_year

    @property
    def cvc(self) -> str | None:
        return self._cvc

    @property
    def holder_name(self) -> str:
        return self._holder_name

    @property
    def masked_number(self) -> str:
        return mask_card_number(self._number)

    def to_json_bytes(self) -> bytes:
        document: dict[str, Any] = {
            "number": self._number,
            "exp_month": self._exp_month,
            "exp_year": self._exp_year,
            "holder_name": self._holder_name,
        }
        if self._cvc is not None:
            document["cvc"] = self._cvc
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")

    @classmethod
    def from_json_bytes(cls, data: bytes) -> CardData:
        """Strict: an object with exactly the documented keys and types."""
        try:
            document = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ValueError("not a card document") from None
        if not isinstance(document, dict):
            raise ValueError("not a card document")
        keys = set(document)
        if not {"number", "exp_month", "exp_year", "holder_name"} <= keys or not keys <= {
            "number",
            "exp_month",
            "exp_year",
            "holder_name",
            "cvc",
        }:
            raise ValueError("not a card document")
        return cls(
            number=document["number"],
            exp_month=document["exp_month"],
            exp_year=document["exp_year"],
            cvc=document.get("cvc"),
            holder_name=document["holder_name"],
        )

    def __repr__(self) -> str:
        return (
            f"CardData(number={self.masked_number!r}, exp_month={self._exp_month},"
            f" exp_year={self._exp_year}, cvc={_REDACTED!r}, holder_name={_REDACTED!r})"
        )

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CardData):
            return NotImplemented
        return self.to_json_bytes() == other.to_json_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        # Pickles end up in caches and queues; card data must not travel that way.
        raise TypeError("CardData cannot be pickled")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _payment_ad(payment_id: str) -> bytes:
    if not isinstance(payment_id, str) or not payment_id:
        raise TypeError("payment_id is a non-empty str")
    return payment_id.encode("utf-8")


def seal_card(
    recipient_public_key: X25519PublicKey | bytes, card: CardData, *, payment_id: str
) -> SealedCard:
    """Seal a card for one gateway, bound to one payment (its id, UTF-8, is the
    associated data)."""
    return seal(recipient_public_key, card.to_json_bytes(), associated_data=_payment_ad(payment_id))


def unseal_card(
    private_key: X25519PrivateKey, sealed: SealedCard | bytes, *, payment_id: str
) -> CardData:
    """Open a card sealed to this gateway for ``payment_id``. A tampered, misdirected or
    foreign envelope and a document that is not a card all raise the same
    :class:`SealingError`."""
    plaintext = unseal(private_key, sealed, associated_data=_payment_ad(payment_id))
    try:
        return CardData.from_json_bytes(plaintext)
    except ValueError:
        raise SealingError("unseal_failed") from None


__all__ = [
    "ENVELOPE_MAX_BYTES",
    "ENVELOPE_MIN_BYTES",
    "ENVELOPE_VERSION",
    "HKDF_INFO",
    "NONCE_BYTES",
    "PLAINTEXT_MAX_BYTES",
    "PUBLIC_KEY_BYTES",
    "TAG_BYTES",
    "CardData",
    "SealedCard",
    "SealingError",
    "SealingReason",
    "generate_key_pair",
    "load_private_key",
    "load_public_key",
    "mask_card_number",
    "private_key_to_pem",
    "private_key_to_raw",
    "public_key_to_pem",
    "public_key_to_raw",
    "seal",
    "seal_card",
    "unseal",
    "unseal_card",
]
