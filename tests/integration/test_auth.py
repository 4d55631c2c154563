"""Accounts and authentication against the real PostgreSQL and Redis, through gRPC."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import statistics
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis.asyncio import Redis

from gateway_svc import bootstrap as gateway_bootstrap
from payment_svc import bootstrap as payment_bootstrap
from payrail.auth.v1 import auth_pb2 as apb
from payrail.auth.v1 import auth_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.reasons import Reason
from payrail_common.tokens import KeyRing, TokenPolicy, issue_access_token, load_private_key
from tests.conftest import JwtKeys, StackEnv, make_keys
from tests.helpers import PASSWORD, User, register_and_login, unique_email
from tests.integration.conftest import Platform, gateway_settings, payment_settings
from tests.rich_errors import assert_catalogued, rich_error

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def auth(channel: grpc.aio.Channel) -> auth_pb2_grpc.AuthServiceStub:
    return auth_pb2_grpc.AuthServiceStub(channel)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def rpc_error(awaitable: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable  # type: ignore[misc]
    return info.value


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    found: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.update({v.field: v.description for v in bad.field_violations})
    return found


async def count_credentials(stack: StackEnv) -> int:
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM auth.credentials"))
    finally:
        await conn.close()


# ------------------------------------------------------------------ register / login


async def test_register_login_profile_happy_path(channel: grpc.aio.Channel) -> None:
    email = unique_email("Happy")
    user = await register_and_login(channel, email)
    profile = await auth(channel).GetProfile(
        apb.GetProfileRequest(), metadata=user.metadata, timeout=5
    )
    assert profile.user_id == user.user_id
    assert profile.email == email.lower()
    assert (profile.first_name, profile.last_name) == ("Ada", "Lovelace")
    assert profile.role == apb.ROLE_CUSTOMER
    age = datetime.now(UTC) - profile.register_time.ToDatetime(tzinfo=UTC)
    assert timedelta(0) <= age < timedelta(minutes=1)

    header = jwt.get_unverified_header(user.access_token)
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    assert header["alg"] == "EdDSA"
    assert header["kid"] == "test-1"
    assert {"iss", "aud", "sub", "exp", "iat", "jti", "sid", "role"} <= claims.keys()
    assert claims["sub"] == user.user_id
    assert claims["role"] == "customer"
    assert 0 < claims["exp"] - claims["iat"] <= 15 * 60


async def test_login_is_case_insensitive_on_email(channel: grpc.aio.Channel) -> None:
    email = unique_email("Mixed")
    await register_and_login(channel, email)
    tokens = await auth(channel).Login(
        apb.LoginRequest(email=email.upper(), password=PASSWORD), timeout=10
    )
    assert tokens.access_token
    assert tokens.access_token_expires_in_seconds == 900


async def test_duplicate_email_in_any_case_writes_nothing_and_answers_ok(
    channel: grpc.aio.Channel, stack: StackEnv
) -> None:
    email = unique_email("dup")
    await register_and_login(channel, email)
    before = await count_credentials(stack)
    # OK and empty, as for a new e-mail (test_register_enumeration.py compares the two).
    reply = await auth(channel).Register(
        apb.RegisterRequest(
            email=email.upper(), password="another long passphrase 7", first_name="A", last_name="B"
        ),
        timeout=10,
    )
    assert reply == apb.RegisterResponse()
    assert await count_credentials(stack) == before
    # The owner's password is unchanged; the intruder's never logs in.
    await auth(channel).Login(apb.LoginRequest(email=email, password=PASSWORD), timeout=10)
    error = await rpc_error(
        auth(channel).Login(
            apb.LoginRequest(email=email, password="another long passphrase 7"), timeout=10
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "password",
    ["short-pw", "password1234", "aaaaaaaaaaaaaaaa", "123456789012", "qwertyuiopasdf"],
)
async def test_weak_password_is_refused_and_nothing_written(
    channel: grpc.aio.Channel, stack: StackEnv, password: str
) -> None:
    before = await count_credentials(stack)
    error = await rpc_error(
        auth(channel).Register(
            apb.RegisterRequest(
                email=unique_email(), password=password, first_name="A", last_name="B"
            ),
            timeout=10,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(error)) == {"password"}
    assert_catalogued(rich_error(error), Reason.VALIDATION_FAILED)
    assert password not in (error.details() or "")
    assert await count_credentials(stack) == before


async def test_long_passphrase_is_welcome(channel: grpc.aio.Channel) -> None:
    stub = auth(channel)
    phrase = (
        "the tide comes in twice a day over the old stone pier, and every time it leaves "
        "a little more sand on the steps where my grandmother used to sit and read"
    )
    email = unique_email()
    await stub.Register(
        apb.RegisterRequest(email=email, password=phrase, first_name="A", last_name="B"),
        timeout=10,
    )
    tokens = await stub.Login(apb.LoginRequest(email=email, password=phrase), timeout=10)
    assert tokens.refresh_token


async def test_every_bad_field_is_named(channel: grpc.aio.Channel) -> None:
    error = await rpc_error(
        auth(channel).Register(
            apb.RegisterRequest(email="not-an-email", password="x", first_name=" ", last_name=""),
            timeout=10,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(error)) == {"email", "password", "first_name", "last_name"}
    # The same reason as every other service's validation (issue 12.11).
    assert_catalogued(rich_error(error), Reason.VALIDATION_FAILED)


async def test_wrong_password_and_unknown_email_look_the_same(channel: grpc.aio.Channel) -> None:
    user = await register_and_login(channel)
    stub = auth(channel)

    async def failed_login(email: str) -> tuple[grpc.aio.AioRpcError, float]:
        started = time.perf_counter()
        error = await rpc_error(
            stub.Login(apb.LoginRequest(email=email, password="wrong-password-123"), timeout=10)
        )
        return error, time.perf_counter() - started

    known = [await failed_login(user.email) for _ in range(3)]
    unknown = [await failed_login(unique_email("ghost")) for _ in range(3)]
    for error, _ in known + unknown:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error.details() == known[0][0].details()
        assert_catalogued(rich_error(error), Reason.INVALID_CREDENTIALS)
    # Both paths run one Argon2 verification: comparable cost, no cheap "no such user".
    known_s = statistics.median(t for _, t in known)
    unknown_s = statistics.median(t for _, t in unknown)
    assert 1 / 3 < unknown_s / known_s < 3, (known_s, unknown_s)


async def test_failed_logins_are_throttled_per_email_with_retry_info(
    channel: grpc.aio.Channel,
) -> None:
    user = await register_and_login(channel)
    stub = auth(channel)
    for _ in range(5):
        error = await rpc_error(
            stub.Login(
                apb.LoginRequest(email=user.email, password="wrong-password-123"), timeout=10
            )
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # Now even the right password is refused until the window passes.
    error = await rpc_error(
        stub.Login(apb.LoginRequest(email=user.email, password=PASSWORD), timeout=10)
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(error)
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details)
    assert 0 < retry.retry_delay.seconds <= 900
    assert_catalogued(rich_error(error), Reason.TOO_MANY_ATTEMPTS)


async def test_failed_logins_are_throttled_per_peer(stack: StackEnv, jwt_keys: JwtKeys) -> None:
    redis = Redis.from_url(stack.redis_url)
    await redis.delete("login-fail:peer:127.0.0.1")
    settings = replace(
        gateway_settings(stack, jwt_keys, 1), login_max_failures_per_peer=3, metrics_port=0
    )
    gateway = await gateway_bootstrap.build(settings)
    await gateway.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
            stub = auth(ch)
            codes = []
            for _ in range(4):  # four different e-mails: only the peer is common
                error = await rpc_error(
                    stub.Login(
                        apb.LoginRequest(email=unique_email(), password="x" * 12), timeout=10
                    )
                )
                codes.append(error.code())
    finally:
        await gateway.stop(0)
        await redis.delete("login-fail:peer:127.0.0.1")
        await redis.aclose()
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]


# ------------------------------------------------------------------ sessions


async def test_logout_revokes_the_unexpired_access_token_at_once(
    channel: grpc.aio.Channel,
) -> None:
    user = await register_and_login(channel)
    stub = auth(channel)
    await stub.GetProfile(apb.GetProfileRequest(), metadata=user.metadata, timeout=5)
    await stub.Logout(apb.LogoutRequest(), metadata=user.metadata, timeout=5)
    error = await rpc_error(
        stub.GetProfile(apb.GetProfileRequest(), metadata=user.metadata, timeout=5)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # A revoked token sounds like a forged one: the caller learns nothing more.
    assert_catalogued(rich_error(error), Reason.ACCESS_TOKEN_INVALID)
    payments_error = await rpc_error(
        payments_pb2_grpc.PaymentServiceStub(channel).GetBalance(
            pb.GetBalanceRequest(), metadata=user.metadata, timeout=5
        )
    )
    assert payments_error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert_catalogued(rich_error(payments_error), Reason.ACCESS_TOKEN_INVALID)
    refresh_error = await rpc_error(
        stub.RefreshToken(apb.RefreshTokenRequest(refresh_token=user.refresh_token), timeout=5)
    )
    assert refresh_error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert_catalogued(rich_error(refresh_error), Reason.REFRESH_TOKEN_INVALID)


async def test_refresh_rotates_and_reuse_revokes_the_session(channel: grpc.aio.Channel) -> None:
    user = await register_and_login(channel)
    stub = auth(channel)
    rotated = await stub.RefreshToken(
        apb.RefreshTokenRequest(refresh_token=user.refresh_token), timeout=5
    )
    assert rotated.refresh_token != user.refresh_token
    assert rotated.access_token != user.access_token
    profile = await stub.GetProfile(
        apb.GetProfileRequest(), metadata=bearer(rotated.access_token), timeout=5
    )
    assert profile.user_id == user.user_id

    # The spent token comes back (stolen copy): refused, and the whole session ends.
    reuse = await rpc_error(
        stub.RefreshToken(apb.RefreshTokenRequest(refresh_token=user.refresh_token), timeout=5)
    )
    assert reuse.code() == grpc.StatusCode.UNAUTHENTICATED
    assert_catalogued(rich_error(reuse), Reason.REFRESH_TOKEN_INVALID)
    for token in (rotated.access_token, user.access_token):
        error = await rpc_error(
            stub.GetProfile(apb.GetProfileRequest(), metadata=bearer(token), timeout=5)
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    error = await rpc_error(
        stub.RefreshToken(apb.RefreshTokenRequest(refresh_token=rotated.refresh_token), timeout=5)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_refresh_token_is_stored_only_hashed(
    channel: grpc.aio.Channel, stack: StackEnv
) -> None:
    user = await register_and_login(channel)
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT r.token_hash FROM auth.refresh_tokens r JOIN auth.sessions s"
            " ON s.id = r.session_id WHERE s.user_id = $1",
            uuid.UUID(user.user_id),
        )
    finally:
        await conn.close()
    assert len(rows) == 1
    assert user.refresh_token.encode() not in bytes(rows[0]["token_hash"])
    assert len(rows[0]["token_hash"]) == 32


# ------------------------------------------------------------------ forged tokens


def _tamper_signature(token: str) -> str:
    head, payload, signature = token.split(".")
    flipped = "A" if signature[5] != "A" else "B"
    return ".".join((head, payload, signature[:5] + flipped + signature[6:]))


def _tamper_payload(token: str) -> str:
    head, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["role"] = "admin"
    forged = jwt.encode(claims, "k" * 32, algorithm="HS256").split(".")[1]
    return ".".join((head, forged, signature))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, object], header: dict[str, str]) -> str:
    """alg=none: a header, a payload and an empty signature."""
    head = _b64(json.dumps({"alg": "none", "typ": "JWT", **header}).encode())
    return f"{head}.{_b64(json.dumps(claims).encode())}."


def _hs256(claims: dict[str, object], key: bytes, header: dict[str, str]) -> str:
    """HS256 by hand: PyJWT itself refuses a PEM key as an HMAC secret."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", **header}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def forged_tokens(user: User, keys: JwtKeys, tmp_path: Path) -> dict[str, str]:
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    header = {"kid": keys.kid}
    ring = KeyRing(
        verifying={}, signing={keys.kid: load_private_key(keys.private_path)}, active_kid=keys.kid
    )
    expired, _ = issue_access_token(
        ring,
        TokenPolicy(),
        user_id=user.user_id,
        role="customer",
        session_id=claims["sid"],
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    rogue = make_keys(tmp_path, "rogue")
    rogue_ring = KeyRing(
        verifying={}, signing={"rogue": load_private_key(rogue.private_path)}, active_kid="rogue"
    )
    unknown_kid, _ = issue_access_token(
        rogue_ring, TokenPolicy(), user_id=user.user_id, role="customer", session_id=claims["sid"]
    )
    # An attacker who knows our public key signs HS256 with it as the "secret".
    public_pem = keys.public_path.read_bytes()
    hmac_with_public_key = _hs256(claims, public_pem, header)
    return {
        "missing": "",
        "garbage": "not.a.jwt",
        "alg_none": _unsigned(claims, header),
        "hmac_with_public_key": hmac_with_public_key,
        "tampered_signature": _tamper_signature(user.access_token),
        "tampered_payload": _tamper_payload(user.access_token),
        "expired": expired,
        "unknown_kid": unknown_kid,
    }


async def test_every_forged_token_is_refused_at_the_edge_and_by_payment_svc(
    platform: Platform, channel: grpc.aio.Channel, jwt_keys: JwtKeys, tmp_path: Path
) -> None:
    user = await register_and_login(channel)
    tokens = forged_tokens(user, jwt_keys, tmp_path)
    _, payment = platform
    async with grpc.aio.insecure_channel(f"127.0.0.1:{payment.port}") as internal:
        direct = payments_pb2_grpc.PaymentServiceStub(internal)
        for name, token in tokens.items():
            metadata = bearer(token) if token else ()
            # Only "none sent" and "genuine but expired" are told apart (issue 12.11).
            reason = {
                "missing": Reason.ACCESS_TOKEN_MISSING,
                "expired": Reason.ACCESS_TOKEN_EXPIRED,
            }.get(name, Reason.ACCESS_TOKEN_INVALID)
            edge = await rpc_error(
                auth(channel).GetProfile(apb.GetProfileRequest(), metadata=metadata, timeout=5)
            )
            assert edge.code() == grpc.StatusCode.UNAUTHENTICATED, name
            assert_catalogued(rich_error(edge), reason)
            forwarded = await rpc_error(
                payments_pb2_grpc.PaymentServiceStub(channel).GetBalance(
                    pb.GetBalanceRequest(), metadata=metadata, timeout=5
                )
            )
            assert_catalogued(rich_error(forwarded), reason)
            # payment_svc does not trust the edge: it re-verifies the token itself.
            inner = await rpc_error(
                direct.GetBalance(pb.GetBalanceRequest(), metadata=metadata, timeout=5)
            )
            assert inner.code() == grpc.StatusCode.UNAUTHENTICATED, name
            assert_catalogued(rich_error(inner), reason)
        # The genuine token passes the edge and, forwarded by it, payment_svc; sent straight
        # to payment_svc, without the edge's assertion, it is refused like the forgeries.
        ok = await auth(channel).GetProfile(
            apb.GetProfileRequest(), metadata=user.metadata, timeout=5
        )
        assert ok.user_id == user.user_id
        forwarded = await payments_pb2_grpc.PaymentServiceStub(channel).GetBalance(
            pb.GetBalanceRequest(), metadata=user.metadata, timeout=5
        )
        assert list(forwarded.balances) == []
        bare = await rpc_error(
            direct.GetBalance(pb.GetBalanceRequest(), metadata=user.metadata, timeout=5)
        )
        assert bare.code() == grpc.StatusCode.UNAUTHENTICATED
        assert_catalogued(rich_error(bare), Reason.ACCESS_TOKEN_INVALID)


async def test_a_bare_user_header_is_not_trusted_by_payment_svc(platform: Platform) -> None:
    _, payment = platform
    async with grpc.aio.insecure_channel(f"127.0.0.1:{payment.port}") as internal:
        error = await rpc_error(
            payments_pb2_grpc.PaymentServiceStub(internal).GetBalance(
                pb.GetBalanceRequest(),
                metadata=(("x-user-id", str(uuid.uuid4())), ("x-role", "admin")),
                timeout=5,
            )
        )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


# ------------------------------------------------------------------ keys


async def test_key_rotation_keeps_tokens_of_both_keys_valid(
    stack: StackEnv, jwt_keys: JwtKeys, tmp_path: Path
) -> None:
    new_key = make_keys(tmp_path, "test-2")
    payment = await payment_bootstrap.build(
        replace(
            payment_settings(stack, jwt_keys),
            jwt_public_keys=f"{jwt_keys.public_spec},{new_key.public_spec}",
        )
    )
    await payment.start()
    old_gateway = await gateway_bootstrap.build(gateway_settings(stack, jwt_keys, payment.port))
    await old_gateway.start()
    rotated_gateway = await gateway_bootstrap.build(
        replace(
            gateway_settings(stack, jwt_keys, payment.port),
            jwt_signing_keys=f"{jwt_keys.signing_spec},{new_key.signing_spec}",
            jwt_active_kid="test-2",
        )
    )
    await rotated_gateway.start()
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{old_gateway.port}") as old_ch,
            grpc.aio.insecure_channel(f"127.0.0.1:{rotated_gateway.port}") as new_ch,
        ):
            before = await register_and_login(old_ch)
            after = await auth(new_ch).Login(
                apb.LoginRequest(email=before.email, password=PASSWORD), timeout=10
            )
            assert jwt.get_unverified_header(before.access_token)["kid"] == "test-1"
            assert jwt.get_unverified_header(after.access_token)["kid"] == "test-2"
            for token in (before.access_token, after.access_token):
                profile = await auth(new_ch).GetProfile(
                    apb.GetProfileRequest(), metadata=bearer(token), timeout=5
                )
                assert profile.user_id == before.user_id
                forwarded = await payments_pb2_grpc.PaymentServiceStub(new_ch).GetBalance(
                    pb.GetBalanceRequest(), metadata=bearer(token), timeout=5
                )
                assert list(forwarded.balances) == []  # authenticated by payment_svc too
            # The old gateway never learnt test-2: it refuses the new token.
            refused = await rpc_error(
                auth(old_ch).GetProfile(
                    apb.GetProfileRequest(), metadata=bearer(after.access_token), timeout=5
                )
            )
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await rotated_gateway.stop(0)
        await old_gateway.stop(0)
        await payment.stop(0)


async def test_password_hash_is_upgraded_when_parameters_rise(
    stack: StackEnv, jwt_keys: JwtKeys, channel: grpc.aio.Channel
) -> None:
    user = await register_and_login(channel)
    stronger = await gateway_bootstrap.build(
        replace(gateway_settings(stack, jwt_keys, 1), argon2_time_cost=3)
    )
    await stronger.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stronger.port}") as ch:
            await auth(ch).Login(apb.LoginRequest(email=user.email, password=PASSWORD), timeout=10)
    finally:
        await stronger.stop(0)
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        stored = await conn.fetchval(
            "SELECT password_hash FROM auth.credentials WHERE lower(email) = $1", user.email
        )
    finally:
        await conn.close()
    assert stored.startswith("$argon2id$")
    assert ",t=3," in stored
    # The old password still works against the upgraded hash.
    again = await auth(channel).Login(
        apb.LoginRequest(email=user.email, password=PASSWORD), timeout=10
    )
    assert again.access_token
