"""Access tokens: EdDSA (Ed25519) JWTs with a key id, verified with an allow-list.

gateway_svc signs with the active key of its :class:`KeyRing` and verifies with every
key it knows, so a token signed by a key being rotated out stays valid until it expires.
payment_svc holds only public keys and re-verifies every forwarded token itself: no
internal service trusts a bare user-id header.

Verification refuses, with a :class:`TokenError` whose ``reason`` says why (for logs; the
client only ever hears "invalid or expired access token"): a missing or malformed token,
any algorithm but EdDSA (so ``alg=none`` and an HMAC token keyed with the public key are
refused before any key is touched), an unknown ``kid``, a bad signature, a wrong ``iss``
or ``aud``, expiry beyond a small leeway, and any missing claim.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from payrail_common.config import ConfigError

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti", "sid", "role")
# Upper bound on the access-token lifetime, whatever the configuration says.
MAX_ACCESS_TTL_S = 15 * 60


class TokenError(Exception):
    """The token cannot be accepted; ``reason`` is a stable code for logs and metrics."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyConfigError(ConfigError):
    """A configured key file is missing, unreadable or not an Ed25519 key."""


@dataclass(frozen=True)
class TokenPolicy:
    issuer: str = "payrail"
    audience: str = "payrail-api"
    access_ttl_s: int = MAX_ACCESS_TTL_S
    # Clock skew tolerated on exp/iat between the signer and the verifiers.
    leeway_s: int = 30

    def __post_init__(self) -> None:
        if not 0 < self.access_ttl_s <= MAX_ACCESS_TTL_S:
            raise ValueError(f"access_ttl_s must be within 1..{MAX_ACCESS_TTL_S}")


@dataclass(frozen=True)
class Principal:
    """The verified caller of an RPC."""

    user_id: str
    role: str
    session_id: str
    token_id: str
    expires_at: int


def parse_key_spec(spec: str) -> dict[str, Path]:
    """``"kid1=/path/a.pem,kid2=/path/b.pem"`` -> {kid: path}."""
    keys: dict[str, Path] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kid, sep, path = item.partition("=")
        if not sep or not kid.strip() or not path.strip():
            raise KeyConfigError(f"key entry {item!r} must look like kid=/path/to/key.pem")
        keys[kid.strip()] = Path(path.strip())
    return keys


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyConfigError(f"cannot read key file {path}: {exc.strerror}") from None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(_read(path), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyConfigError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    data = _read(path)
    if b"PRIVATE KEY" in data:
        return load_private_key(path).public_key()
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise KeyConfigError(f"{path} is not an Ed25519 public key")
    return key


class KeyRing:
    """Signing keys (optional) and verifying keys, by kid."""

    def __init__(
        self,
        *,
        verifying: Mapping[str, Ed25519PublicKey],
        signing: Mapping[str, Ed25519PrivateKey] | None = None,
        active_kid: str | None = None,
    ) -> None:
        self._signing = dict(signing or {})
        self._verifying = {kid: key.public_key() for kid, key in self._signing.items()}
        self._verifying.update(verifying)
        if self._signing and active_kid not in self._signing:
            raise KeyConfigError(f"active key id {active_kid!r} is not among the signing keys")
        self._active_kid = active_kid if self._signing else None

    @classmethod
    def from_files(
        cls,
        *,
        signing_spec: str = "",
        public_spec: str = "",
        active_kid: str | None = None,
    ) -> KeyRing:
        signing = {kid: load_private_key(p) for kid, p in parse_key_spec(signing_spec).items()}
        verifying = {kid: load_public_key(p) for kid, p in parse_key_spec(public_spec).items()}
        if not signing and not verifying:
            raise KeyConfigError("no JWT keys configured")
        return cls(signing=signing, verifying=verifying, active_kid=active_kid)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._verifying)

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        if self._active_kid is None:
            raise KeyConfigError("this key ring can only verify")
        return self._active_kid, self._signing[self._active_kid]

    def verifying_key(self, kid: str) -> Ed25519PublicKey | None:
        return self._verifying.get(kid)


