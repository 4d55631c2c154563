"""Edge assertions: signing, verification, tolerance, rotation, and the wiring that makes
the edge sign only what it authenticated (an in-process edge in front of an upstream
that requires assertions, on loopback)."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.authn import Authenticator, method_paths
from payrail_common.config import ConfigError
from payrail_common.edge_assertion import (
    EDGE_ASSERTION_KEY,
    TOLERANCE_S,
    EdgeAssertions,
    load_edge_assertions,
)
from payrail_common.forwarding import Forwarder
from payrail_common.keys import generate_secret_file
from payrail_common.tokens import KeyRing, TokenError, TokenPolicy, issue_access_token

PAYMENTS = pb.DESCRIPTOR.services_by_name["PaymentService"]
GET = "/payrail.payments.v1.PaymentService/GetPayment"
CREATE = "/payrail.payments.v1.PaymentService/CreatePayment"
NOW = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def assertions(*keys: bytes, clock: Clock | None = None) -> EdgeAssertions:
    return EdgeAssertions(keys, clock_s=clock or Clock())


def reason(edge: EdgeAssertions, method: str, token: str, value: str) -> str:
    with pytest.raises(TokenError) as info:
        edge.verify(method, token, value)
    return info.value.reason


KEY, OTHER_KEY = secrets.token_bytes(32), secrets.token_bytes(32)


def test_an_assertion_verifies_for_its_own_method_and_token_only() -> None:
    edge = assertions(KEY)
    value = edge.sign(GET, "token-a")
    assert re.fullmatch(r"t=1700000000,v1=[0-9a-f]{64}", value)
    edge.verify(GET, "token-a", value)
    assert reason(edge, GET, "token-b", value) == "edge_assertion_bad_mac"
    assert reason(edge, CREATE, "token-a", value) == "edge_assertion_bad_mac"
    # Another key (another deployment, or a guess) proves nothing.
    assert reason(assertions(OTHER_KEY), GET, "token-a", value) == "edge_assertion_bad_mac"


def test_the_timestamp_is_covered_by_the_mac() -> None:
    edge = assertions(KEY)
    value = edge.sign(GET, "token-a")
    moved = value.replace("t=1700000000", "t=1700000001")
    assert reason(edge, GET, "token-a", moved) == "edge_assertion_bad_mac"


@pytest.mark.parametrize("offset_s", [-TOLERANCE_S, -1, 0, 1, TOLERANCE_S])
def test_within_tolerance_either_way_is_accepted(offset_s: int) -> None:
    clock = Clock()
    value = assertions(KEY, clock=clock).sign(GET, "t")
    clock.now = NOW + offset_s
    assertions(KEY, clock=clock).verify(GET, "t", value)


@pytest.mark.parametrize("offset_s", [-TOLERANCE_S - 1, TOLERANCE_S + 1, 3600, -3600])
def test_beyond_tolerance_is_stale(offset_s: int) -> None:
    clock = Clock()
    value = assertions(KEY, clock=clock).sign(GET, "t")
    clock.now = NOW + offset_s
    assert reason(assertions(KEY, clock=clock), GET, "t", value) == "edge_assertion_stale"


def test_rotation_the_first_key_signs_every_key_verifies() -> None:
    old = assertions(OTHER_KEY).sign(GET, "t")
    rotated = assertions(KEY, OTHER_KEY)
    rotated.verify(GET, "t", old)
    new = rotated.sign(GET, "t")
    assertions(KEY).verify(GET, "t", new)
    assert reason(assertions(OTHER_KEY), GET, "t", new) == "edge_assertion_bad_mac"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "edge_assertion_missing"),
        ("garbage", "edge_assertion_malformed"),
        ("t=1700000000", "edge_assertion_malformed"),
        ("v1=" + "0" * 64, "edge_assertion_malformed"),
        ("t=-5,v1=" + "0" * 64, "edge_assertion_malformed"),
        ("t=1e9,v1=" + "0" * 64, "edge_assertion_malformed"),
        ("t=1700000000,v1=" + "0" * 63, "edge_assertion_malformed"),
        ("t=1700000000,v1=" + "G" * 64, "edge_assertion_malformed"),
        ("t=1700000000,v1=" + "0" * 64 + "," + "x" * 200, "edge_assertion_malformed"),
        ("t=1700000000,v1=" + "0" * 64, "edge_assertion_bad_mac"),
    ],
)
def test_malformed_values_are_refused_with_a_reason(value: str, expected: str) -> None:
    assert reason(assertions(KEY), GET, "t", value) == expected


def test_keys_are_required_long_and_never_shown() -> None:
    with pytest.raises(ValueError, match="at least one"):
        EdgeAssertions([])
    with pytest.raises(ValueError, match="32 bytes"):
        EdgeAssertions([b"short"])
    edge = assertions(KEY)
    assert KEY.hex() not in repr(edge)
    assert repr(KEY) not in repr(edge)


def test_keys_load_from_the_files_make_up_writes(tmp_path: Path) -> None:
    new = generate_secret_file(tmp_path, "edge-assertion")
    old = generate_secret_file(tmp_path, "edge-assertion-old")
    signed_by_old = load_edge_assertions(str(old)).sign(GET, "t")
    both = load_edge_assertions(f"{new}, {old}")
    both.verify(GET, "t", signed_by_old)
    load_edge_assertions(str(new)).verify(GET, "t", both.sign(GET, "t"))
    with pytest.raises(ConfigError):
        load_edge_assertions(" , ")
    with pytest.raises(ConfigError):
        load_edge_assertions(str(tmp_path / "missing.key"))


# ---------------------------------------------------------------- edge -> upstream wiring


class Upstream(payments_pb2_grpc.PaymentServiceServicer):
    """Records the assertion each call arrived with."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def GetPayment(self, request: pb.GetPaymentRequest, context: Any) -> Any:
        found = [v for k, v in context.invocation_metadata() if k == EDGE_ASSERTION_KEY]
        self.seen.extend(found)
        return pb.GetPaymentResponse(payment=pb.Payment(payment_id=request.payment_id))

    async def GetBalance(self, request: pb.GetBalanceRequest, context: Any) -> Any:
        return pb.GetBalanceResponse()


