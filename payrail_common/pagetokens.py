"""Page tokens a client cannot forge: the one page-token codec of every list RPC.

A page token carries the position a list continues after (its *cursor*: a few strings
and integers, such as a time and an id). Clients must treat it as opaque, but a base64
JSON token is only opaque by convention: an attacker edits the cursor and sends values
the service never issued straight towards PostgreSQL. So every token is signed::

    p1.<base64url JSON payload>.<base64url HMAC-SHA256>

The payload holds the expiry (unix seconds), a digest of the request's filters and the
cursor. The MAC covers a version label, the list's *scope* (which RPC it pages), the
caller's user id and the payload, keyed with a per-deployment secret. A token is
therefore valid only for the RPC and the user it was issued to, unchanged, until it
expires; its filters are checked after the MAC, so a client that changed a filter
between pages is told so. Nothing of a token is parsed as JSON before its MAC matched.

The keys are derived from the edge assertion keys (``PAYRAIL_EDGE_ASSERTION_KEYS``),
which exactly the services that issue page tokens hold, under a label of their own
(:func:`derive_keys`): no further secret to provision, and rotating the edge keys
(``new.key,old.key``) rotates these too — the first signs, every one verifies.

Refusals raise :class:`PageTokenError` (a ``ValueError``) whose text is safe to return
to the client as the ``page_token`` field violation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence

from payrail_common.edge_assertion import parse_key_files
from payrail_common.keys import read_secret_file

__all__ = [
    "PAGE_TOKEN_CHARS_MAX",
    "TTL_S_DEFAULT",
    "CursorValue",
    "PageTokenError",
    "PageTokens",
    "derive_keys",
    "load_page_tokens",
]

# A cursor is a short tuple of these.
CursorValue = str | int

# Longer than any token issued here; a longer one is refused before any work.
PAGE_TOKEN_CHARS_MAX = 1024
# How long a token pages: long enough to read a list at leisure, short enough that a
# leaked token soon says nothing.
TTL_S_DEFAULT = 3600
# Domain separation: the derived key and the MAC are for page tokens and nothing else.
_KEY_LABEL = b"payrail-page-token-key-v1"
_MAC_LABEL = b"payrail-page-token-v1"
_PREFIX = "p1"

NOT_ISSUED = "is not a token this service issued to you; start from the first page"
EXPIRED = "has expired; start from the first page"
OTHER_FILTERS = "was issued for other filters; start from the first page"


class PageTokenError(ValueError):
    """A page token that cannot be used; ``str()`` is the client-safe description."""


def derive_keys(edge_keys: Sequence[bytes]) -> tuple[bytes, ...]:
    """The page-token keys derived from the edge assertion keys, in the same order."""
    return tuple(hmac.new(key, _KEY_LABEL, hashlib.sha256).digest() for key in edge_keys)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    if not text.isascii():
        raise PageTokenError(NOT_ISSUED)
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise PageTokenError(NOT_ISSUED) from None


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()


def _filter_digest(filters: Sequence[CursorValue]) -> str:
    return hashlib.sha256(_json(list(filters))).hexdigest()[:32]


def _mac(key: bytes, scope: str, user_id: str, payload: bytes) -> bytes:
    # Lengths first, so no two (scope, user, payload) triples share a message.
    head = f"{len(scope)}:{scope}|{len(user_id)}:{user_id}|".encode()
    return hmac.new(key, _MAC_LABEL + b"\n" + head + payload, hashlib.sha256).digest()


class PageTokens:
    """Issues and opens signed page tokens; see the module docstring."""

    def __init__(
        self,
        keys: Sequence[bytes],
        *,
        ttl_s: int = TTL_S_DEFAULT,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ValueError("at least one page token key is required")
        if any(len(key) < 32 for key in keys):
            raise ValueError("page token keys must be at least 32 bytes")
        if ttl_s < 1:
            raise ValueError("ttl_s must be at least 1")
        self._keys = tuple(keys)
        self._ttl_s = ttl_s
        self._clock_s = clock_s

    def __repr__(self) -> str:  # never the keys
        return f"PageTokens(keys=<{len(self._keys)} redacted>, ttl_s={self._ttl_s})"

    def issue(
        self,
        *,
        scope: str,
        user_id: str,
        filters: Sequence[CursorValue],
        cursor: Sequence[CursorValue],
    ) -> str:
        """A token continuing after ``cursor``, for this scope, user and filters only."""
        payload = _json(
            {
                "x": int(self._clock_s()) + self._ttl_s,
                "f": _filter_digest(filters),
                "c": list(cursor),
            }
        )
        mac = _mac(self._keys[0], scope, user_id, payload)
        return f"{_PREFIX}.{_b64encode(payload)}.{_b64encode(mac)}"

    def open(
        self,
        token: str,
        *,
        scope: str,
        user_id: str,
        filters: Sequence[CursorValue],
        arity: int,
    ) -> tuple[CursorValue, ...]:
        """The cursor of a token issued here for this scope, user and filters, unexpired;
        its ``arity`` values are each a str or an int. Else PageTokenError."""
        if len(token) > PAGE_TOKEN_CHARS_MAX:
            raise PageTokenError(NOT_ISSUED)
        prefix, payload_text, mac_text = [*token.split("."), "", ""][:3]
        if prefix != _PREFIX or token.count(".") != 2:
            raise PageTokenError(NOT_ISSUED)
        payload, presented = _b64decode(payload_text), _b64decode(mac_text)
        # Every key is tried (no early exit), so timing says nothing about which matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(_mac(key, scope, user_id, payload), presented)
        if not matched:
            raise PageTokenError(NOT_ISSUED)
        # Signed by this deployment, so well-formed; checked anyway (a key leak or a bug).
        try:
            data = json.loads(payload)
        except ValueError:
            raise PageTokenError(NOT_ISSUED) from None
        if not isinstance(data, dict):
            raise PageTokenError(NOT_ISSUED)
        expiry, digest, cursor = data.get("x"), data.get("f"), data.get("c")
        if type(expiry) is not int or not isinstance(cursor, list) or len(cursor) != arity:
            raise PageTokenError(NOT_ISSUED)
        if not all(type(value) in (str, int) for value in cursor):
            raise PageTokenError(NOT_ISSUED)
        if self._clock_s() >= expiry:
            raise PageTokenError(EXPIRED)
        if digest != _filter_digest(filters):
            raise PageTokenError(OTHER_FILTERS)
        return tuple(cursor)


def load_page_tokens(edge_assertion_keys: str, *, ttl_s: int = TTL_S_DEFAULT) -> PageTokens:
    """Page tokens keyed from the files of ``PAYRAIL_EDGE_ASSERTION_KEYS``."""
    edge_keys = [read_secret_file(path) for path in parse_key_files(edge_assertion_keys)]
    return PageTokens(derive_keys(edge_keys), ttl_s=ttl_s)