def issue_access_token(
    ring: KeyRing,
    policy: TokenPolicy,
    *,
    user_id: str,
    role: str,
    session_id: str,
    now: datetime | None = None,
) -> tuple[str, int]:
    """Sign an access token; return it with its lifetime in seconds."""
    kid, key = ring.signing_key()
    issued = int((now or datetime.now(UTC)).timestamp())
    claims = {
        "iss": policy.issuer,
        "aud": policy.audience,
        "sub": user_id,
        "iat": issued,
        "exp": issued + policy.access_ttl_s,
        "jti": secrets.token_urlsafe(16),
        "sid": session_id,
        "role": role,
    }
    token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"})
    return token, policy.access_ttl_s


def verify_access_token(ring: KeyRing, policy: TokenPolicy, token: str) -> Principal:
    """The token's principal, or TokenError with the reason it was refused."""
    if not token:
        raise TokenError("missing")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise TokenError("malformed") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError("algorithm_not_allowed")
    kid = header.get("kid")
    key = ring.verifying_key(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenError("unknown_kid")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=policy.audience,
            issuer=policy.issuer,
            leeway=policy.leeway_s,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("expired") from None
    except jwt.InvalidSignatureError:
        raise TokenError("bad_signature") from None
    except jwt.InvalidTokenError:
        raise TokenError("bad_claims") from None
    if not all(isinstance(claims[c], str) and claims[c] for c in ("sub", "sid", "jti", "role")):
        raise TokenError("bad_claims")
    return Principal(
        user_id=claims["sub"],
        role=claims["role"],
        session_id=claims["sid"],
        token_id=claims["jti"],
        expires_at=int(claims["exp"]),
    )


class VerifiedTokens:
    """Tokens this process has already verified, with their principal, until they expire.

    A signature check (Ed25519) is the costliest step of an authenticated call; a client
    sends the same token with every call for its whole lifetime, so a hit skips it. The
    key is the exact token string, so a hit is a token that passed every check before:
    the cache decides nothing verification would not decide the same way, and a refused
    token is never cached. An entry is dropped once ``exp`` (plus the leeway) has passed,
    and the least recently used go first beyond ``entries_max``. Revocation is not this
    cache's business: the session check (gateway_svc) still runs on every call.
    """

    def __init__(
        self,
        ring: KeyRing,
        policy: TokenPolicy,
        *,
        entries_max: int = 10_000,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        if entries_max < 1:
            raise ValueError("entries_max must be at least 1")
        self._ring = ring
        self._policy = policy
        self._entries_max = entries_max
        self._clock_s = clock_s
        self._entries: OrderedDict[str, Principal] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def verify(self, token: str) -> Principal:
        """Like :func:`verify_access_token`, remembering what passed."""
        principal = self._entries.get(token)
        if principal is not None:
            if self._clock_s() <= principal.expires_at + self._policy.leeway_s:
                self._entries.move_to_end(token)
                return principal
            del self._entries[token]
        principal = verify_access_token(self._ring, self._policy, token)
        self._entries[token] = principal
        while len(self._entries) > self._entries_max:
            self._entries.popitem(last=False)
        return principal


def generate_key_files(directory: Path, kid: str) -> tuple[Path, Path]:
    """Write ``jwt-<kid>.pem`` (private, mode 600) and ``jwt-<kid>.pub.pem`` unless present."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / f"jwt-{kid}.pem"
    public_path = directory / f"jwt-{kid}.pub.pem"
    if not private_path.exists():
        key = Ed25519PrivateKey.generate()
        private_path.touch(mode=0o600)
        private_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    if not public_path.exists():
        public = load_private_key(private_path).public_key()
        public_path.write_bytes(
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return private_path, public_path