@dataclass
class Wiring:
    edge: payments_pb2_grpc.PaymentServiceStub
    direct: payments_pb2_grpc.PaymentServiceStub
    upstream: Upstream
    ring: KeyRing


def token(ring: KeyRing, user_id: str = "u-1") -> tuple[tuple[str, str], ...]:
    access, _ = issue_access_token(
        ring, TokenPolicy(), user_id=user_id, role="customer", session_id="s-1"
    )
    return (("authorization", f"Bearer {access}"),)


@pytest_asyncio.fixture
async def wiring() -> AsyncIterator[Wiring]:
    ring = KeyRing(verifying={}, signing={"k1": Ed25519PrivateKey.generate()}, active_kid="k1")
    edge_assertions = EdgeAssertions([KEY])
    upstream = Upstream()
    upstream_server = grpc.aio.server(
        interceptors=[
            Authenticator(ring, TokenPolicy(), edge_assertions=edge_assertions).interceptor(
                method_paths(PAYMENTS)
            )
        ]
    )
    payments_pb2_grpc.add_PaymentServiceServicer_to_server(upstream, upstream_server)
    upstream_port = upstream_server.add_insecure_port("127.0.0.1:0")
    await upstream_server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{upstream_port}")
    # The edge authenticates GetPayment only, so GetBalance shows what an
    # unauthenticated forward looks like.
    edge_server = grpc.aio.server(
        interceptors=[Authenticator(ring, TokenPolicy()).interceptor(frozenset({GET}))]
    )
    Forwarder(channel, max_deadline_s=2, edge_assertions=edge_assertions).register(
        edge_server, PAYMENTS
    )
    edge_port = edge_server.add_insecure_port("127.0.0.1:0")
    await edge_server.start()
    client = grpc.aio.insecure_channel(f"127.0.0.1:{edge_port}")
    yield Wiring(
        payments_pb2_grpc.PaymentServiceStub(client),
        payments_pb2_grpc.PaymentServiceStub(channel),
        upstream,
        ring,
    )
    await client.close()
    await edge_server.stop(0)
    await channel.close()
    await upstream_server.stop(0)


async def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.details() == "invalid or expired access token"
    code: grpc.StatusCode = info.value.code()
    return code


@pytest.mark.asyncio
async def test_only_calls_the_edge_authenticated_carry_an_assertion(wiring: Wiring) -> None:
    metadata = token(wiring.ring)
    reply = await wiring.edge.GetPayment(
        pb.GetPaymentRequest(payment_id="p1"), metadata=metadata, timeout=5
    )
    assert reply.payment.payment_id == "p1"
    assert len(wiring.upstream.seen) == 1
    # A method the edge did not authenticate is forwarded without one, so the upstream
    # refuses it even with a genuine token.
    unsigned = wiring.edge.GetBalance(pb.GetBalanceRequest(), metadata=metadata, timeout=5)
    assert await code_of(unsigned) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.asyncio
async def test_a_genuine_token_sent_past_the_edge_is_refused(wiring: Wiring) -> None:
    call = wiring.direct.GetPayment(
        pb.GetPaymentRequest(payment_id="p1"), metadata=token(wiring.ring), timeout=5
    )
    assert await code_of(call) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.asyncio
async def test_a_client_cannot_bring_its_own_assertion_through_the_edge(wiring: Wiring) -> None:
    forged = (EDGE_ASSERTION_KEY, "t=1,v1=" + "0" * 64)
    await wiring.edge.GetPayment(
        pb.GetPaymentRequest(payment_id="p1"), metadata=(*token(wiring.ring), forged), timeout=5
    )
    assert len(wiring.upstream.seen) == 1
    assert wiring.upstream.seen[0] != forged[1]


@pytest.mark.asyncio
async def test_a_captured_assertion_is_useless_with_another_token_or_method(
    wiring: Wiring,
) -> None:
    victim = token(wiring.ring, "victim")
    await wiring.edge.GetPayment(pb.GetPaymentRequest(payment_id="p1"), metadata=victim, timeout=5)
    captured = (EDGE_ASSERTION_KEY, wiring.upstream.seen[-1])
    # The same token and method with it passes (the control) ...
    await wiring.direct.GetPayment(
        pb.GetPaymentRequest(payment_id="p1"), metadata=(*victim, captured), timeout=5
    )
    # ... another token or another method does not.
    other = token(wiring.ring, "attacker")
    other_token = wiring.direct.GetPayment(
        pb.GetPaymentRequest(payment_id="p1"), metadata=(*other, captured), timeout=5
    )
    assert await code_of(other_token) == grpc.StatusCode.UNAUTHENTICATED
    other_method = wiring.direct.GetBalance(
        pb.GetBalanceRequest(), metadata=(*victim, captured), timeout=5
    )
    assert await code_of(other_method) == grpc.StatusCode.UNAUTHENTICATED
