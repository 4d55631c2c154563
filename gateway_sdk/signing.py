"""The callback signature scheme, used by both sides: gateways sign, payment_svc verifies.

A callback carries request metadata ``x-payrail-signature: t=<unix>,v1=<hex>[,v1=<hex>]``.
Each ``v1`` is HMAC-SHA256, keyed with one of the gateway's active callback secrets, over

    ASCII decimal timestamp || "." || raw payload bytes

written as 64 hex digits. docs/callbacks.md is the normative description, with test
vectors that a test recomputes from the markdown, so the two cannot drift apart.

Verification is four small steps on :class:`SignatureVerifier` (parse, check the
timestamp, compute the expected signatures, compare), each a method a subclass can
override, e.g. to log, to count, or to widen the tolerance for one gateway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

SIGNATURE_HEADER: Final = "x-payrail-signature"
# How far the signed timestamp may be from the verifier's clock, in both directions.
TOLERANCE_S: Final = 300
SCHEME: Final = "v1"
# A header with the maximum number of v1 entries is about 600 characters; 1024 leaves
# room for a few entries of unknown schemes without letting a caller make us scan more.
HEADER_MAX_CHARS: Final = 1024
# More v1 entries than any rotation needs are refused: each one costs an HMAC comparison
# per active secret.
SIGNATURES_MAX: Final = 8
# Elements of any scheme (t, v1, unknown ones) in one header.
ELEMENTS_MAX: Final = 16
# Secrets a verifier compares against; rotation needs two, the rest is headroom.
SECRETS_MAX: Final = 8
# The gateway registry accepts no shorter secret; HMAC-SHA256 keys of 32 bytes match
# the hash's own strength.
SECRET_MIN_BYTES: Final = 32
# A unix timestamp in seconds has 10 digits until the year 2286; 12 bound the parse.
TIMESTAMP_MAX_DIGITS: Final = 12

_DIGEST_HEX_CHARS = 2 * hashlib.sha256().digest_size
_KEY_RE = re.compile(r"[a-z0-9]{1,16}")
# Visible ASCII except the element separator; the whole header is ASCII.
_VALUE_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_TIMESTAMP_RE = re.compile(rf"0|[1-9][0-9]{{0,{TIMESTAMP_MAX_DIGITS - 1}}}")
_HEX_DIGEST_RE = re.compile(rf"[0-9a-fA-F]{{{_DIGEST_HEX_CHARS}}}")
_REDACTED = "<redacted>"

Reason = Literal["missing", "malformed", "no_signature", "stale", "mismatch", "no_secret"]


class SignatureError(ValueError):
    """A signature was not accepted. ``reason`` is stable and safe to log or return:

    - ``missing``: the header is empty or absent;
    - ``malformed``: the header does not follow the grammar or exceeds a limit;
    - ``no_signature``: well formed, but without any ``v1`` entry;
    - ``stale``: the timestamp is more than the tolerance away from now (either way);
    - ``mismatch``: no ``v1`` entry matches any active secret;
    - ``no_secret``: the verifier holds no secret for this gateway.

    The message never contains the header, the payload or a secret.
    """

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"callback signature not accepted: {reason}")
        self.reason: Reason = reason


class CallbackSecret:
    """A gateway's callback secret: ``repr`` and ``str`` are redacted, equality is
    constant-time, pickling is refused. ``reveal()`` returns the key bytes."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError("CallbackSecret holds bytes")
        if len(value) < SECRET_MIN_BYTES:
            # Says nothing about the value: this message may reach a log.
            raise ValueError(f"a callback secret has at least {SECRET_MIN_BYTES} bytes")
        self._value = value

    @classmethod
    def generate(cls) -> CallbackSecret:
        """A fresh random secret of the minimum length."""
        return cls(_secrets.token_bytes(SECRET_MIN_BYTES))

    @classmethod
    def from_base64(cls, text: str) -> CallbackSecret:
        """The form of the registry's secret files: standard base64, surrounding white
        space ignored."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a callback secret file holds standard base64") from None
        return cls(raw)

    def reveal(self) -> bytes:
        return self._value

    def to_base64(self) -> str:
        return base64.b64encode(self._value).decode("ascii")

    def __repr__(self) -> str:
        return f"CallbackSecret({_REDACTED!r})"

    def __str__(self) -> str:
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CallbackSecret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    # A hash is a (weak) function of the secret and has no use here.
    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        # Pickles end up in caches and queues; secrets must not travel that way.
        raise TypeError("CallbackSecret cannot be pickled")


SecretLike = bytes | CallbackSecret


@dataclass(frozen=True, slots=True)
class ParsedSignature:
    """A well-formed header: the signed timestamp and the decoded ``v1`` digests (1 to
    :data:`SIGNATURES_MAX`, in header order, duplicates kept)."""

    timestamp: int
    signatures: tuple[bytes, ...]


def _key(secret: SecretLike) -> bytes:
    if isinstance(secret, CallbackSecret):
        return secret.reveal()
    if not isinstance(secret, bytes):
        raise TypeError("a callback secret is bytes or a CallbackSecret")
    if not secret:
        raise ValueError("a callback secret must not be empty")
    return secret


def _check_payload(payload: bytes) -> None:
    # A str payload is the classic mistake: its encoding would be a guess.
    if not isinstance(payload, bytes):
        raise TypeError("the payload is the raw bytes that are sent, not a str")


def _check_timestamp_value(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise TypeError("timestamp is an int of unix seconds")
    if not 0 <= timestamp < 10**TIMESTAMP_MAX_DIGITS:
        raise ValueError(f"timestamp is 0 to {TIMESTAMP_MAX_DIGITS} decimal digits")


def signed_bytes(payload: bytes, *, timestamp: int) -> bytes:
    """What the HMAC covers: ASCII decimal timestamp, ``.``, the raw payload bytes."""
    _check_payload(payload)
    _check_timestamp_value(timestamp)
    return str(timestamp).encode("ascii") + b"." + payload


def compute_signature(payload: bytes, secret: SecretLike, *, timestamp: int) -> bytes:
    """The raw 32-byte HMAC-SHA256 digest for one secret."""
    return hmac.new(_key(secret), signed_bytes(payload, timestamp=timestamp), "sha256").digest()


def sign_with_secrets(payload: bytes, secrets: Sequence[SecretLike], *, timestamp: int) -> str:
    """The header value with one ``v1`` per secret, in the given order. While a secret
    rotates a gateway signs with the old and the new one, so the callback verifies
    whichever the platform already (or still) holds."""
    if isinstance(secrets, bytes | CallbackSecret):
        raise TypeError("secrets is a sequence of secrets; use sign() for one")
    if not 1 <= len(secrets) <= SIGNATURES_MAX:
        raise ValueError(f"sign with 1 to {SIGNATURES_MAX} secrets")
    parts = [f"t={timestamp}"]
    parts.extend(
        f"{SCHEME}={compute_signature(payload, s, timestamp=timestamp).hex()}" for s in secrets
    )
    return ",".join(parts)


def sign(payload: bytes, secret: SecretLike, *, timestamp: int) -> str:
    """The header value ``t=<timestamp>,v1=<lowercase hex>`` for one secret."""
    return sign_with_secrets(payload, [secret], timestamp=timestamp)


def signature_metadata(
    payload: bytes, secrets: Sequence[SecretLike], *, timestamp: int
) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata carrying the signature: pass as ``metadata=`` to ReportResult."""
    return ((SIGNATURE_HEADER, sign_with_secrets(payload, secrets, timestamp=timestamp)),)


