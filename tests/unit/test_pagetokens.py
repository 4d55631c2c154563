"""The page-token codec: a token opens only unchanged, for its scope, user and filters,
before its expiry; forged, tampered and legacy base64-JSON tokens are refused."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest

from payrail_common.keys import generate_secret_file, read_secret_file
from payrail_common.pagetokens import (
    PAGE_TOKEN_CHARS_MAX,
    TTL_S_DEFAULT,
    PageTokenError,
    PageTokens,
    derive_keys,
    load_page_tokens,
)

KEY = secrets.token_bytes(32)
OTHER_KEY = secrets.token_bytes(32)
NOW = 1_700_000_000.0
SCOPE = "payments.ListPayments"
ALICE, BOB = "user-alice", "user-bob"
CURSOR = ("2026-01-01T00:00:00+00:00", "0b9c9b2e-0d7e-4a55-9d5c-1f7a4c1f8f3e")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def codec(*keys: bytes, clock: Clock | None = None) -> PageTokens:
    return PageTokens(keys or (KEY,), clock_s=clock or Clock())


def issue(tokens: PageTokens, *, user: str = ALICE, filters: tuple[int, ...] = (0, 0)) -> str:
    return tokens.issue(scope=SCOPE, user_id=user, filters=filters, cursor=CURSOR)


def refusal(tokens: PageTokens, token: str, **kwargs: object) -> str:
    options: dict[str, object] = {"scope": SCOPE, "user_id": ALICE, "filters": (0, 0), "arity": 2}
    options.update(kwargs)
    with pytest.raises(PageTokenError) as caught:
        tokens.open(token, **options)  # type: ignore[arg-type]
    return str(caught.value)


def test_a_token_opens_to_its_cursor() -> None:
    tokens = codec()
    token = issue(tokens)
    assert tokens.open(token, scope=SCOPE, user_id=ALICE, filters=(0, 0), arity=2) == CURSOR
    assert token.startswith("p1.")
    assert len(token) < PAGE_TOKEN_CHARS_MAX


def test_another_users_token_is_refused() -> None:
    tokens = codec()
    assert "not a token" in refusal(tokens, issue(tokens, user=BOB))


def test_another_lists_token_is_refused() -> None:
    tokens = codec()
    assert "not a token" in refusal(tokens, issue(tokens), scope="insights.ListBenefitTips")


def test_changed_filters_are_named() -> None:
    tokens = codec()
    assert "other filters" in refusal(tokens, issue(tokens, filters=(3, 0)))


def test_an_expired_token_is_refused() -> None:
    clock = Clock()
    tokens = codec(clock=clock)
    token = issue(tokens)
    clock.now += TTL_S_DEFAULT - 1
    tokens.open(token, scope=SCOPE, user_id=ALICE, filters=(0, 0), arity=2)
    clock.now += 1
    assert "expired" in refusal(tokens, token)


def test_a_token_of_another_deployment_is_refused() -> None:
    assert "not a token" in refusal(codec(KEY), issue(codec(OTHER_KEY)))


def test_a_tampered_cursor_is_refused() -> None:
    tokens = codec()
    prefix, payload, mac = issue(tokens).split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["c"] = ["2026-01-01T00:00:00+00:00", "x' OR '1'='1"]
    data["x"] += 10**9  # and a longer life
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    assert "not a token" in refusal(tokens, f"{prefix}.{forged}.{mac}")


def test_a_flipped_mac_bit_is_refused() -> None:
    tokens = codec()
    prefix, payload, mac = issue(tokens).split(".")
    raw = bytearray(base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4)))
    raw[0] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert "not a token" in refusal(tokens, f"{prefix}.{payload}.{flipped}")


@pytest.mark.parametrize(
    "token",
    [
        # The former format: base64 JSON, unsigned.
        base64.urlsafe_b64encode(json.dumps({"t": CURSOR[0], "id": CURSOR[1]}).encode()).decode(),
        "",
        "p1",
        "p1..",
        "p1.e30.",
        "p2.e30.AAAA",
        "p1.!!!.!!!",
        "p1.e30.AAAA.AAAA",
        "p1.\u00e9.\u00e9",
        "p1." + "A" * (PAGE_TOKEN_CHARS_MAX + 1) + ".AAAA",
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert "not a token" in refusal(codec(), token)


def test_rotation_old_tokens_open_new_ones_are_signed_with_the_first_key() -> None:
    old = issue(codec(OTHER_KEY))
    rotated = codec(KEY, OTHER_KEY)
    assert rotated.open(old, scope=SCOPE, user_id=ALICE, filters=(0, 0), arity=2) == CURSOR
    new = issue(rotated)
    codec(KEY).open(new, scope=SCOPE, user_id=ALICE, filters=(0, 0), arity=2)
    assert "not a token" in refusal(codec(OTHER_KEY), new)


def test_a_signed_cursor_of_the_wrong_shape_is_refused() -> None:
    tokens = codec()
    token = tokens.issue(scope=SCOPE, user_id=ALICE, filters=(0, 0), cursor=("only-one",))
    assert "not a token" in refusal(tokens, token)


def test_keys_are_derived_under_their_own_label_and_never_shown(tmp_path: Path) -> None:
    edge = read_secret_file(generate_secret_file(tmp_path, "edge-assertion"))
    derived = derive_keys([edge])
    assert len(derived[0]) == 32
    assert derived[0] != edge
    tokens = load_page_tokens(str(tmp_path / "edge-assertion.key"))
    token = issue(tokens)
    assert codec(derived[0]).open(token, scope=SCOPE, user_id=ALICE, filters=(0, 0), arity=2)
    assert "not a token" in refusal(codec(edge), token)  # the edge key itself does not sign
    assert edge.hex() not in repr(tokens)
    assert derived[0].hex() not in repr(tokens)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PageTokens([b"short"])
    with pytest.raises(ValueError, match="at least one"):
        PageTokens([])
