"""The session cookie: sealed, tamper-evident, bounded in age; CSRF tokens bound to it."""

from __future__ import annotations

import base64
import os

import pytest

from console_svc.session import Session, SessionCodec

NOW = 1_800_000_000


def codec(key: bytes | None = None, max_age_s: int = 3600) -> SessionCodec:
    return SessionCodec(key or os.urandom(32), max_age_s=max_age_s)


def signed_in(now: int = NOW) -> Session:
    return Session.anonymous(now).signed_in_as(
        access_token="eyJhbGciOiJFZERTQSJ9.payload.signature",
        refresh_token="refresh-secret",
        access_expires_at=now + 900,
        user_id="0d1e6a4c-0000-4000-8000-000000000001",
        email="ada@example.com",
        display_name="Ada Lovelace",
        role="customer",
        now_s=now,
    )


def test_a_sealed_session_opens_to_the_same_session() -> None:
    c = codec()
    session = signed_in()
    assert c.open(c.seal(session), now_s=NOW + 10) == session


def test_the_cookie_shows_nothing_of_the_tokens() -> None:
    c = codec()
    value = c.seal(signed_in())
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    for secret in (b"refresh-secret", b"payload", b"ada@example.com"):
        assert secret not in raw


def test_a_changed_cookie_is_refused() -> None:
    c = codec()
    value = c.seal(signed_in())
    flipped = value[:20] + ("A" if value[20] != "A" else "B") + value[21:]
    assert c.open(flipped, now_s=NOW) is None
    assert c.open(value[:-2], now_s=NOW) is None
    assert c.open("not base64 at all!", now_s=NOW) is None
    assert c.open("", now_s=NOW) is None


def test_another_key_cannot_open_it() -> None:
    value = codec().seal(signed_in())
    assert codec().open(value, now_s=NOW) is None


def test_a_session_older_than_the_bound_is_refused() -> None:
    c = codec(max_age_s=600)
    value = c.seal(signed_in())
    assert c.open(value, now_s=NOW + 600) is not None
    assert c.open(value, now_s=NOW + 601) is None
    assert c.open(value, now_s=NOW - 5) is None  # issued in the future


def test_csrf_tokens_are_bound_to_the_session() -> None:
    c = codec()
    one, two = Session.anonymous(NOW), Session.anonymous(NOW)
    assert c.csrf_ok(one, c.csrf_token(one))
    assert not c.csrf_ok(one, c.csrf_token(two))
    assert not c.csrf_ok(one, "")
    # Logging in starts a new seed: a token from the anonymous form is void afterwards.
    after = one.signed_in_as(
        access_token="a",
        refresh_token="r",
        access_expires_at=NOW,
        user_id="u",
        email="e",
        display_name="d",
        role="customer",
        now_s=NOW,
    )
    assert not c.csrf_ok(after, c.csrf_token(one))


def test_roles() -> None:
    assert not Session.anonymous(NOW).signed_in
    assert signed_in().signed_in
    assert not signed_in().is_admin


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SessionCodec(b"short", max_age_s=60)
