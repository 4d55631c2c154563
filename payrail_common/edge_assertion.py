"""Edge assertions: proof, per forwarded call, that gateway_svc authenticated it.

gateway_svc is the only service that checks the live session (Redis), so a token that
was revoked by Logout or refresh-token reuse still carries a valid signature until it
expires. Internal services therefore do not accept a bearer token on its own: after the
edge has verified the token *and* its session, it signs a short-lived assertion for that
one call, and payment_svc and insights require it next to the token::

    x-payrail-edge-assertion: t=<unix seconds>,v1=<hex HMAC-SHA256>

The MAC covers a version label, the timestamp, the full method path and the SHA-256 of
the exact bearer token, keyed with a 32-byte secret only the edge and the internal
services hold (``PAYRAIL_EDGE_ASSERTION_KEYS``; the first key signs, every key
verifies, so a key can be rotated). A token sent straight to an internal port has no
assertion; an assertion taken from one call is useless with another token or method,
and after ``tolerance_s`` with anything.

Refusals raise :class:`TokenError` with an ``edge_assertion_*`` reason, so the caller
hears the same generic UNAUTHENTICATED message and ErrorInfo reason
(``ACCESS_TOKEN_INVALID``) as for any bad token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from payrail_common.config import ConfigError
from payrail_common.keys import read_secret_file
from payrail_common.tokens import TokenError

# Metadata key of the assertion on calls from gateway_svc to internal services.
EDGE_ASSERTION_KEY = "x-payrail-edge-assertion"
# How far the assertion's timestamp may be from the verifier's clock, either way: long
# enough for clock skew between hosts and a queued call, short enough that a captured
# assertion (for its one token and method) soon expires.
TOLERANCE_S = 30
# Domain separation: this key and MAC are for nothing else.
_LABEL = b"payrail-edge-assertion-v1"
# A value longer than this is not ours; refused before any parsing work.
_VALUE_CHARS_MAX = 128


def _mac(key: bytes, timestamp: int, method: str, token: str) -> str:
    token_digest = hashlib.sha256(token.encode()).hexdigest()
    message = b"\n".join((_LABEL, str(timestamp).encode(), method.encode(), token_digest.encode()))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _parse(value: str) -> tuple[int, str]:
    """``t=<unix>,v1=<hex>`` -> (timestamp, mac); TokenError when malformed."""
    if not value:
        raise TokenError("edge_assertion_missing")
    fields: dict[str, str] = {}
    if len(value) <= _VALUE_CHARS_MAX:
        for part in value.split(","):
            name, sep, item = part.strip().partition("=")
            if sep and name not in fields:
                fields[name] = item
    timestamp, mac = fields.get("t", ""), fields.get("v1", "")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise TokenError("edge_assertion_malformed")
    if len(mac) != 64 or any(c not in "0123456789abcdef" for c in mac):
        raise TokenError("edge_assertion_malformed")
    return int(timestamp), mac


class EdgeAssertions:
    """Signs (gateway_svc) and verifies (internal services) edge assertions."""

    def __init__(
        self,
        keys: Sequence[bytes],
        *,
        tolerance_s: int = TOLERANCE_S,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ValueError("at least one edge assertion key is required")
        if any(len(key) < 32 for key in keys):
            raise ValueError("edge assertion keys must be at least 32 bytes")
        if tolerance_s < 1:
            raise ValueError("tolerance_s must be at least 1")
        self._keys = tuple(keys)
        self._tolerance_s = tolerance_s
        self._clock_s = clock_s

    def __repr__(self) -> str:  # never the keys
        return f"EdgeAssertions(keys=<{len(self._keys)} redacted>, tolerance_s={self._tolerance_s})"

    def sign(self, method: str, token: str) -> str:
        """The assertion for one call of ``method`` presenting ``token``, with the first key."""
        timestamp = int(self._clock_s())
        return f"t={timestamp},v1={_mac(self._keys[0], timestamp, method, token)}"

    def verify(self, method: str, token: str, value: str) -> None:
        """Return if ``value`` asserts this call of ``method`` with ``token``; else TokenError."""
        timestamp, presented = _parse(value)
        if abs(self._clock_s() - timestamp) > self._tolerance_s:
            raise TokenError("edge_assertion_stale")
        # Every key is tried (no early exit), so timing says nothing about which matched.
        matched = False
        for key in self._keys:
            expected = _mac(key, timestamp, method, token)
            matched |= hmac.compare_digest(expected.encode(), presented.encode())
        if not matched:
            raise TokenError("edge_assertion_bad_mac")


def parse_key_files(spec: str) -> tuple[Path, ...]:
    """``"/path/new.key,/path/old.key"`` -> paths, in order (the first one signs)."""
    paths = tuple(Path(part.strip()) for part in spec.split(",") if part.strip())
    if not paths:
        raise ConfigError("PAYRAIL_EDGE_ASSERTION_KEYS: no key file configured")
    return paths


def load_edge_assertions(spec: str) -> EdgeAssertions:
    """Edge assertions keyed with the files of ``PAYRAIL_EDGE_ASSERTION_KEYS``."""
    return EdgeAssertions([read_secret_file(path) for path in parse_key_files(spec)])
