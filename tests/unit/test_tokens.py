"""Access-token signing and verification (pure: keys in a temporary directory)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from payrail_common.tokens import (
    KeyConfigError,
    KeyRing,
    Principal,
    TokenError,
    TokenPolicy,
    VerifiedTokens,
    generate_key_files,
    issue_access_token,
    load_private_key,
    load_public_key,
    parse_key_spec,
    verify_access_token,
)

POLICY = TokenPolicy()


def ring_for(tmp_path: Path, *kids: str, active: str | None = None) -> KeyRing:
    signing = {kid: load_private_key(generate_key_files(tmp_path, kid)[0]) for kid in kids}
    return KeyRing(verifying={}, signing=signing, active_kid=active or kids[0])


def token(ring: KeyRing, **overrides: object) -> str:
    value, _ = issue_access_token(
        ring,
        POLICY,
        user_id="u-1",
        role="customer",
        session_id="s-1",
        **overrides,  # type: ignore[arg-type]
    )
    return value


def test_round_trip_carries_the_principal(tmp_path: Path) -> None:
    ring = ring_for(tmp_path, "k1")
    principal = verify_access_token(ring, POLICY, token(ring))
    assert (principal.user_id, principal.role, principal.session_id) == ("u-1", "customer", "s-1")
    assert principal.token_id


def test_verify_only_ring_from_public_key_files(tmp_path: Path) -> None:
    private_path, public_path = generate_key_files(tmp_path, "k1")
    signer = KeyRing.from_files(signing_spec=f"k1={private_path}", active_kid="k1")
    verifier = KeyRing.from_files(public_spec=f"k1={public_path}")
    assert verify_access_token(verifier, POLICY, token(signer)).user_id == "u-1"
    with pytest.raises(KeyConfigError, match="only verify"):
        verifier.signing_key()


def test_expiry_honours_the_leeway(tmp_path: Path) -> None:
    ring = ring_for(tmp_path, "k1")
    just_expired = datetime.now(UTC) - timedelta(seconds=POLICY.access_ttl_s + 10)
    assert verify_access_token(ring, POLICY, token(ring, now=just_expired))
    long_expired = datetime.now(UTC) - timedelta(seconds=POLICY.access_ttl_s + 120)
    with pytest.raises(TokenError) as info:
        verify_access_token(ring, POLICY, token(ring, now=long_expired))
    assert info.value.reason == "expired"


def test_wrong_audience_or_issuer_is_refused(tmp_path: Path) -> None:
    ring = ring_for(tmp_path, "k1")
    value = token(ring)
    for policy in (TokenPolicy(audience="other"), TokenPolicy(issuer="someone-else")):
        with pytest.raises(TokenError) as info:
            verify_access_token(ring, policy, value)
        assert info.value.reason == "bad_claims"


def test_algorithm_allow_list_comes_before_any_key(tmp_path: Path) -> None:
    ring = ring_for(tmp_path, "k1")
    hs = jwt.encode({"sub": "u"}, "x" * 32, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(TokenError) as info:
        verify_access_token(ring, POLICY, hs)
    assert info.value.reason == "algorithm_not_allowed"


def test_unknown_kid_and_missing_token(tmp_path: Path) -> None:
    ours = ring_for(tmp_path / "a", "k1")
    theirs = ring_for(tmp_path / "b", "k9")
    with pytest.raises(TokenError) as info:
        verify_access_token(ours, POLICY, token(theirs))
    assert info.value.reason == "unknown_kid"
    with pytest.raises(TokenError) as missing:
        verify_access_token(ours, POLICY, "")
    assert missing.value.reason == "missing"


def test_same_kid_other_key_fails_the_signature(tmp_path: Path) -> None:
    ours = ring_for(tmp_path / "a", "k1")
    impostor = ring_for(tmp_path / "b", "k1")
    with pytest.raises(TokenError) as info:
        verify_access_token(ours, POLICY, token(impostor))
    assert info.value.reason == "bad_signature"


def test_rotation_keeps_both_keys_verifying(tmp_path: Path) -> None:
    old = ring_for(tmp_path, "k1")
    rotated = ring_for(tmp_path, "k1", "k2", active="k2")
    assert jwt.get_unverified_header(token(rotated))["kid"] == "k2"
    assert verify_access_token(rotated, POLICY, token(old)).user_id == "u-1"
    assert verify_access_token(rotated, POLICY, token(rotated)).user_id == "u-1"


def test_ttl_is_capped_at_fifteen_minutes() -> None:
    with pytest.raises(ValueError, match="access_ttl_s"):
        TokenPolicy(access_ttl_s=901)


def test_key_files_and_specs(tmp_path: Path) -> None:
    private_path, public_path = generate_key_files(tmp_path, "dev")
    assert private_path.stat().st_mode & 0o077 == 0
    before = private_path.read_bytes()
    generate_key_files(tmp_path, "dev")  # idempotent: never overwrites a key
    assert private_path.read_bytes() == before
    assert load_public_key(public_path) == load_public_key(private_path)
    assert parse_key_spec(" a=/x.pem , b=/y.pem ") == {"a": Path("/x.pem"), "b": Path("/y.pem")}
    with pytest.raises(KeyConfigError):
        parse_key_spec("no-equals-sign")
    with pytest.raises(KeyConfigError, match="cannot read"):
        KeyRing.from_files(public_spec=f"k=/nonexistent/{tmp_path.name}.pem")
    with pytest.raises(KeyConfigError, match="active key id"):
        KeyRing.from_files(signing_spec=f"dev={private_path}", active_kid="other")


class CountingVerify:
    """verify_access_token, counting the calls that reach it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, ring: KeyRing, policy: TokenPolicy, value: str) -> Principal:
        self.calls += 1
        return verify_access_token(ring, policy, value)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> CountingVerify:
    counter = CountingVerify()
    monkeypatch.setattr("payrail_common.tokens.verify_access_token", counter)
    return counter


