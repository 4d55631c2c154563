"""The console's browser session: sealed into one cookie, never readable by a script.

The console keeps no database, so what it must remember between requests (the access
and refresh tokens the edge issued at login, who the user is, the seed of their CSRF
tokens) travels in the session cookie itself, sealed with AES-256-GCM under a key only
the console holds: the browser can neither read it (HttpOnly, and it is ciphertext) nor
change it (the tag would fail). The cookie's own age is bounded too (``max_age_s``), on
top of the refresh token's lifetime. A signed-out visitor gets an *anonymous* session
(no tokens, just a CSRF seed), so the login and registration forms are CSRF-protected
like every other form.

CSRF tokens are HMAC-SHA256(csrf key, seed): bound to the session (a new login gets a
new seed), checked in constant time, never stored anywhere. The AES and CSRF keys are
derived from the one configured key under their own labels.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["COOKIE_MAX_BYTES", "Session", "SessionCodec"]

# Browsers keep at least 4096 bytes per cookie (name, value and attributes together).
COOKIE_MAX_BYTES = 3800
_NONCE_BYTES = 12
_AAD = b"payrail-console-session/v1"


@dataclass(frozen=True)
class Session:
    """What the console remembers of one browser; ``access_token == ""`` when signed out."""

    csrf_seed: str
    issued_at: int
    access_token: str = ""
    refresh_token: str = ""
    # Unix time at which access_token expires (the console refreshes it shortly before).
    access_expires_at: int = 0
    user_id: str = ""
    email: str = ""
    display_name: str = ""
    # "admin" or "customer", from GetProfile at login (the edge checks it again per call).
    role: str = ""

    @property
    def signed_in(self) -> bool:
        return self.access_token != ""

    @property
    def is_admin(self) -> bool:
        return self.signed_in and self.role == "admin"

    @classmethod
    def anonymous(cls, now_s: int) -> Session:
        return cls(csrf_seed=secrets.token_hex(16), issued_at=now_s)

    def signed_in_as(
        self,
        *,
        access_token: str,
        refresh_token: str,
        access_expires_at: int,
        user_id: str,
        email: str,
        display_name: str,
        role: str,
        now_s: int,
    ) -> Session:
        """A fresh session for a login: a new CSRF seed, so tokens from before are void."""
        return Session(
            csrf_seed=secrets.token_hex(16),
            issued_at=now_s,
            access_token=access_token,
            refresh_token=refresh_token,
            access_expires_at=access_expires_at,
            user_id=user_id,
            email=email,
            display_name=display_name,
            role=role,
        )

    def with_tokens(self, access_token: str, refresh_token: str, access_expires_at: int) -> Session:
        return replace(
            self,
            access_token=access_token,
            refresh_token=refresh_token,
            access_expires_at=access_expires_at,
        )


def _subkey(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, b"payrail-console/" + label, hashlib.sha256).digest()


class SessionCodec:
    """Seals sessions into cookie values and opens them again; issues CSRF tokens."""

    def __init__(self, key: bytes, *, max_age_s: int) -> None:
        if len(key) != 32:
            raise ValueError("the console cookie key must be 32 bytes")
        self._aead = AESGCM(_subkey(key, b"cookie"))
        self._csrf_key = _subkey(key, b"csrf")
        self.max_age_s = max_age_s

    def seal(self, session: Session) -> str:
        plain = json.dumps(asdict(session), separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plain, _AAD)
        value = base64.urlsafe_b64encode(sealed).decode().rstrip("=")
        if len(value) > COOKIE_MAX_BYTES:
            raise ValueError("session too large for a cookie")
        return value

    def open(self, value: str, *, now_s: int) -> Session | None:
        """The session in a cookie value, or None when it is forged, damaged or too old."""
        if not value or len(value) > COOKIE_MAX_BYTES:
            return None
        try:
            sealed = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            if len(sealed) <= _NONCE_BYTES:
                return None
            plain = self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _AAD)
            session = Session(**json.loads(plain))
        except (InvalidTag, binascii.Error, ValueError, TypeError):
            return None
        if not 0 <= now_s - session.issued_at <= self.max_age_s:
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._csrf_key, session.csrf_seed.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(
            self.csrf_token(session).encode(), presented.encode()
        )