class SignatureVerifier:
    """Verifies a callback signature in four overridable steps. Instances hold only
    limits, so one can be shared by every request."""

    def __init__(
        self,
        *,
        tolerance_s: int = TOLERANCE_S,
        header_max_chars: int = HEADER_MAX_CHARS,
        signatures_max: int = SIGNATURES_MAX,
        secrets_max: int = SECRETS_MAX,
    ) -> None:
        if tolerance_s < 0:
            raise ValueError("tolerance_s must not be negative")
        self.tolerance_s = tolerance_s
        self.header_max_chars = header_max_chars
        self.signatures_max = signatures_max
        self.secrets_max = secrets_max

    def verify(
        self, payload: bytes, header: str, secrets: Sequence[SecretLike], *, now: int
    ) -> None:
        """Return when ``header`` carries a valid signature of ``payload`` by one of
        ``secrets``, made within the tolerance of ``now`` (unix seconds); otherwise raise
        :class:`SignatureError`."""
        _check_payload(payload)
        parsed = self.parse(header)
        self.check_timestamp(parsed.timestamp, now=now)
        expected = self.expected_signatures(payload, parsed.timestamp, secrets)
        self.compare(parsed.signatures, expected)

    def parse(self, header: str) -> ParsedSignature:
        """Step 1: the strict, bounded grammar of docs/callbacks.md."""
        if not isinstance(header, str) or not header:
            raise SignatureError("missing")
        if len(header) > self.header_max_chars or not header.isascii():
            raise SignatureError("malformed")
        elements = header.split(",")
        if len(elements) > ELEMENTS_MAX:
            raise SignatureError("malformed")
        timestamp: int | None = None
        signatures: list[bytes] = []
        for element in elements:
            key, sep, value = element.partition("=")
            if not sep or not _KEY_RE.fullmatch(key) or not _VALUE_RE.fullmatch(value):
                raise SignatureError("malformed")
            if key == "t":
                if timestamp is not None or not _TIMESTAMP_RE.fullmatch(value):
                    raise SignatureError("malformed")
                timestamp = int(value)
            elif key == SCHEME:
                if not _HEX_DIGEST_RE.fullmatch(value):
                    raise SignatureError("malformed")
                signatures.append(bytes.fromhex(value))
                if len(signatures) > self.signatures_max:
                    raise SignatureError("malformed")
            # Other schemes (a future v2, say) are skipped so they can be rolled out.
        if timestamp is None:
            raise SignatureError("malformed")
        if not signatures:
            raise SignatureError("no_signature")
        return ParsedSignature(timestamp=timestamp, signatures=tuple(signatures))

    def check_timestamp(self, timestamp: int, *, now: int) -> None:
        """Step 2: refuse a timestamp too far in the past (a replay outside the event-id
        window) or in the future (a signature made to be replayed later)."""
        if abs(now - timestamp) > self.tolerance_s:
            raise SignatureError("stale")

    def expected_signatures(
        self, payload: bytes, timestamp: int, secrets: Sequence[SecretLike]
    ) -> tuple[bytes, ...]:
        """Step 3: the digest each active secret gives."""
        if isinstance(secrets, bytes | CallbackSecret):
            raise TypeError("secrets is a sequence of secrets")
        if not secrets:
            raise SignatureError("no_secret")
        if len(secrets) > self.secrets_max:
            raise ValueError(f"at most {self.secrets_max} active secrets per gateway")
        return tuple(compute_signature(payload, s, timestamp=timestamp) for s in secrets)

    def compare(self, candidates: Sequence[bytes], expected: Sequence[bytes]) -> None:
        """Step 4: every candidate against every expected digest in constant time, with
        no early exit, so timing says nothing about which (if any) pair matched."""
        matched = False
        for candidate in candidates:
            for digest in expected:
                matched |= hmac.compare_digest(candidate, digest)
        if not matched:
            raise SignatureError("mismatch")


