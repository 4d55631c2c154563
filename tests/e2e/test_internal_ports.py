"""Issue 12.1: the internal ports trust no less than the edge. A token revoked by Logout
or by refresh-token reuse, or a live one sent past the edge, is refused by payment_svc
and insights on their own ports; only calls the edge authenticated (and signed an
assertion for) pass. Real processes, as `make up` runs them."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio

from payrail.auth.v1 import auth_pb2 as apb
from payrail.auth.v1 import auth_pb2_grpc
from payrail.insights.v1 import insights_pb2 as ipb
from payrail.insights.v1 import insights_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.edge_assertion import EDGE_ASSERTION_KEY, EdgeAssertions
from payrail_common.keys import read_secret_file
from payrail_common.reasons import Reason
from tests.conftest import JwtKeys
from tests.e2e.conftest import Running
from tests.e2e.test_processing import APPROVE, request
from tests.helpers import User, register_and_login
from tests.rich_errors import assert_catalogued, rich_error

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

GENERIC = "invalid or expired access token"
LIST_PAYMENTS = "/payrail.payments.v1.PaymentService/ListPayments"
CREATE_PAYMENT = "/payrail.payments.v1.PaymentService/CreatePayment"
LIST_TIPS = "/payrail.insights.v1.InsightsService/ListBenefitTips"

Metadata = tuple[tuple[str, str], ...]


@dataclass
class Ports:
    """One channel per door: the edge, payment_svc's port, insights' port."""

    edge: grpc.aio.Channel
    payment: grpc.aio.Channel
    insights: grpc.aio.Channel


@pytest_asyncio.fixture(loop_scope="session")
async def ports(services: list[Running]) -> AsyncIterator[Ports]:
    by_name = {s.name: s.port for s in services}
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{by_name['gateway']}") as edge,
        grpc.aio.insecure_channel(f"127.0.0.1:{by_name['payment']}") as payment,
        grpc.aio.insecure_channel(f"127.0.0.1:{by_name['insights']}") as insights,
    ):
        yield Ports(edge, payment, insights)


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


async def drain(call: Any) -> Any:
    """Await a unary call, or read a stream to its end."""
    if hasattr(call, "__aiter__"):
        return [item async for item in call]
    return await call


def calls(channel: grpc.aio.Channel, payment_id: str) -> dict[str, Callable[[Metadata], Any]]:
    """Every PaymentService RPC a client would try, on ``channel``."""
    stub = payments_pb2_grpc.PaymentServiceStub(channel)
    return {
        "CreatePayment": lambda md: stub.CreatePayment(
            request(pb.PAYMENT_KIND_DEPOSIT, APPROVE), metadata=md, timeout=5
        ),
        "GetPayment": lambda md: stub.GetPayment(
            pb.GetPaymentRequest(payment_id=payment_id), metadata=md, timeout=5
        ),
        "ListPayments": lambda md: stub.ListPayments(
            pb.ListPaymentsRequest(), metadata=md, timeout=5
        ),
        "GetBalance": lambda md: stub.GetBalance(pb.GetBalanceRequest(), metadata=md, timeout=5),
        "CancelPayment": lambda md: stub.CancelPayment(
            pb.CancelPaymentRequest(payment_id=payment_id), metadata=md, timeout=5
        ),
        "WatchPayment": lambda md: stub.WatchPayment(
            pb.WatchPaymentRequest(payment_id=payment_id), metadata=md, timeout=5
        ),
    }


def insights_calls(channel: grpc.aio.Channel) -> dict[str, Callable[[Metadata], Any]]:
    insights = insights_pb2_grpc.InsightsServiceStub(channel)
    catalog = insights_pb2_grpc.BenefitCatalogServiceStub(channel)
    return {
        "ListLoyaltyStandings": lambda md: insights.ListLoyaltyStandings(
            ipb.ListLoyaltyStandingsRequest(), metadata=md, timeout=5
        ),
        "ListBenefitTips": lambda md: insights.ListBenefitTips(
            ipb.ListBenefitTipsRequest(), metadata=md, timeout=5
        ),
        "ListBenefits": lambda md: catalog.ListBenefits(
            ipb.ListBenefitsRequest(), metadata=md, timeout=5
        ),
    }


async def refused(name: str, call: Awaitable[Any] | Any) -> None:
    """The call fails UNAUTHENTICATED with the generic message and reason, nothing more:
    revoked at the edge and unasserted on an internal port sound alike."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await drain(call)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
    assert info.value.details() == GENERIC, name
    assert_catalogued(rich_error(info.value), Reason.ACCESS_TOKEN_INVALID)


async def refused_everywhere(ports: Ports, metadata: Metadata, payment_id: str) -> None:
    for door in (ports.payment, ports.edge):
        for name, call in calls(door, payment_id).items():
            await refused(name, call(metadata))
    for door in (ports.insights, ports.edge):
        for name, call in insights_calls(door).items():
            await refused(name, call(metadata))


async def payment_count(ports: Ports, user: User) -> int:
    """How many payments the user has, asked through the edge with a fresh login."""
    again = await auth_pb2_grpc.AuthServiceStub(ports.edge).Login(
        apb.LoginRequest(email=user.email, password=user.password), timeout=10
    )
    listed = await payments_pb2_grpc.PaymentServiceStub(ports.edge).ListPayments(
        pb.ListPaymentsRequest(), metadata=bearer(again.access_token), timeout=5
    )
    return len(listed.payments)


