"""Access-token signing and verification (pure: keys in a temporary directory)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from payrail_common.tokens import (
    KeyConfigError,
    KeyRing,
    TokenError,
    TokenPolicy,
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