_DEFAULT_VERIFIER = SignatureVerifier()


def parse_header(header: str) -> ParsedSignature:
    """Parse a header value with the default limits; :class:`SignatureError` if it is
    not well formed."""
    return _DEFAULT_VERIFIER.parse(header)


def verify(
    payload: bytes,
    header: str,
    secrets: Sequence[SecretLike],
    *,
    now: int,
    tolerance_s: int = TOLERANCE_S,
) -> None:
    """Verify a callback signature; raise :class:`SignatureError` with a stable reason."""
    verifier = (
        _DEFAULT_VERIFIER
        if tolerance_s == TOLERANCE_S
        else SignatureVerifier(tolerance_s=tolerance_s)
    )
    verifier.verify(payload, header, secrets, now=now)


__all__ = [
    "ELEMENTS_MAX",
    "HEADER_MAX_CHARS",
    "SCHEME",
    "SECRETS_MAX",
    "SECRET_MIN_BYTES",
    "SIGNATURES_MAX",
    "SIGNATURE_HEADER",
    "TOLERANCE_S",
    "CallbackSecret",
    "ParsedSignature",
    "Reason",
    "SecretLike",
    "SignatureError",
    "SignatureVerifier",
    "compute_signature",
    "parse_header",
    "sign",
    "sign_with_secrets",
    "signature_metadata",
    "signed_bytes",
    "verify",
]