def test_a_verified_token_is_not_checked_again(tmp_path: Path, counted: CountingVerify) -> None:
    ring = ring_for(tmp_path, "k1")
    cache = VerifiedTokens(ring, POLICY)
    value = token(ring)
    first, second = cache.verify(value), cache.verify(value)
    assert first == second
    assert counted.calls == 1


def test_refused_tokens_are_never_remembered(tmp_path: Path, counted: CountingVerify) -> None:
    ring = ring_for(tmp_path, "k1")
    cache = VerifiedTokens(ring, POLICY)
    forged = token(ring)[:-4] + "AAAA"
    for _ in range(2):
        with pytest.raises(TokenError):
            cache.verify(forged)
    assert (counted.calls, len(cache)) == (2, 0)


def test_an_entry_past_its_expiry_is_verified_again(
    tmp_path: Path, counted: CountingVerify
) -> None:
    ring = ring_for(tmp_path, "k1")
    now = [0.0]
    cache = VerifiedTokens(ring, POLICY, clock_s=lambda: now[0])
    value = token(ring)
    principal = cache.verify(value)
    now[0] = principal.expires_at + POLICY.leeway_s  # still within the leeway
    cache.verify(value)
    assert counted.calls == 1
    now[0] += 1  # past it: the cache no longer vouches for the token
    cache.verify(value)
    assert counted.calls == 2


def test_the_least_recently_used_go_first(tmp_path: Path, counted: CountingVerify) -> None:
    ring = ring_for(tmp_path, "k1")
    cache = VerifiedTokens(ring, POLICY, entries_max=2)
    a, b, c = token(ring), token(ring), token(ring)
    cache.verify(a)
    cache.verify(b)
    cache.verify(a)  # a is now the most recently used
    cache.verify(c)  # evicts b
    assert len(cache) == 2
    cache.verify(a)
    assert counted.calls == 3
    cache.verify(b)
    assert counted.calls == 4