async def first_payment(ports: Ports, user: User) -> str:
    created = await payments_pb2_grpc.PaymentServiceStub(ports.edge).CreatePayment(
        request(pb.PAYMENT_KIND_DEPOSIT, APPROVE), metadata=user.metadata, timeout=5
    )
    return str(created.payment.payment_id)


async def test_a_logged_out_token_is_refused_on_every_port(ports: Ports) -> None:
    user = await register_and_login(ports.edge)
    payment_id = await first_payment(ports, user)
    await auth_pb2_grpc.AuthServiceStub(ports.edge).Logout(
        apb.LogoutRequest(), metadata=user.metadata, timeout=5
    )
    await refused_everywhere(ports, user.metadata, payment_id)
    # The refused CreatePayment calls created nothing.
    assert await payment_count(ports, user) == 1


async def test_a_reused_refresh_token_revokes_the_access_token_on_every_port(
    ports: Ports,
) -> None:
    user = await register_and_login(ports.edge)
    payment_id = await first_payment(ports, user)
    stub = auth_pb2_grpc.AuthServiceStub(ports.edge)
    rotated = await stub.RefreshToken(
        apb.RefreshTokenRequest(refresh_token=user.refresh_token), timeout=5
    )
    # The spent refresh token again: theft is assumed and the whole session revoked.
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.RefreshToken(
            apb.RefreshTokenRequest(refresh_token=user.refresh_token), timeout=5
        )
    for token in (user.access_token, rotated.access_token):
        await refused_everywhere(ports, bearer(token), payment_id)
    assert await payment_count(ports, user) == 1


async def test_a_live_token_works_through_the_edge_only(ports: Ports) -> None:
    user = await register_and_login(ports.edge)
    payment_id = await first_payment(ports, user)
    # Through the edge: every call works, the stream included.
    for name, call in calls(ports.edge, payment_id).items():
        if name in ("CancelPayment", "WatchPayment"):
            continue  # depend on the payment's progress; the refusal below is the point
        await drain(call(user.metadata))
    for name, call in insights_calls(ports.edge).items():
        if name == "ListBenefits":
            # Authenticated upstream, then refused for the role: the catalog is admin-only.
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await drain(call(user.metadata))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert_catalogued(rich_error(info.value), Reason.ADMIN_ROLE_REQUIRED)
            continue
        await drain(call(user.metadata))
    # Stolen (say, from a log or a client) and sent straight to an internal port: refused.
    for name, call in calls(ports.payment, payment_id).items():
        await refused(name, call(user.metadata))
    for name, call in insights_calls(ports.insights).items():
        await refused(name, call(user.metadata))
    assert await payment_count(ports, user) == 2  # the edge's CreatePayment, no other


async def test_an_assertion_is_bound_to_its_token_method_and_time(
    ports: Ports, jwt_keys: JwtKeys
) -> None:
    """Assertions made here with the deployment's key, exactly as the edge makes them:
    the control call passes, so each refusal is the binding's doing."""
    alice = await register_and_login(ports.edge)
    mallory = await register_and_login(ports.edge)
    edge_key = EdgeAssertions([read_secret_file(jwt_keys.edge_assertion_key_path)])
    payments = payments_pb2_grpc.PaymentServiceStub(ports.payment)
    tips = insights_pb2_grpc.InsightsServiceStub(ports.insights)

    def with_assertion(user: User, value: str) -> Metadata:
        return (*user.metadata, (EDGE_ASSERTION_KEY, value))

    for_alice = edge_key.sign(LIST_PAYMENTS, alice.access_token)
    listed = await payments.ListPayments(
        pb.ListPaymentsRequest(), metadata=with_assertion(alice, for_alice), timeout=5
    )
    assert list(listed.payments) == []
    tips_for_alice = edge_key.sign(LIST_TIPS, alice.access_token)
    await tips.ListBenefitTips(
        ipb.ListBenefitTipsRequest(), metadata=with_assertion(alice, tips_for_alice), timeout=5
    )
    # Replayed with another token, on another method, or on another service: refused.
    await refused(
        "other token",
        payments.ListPayments(
            pb.ListPaymentsRequest(), metadata=with_assertion(mallory, for_alice), timeout=5
        ),
    )
    await refused(
        "other method",
        payments.CreatePayment(
            request(pb.PAYMENT_KIND_DEPOSIT, APPROVE),
            metadata=with_assertion(alice, for_alice),
            timeout=5,
        ),
    )
    await refused(
        "other service",
        tips.ListBenefitTips(
            ipb.ListBenefitTipsRequest(), metadata=with_assertion(alice, for_alice), timeout=5
        ),
    )
    # Too old, or signed with a key the deployment does not hold: refused.
    stale = EdgeAssertions(
        [read_secret_file(jwt_keys.edge_assertion_key_path)], clock_s=lambda: time.time() - 120
    ).sign(LIST_PAYMENTS, alice.access_token)
    await refused(
        "stale",
        payments.ListPayments(
            pb.ListPaymentsRequest(), metadata=with_assertion(alice, stale), timeout=5
        ),
    )
    forged = EdgeAssertions([secrets.token_bytes(32)]).sign(CREATE_PAYMENT, alice.access_token)
    await refused(
        "foreign key",
        payments.CreatePayment(
            request(pb.PAYMENT_KIND_DEPOSIT, APPROVE),
            metadata=with_assertion(alice, forged),
            timeout=5,
        ),
    )
    assert await payment_count(ports, alice) == 0
