"""Malformed requests, as an outside prober sends them, against the real processes: bytes
that are not protobuf (to every kind of server), text PostgreSQL cannot store (NUL), and
crafted page tokens. Each is INVALID_ARGUMENT with a field violation and the catalogued
ErrorInfo reason (MALFORMED_REQUEST for bytes, VALIDATION_FAILED in every service for
fields); no answer names a Python exception class or repeats the database's text."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from payrail.auth.v1 import auth_pb2, auth_pb2_grpc
from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc
from payrail.insights.v1 import insights_pb2 as ipb
from payrail.insights.v1 import insights_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.reasons import Reason
from tests.e2e.conftest import Running
from tests.e2e.test_insights import admin_user
from tests.helpers import PASSWORD, User, register_and_login, unique_email
from tests.rich_errors import assert_catalogued, rich_error

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

# Not a protobuf message of any type: field 31 with wire type 7 does not exist.
GARBAGE = b"\xff\xff\xff\xff\x0f"
LEAKS = ("class", "DecodeError", "Error parsing", "Unexpected", "UTF8", "0x00", "asyncpg")
NUL = "a\x00b"


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


@pytest_asyncio.fixture(loop_scope="session")
async def user(edge: grpc.aio.Channel) -> User:
    return await register_and_login(edge)


def port_of(services: list[Running], name: str) -> int:
    return next(s.port for s in services if s.name == name)


def assert_invalid(
    error: grpc.aio.AioRpcError, field: str, reason: Reason = Reason.VALIDATION_FAILED
) -> None:
    """INVALID_ARGUMENT, a BadRequest naming ``field``, ``reason`` in payrail's ErrorInfo
    domain, and nothing internal."""
    text = f"{error.details()} {error.debug_error_string()}"
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, text
    for word in LEAKS:
        assert word not in text, text
    status = rpc_status.from_call(error)
    assert status is not None, text
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details), text
    assert field in [v.field for v in bad.field_violations], bad
    assert_catalogued(rich_error(error), reason)


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


# ---------------------------------------------------------------- undecodable bytes


@pytest.mark.parametrize(
    ("server", "path", "authenticated"),
    [
        ("gateway", "/payrail.auth.v1.AuthService/Login", False),  # the edge's own RPC
        ("gateway", "/payrail.payments.v1.PaymentService/CreatePayment", True),  # forwarded
        ("gateway", "/payrail.insights.v1.InsightsService/ListBenefitTips", True),  # forwarded
        ("gateway", "/payrail.callbacks.v1.CallbackService/ReportResult", False),
        ("gateway", "/payrail.callbacks.v1.CallbackService/ReportResults", False),
        ("payment", "/payrail.payments.v1.PaymentService/CreatePayment", True),
        ("payment", "/payrail.internal.v1.PaymentOpsService/BeginDispatch", False),
        ("insights", "/payrail.insights.v1.InsightsService/ListLoyaltyStandings", True),
        ("consumer", "/grpc.health.v1.Health/Check", False),
        ("sandbox_json", "/grpc.health.v1.Health/Check", False),
        ("sandbox_soap", "/grpc.health.v1.Health/Check", False),
    ],
)
async def test_undecodable_bytes_are_invalid_argument(
    services: list[Running], user: User, server: str, path: str, authenticated: bool
) -> None:
    metadata = user.metadata if authenticated else ()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port_of(services, server)}") as channel:
        call = channel.unary_unary(path)(GARBAGE, metadata=metadata, timeout=10)
        assert_invalid(await refused(call), "", Reason.MALFORMED_REQUEST)


# ---------------------------------------------------------------- NUL in text fields


def purchase(**changes: Any) -> pb.CreatePaymentRequest:
    merchant = {
        "merchant_id": "m-1",
        "name": "Cafe",
        "category_code": "5812",
        "country_code": "US",
        "city": "Boston",
        "latitude": 42.36,
        "longitude": -71.06,
        **changes.pop("merchant", {}),
    }
    card: dict[str, Any] = {
        "number": "4242424242424242",
        "exp_month": 12,
        "exp_year": 2031,
        "cvc": "123",
    }
    card.update(changes.pop("card", {}))
    fields: dict[str, Any] = {
        "idempotency_key": str(uuid.uuid4()),
        "kind": pb.PAYMENT_KIND_PURCHASE,
        "amount": pb.Money(currency_code="USD", amount_minor=100),
        "card": pb.CardInput(**card),
        "merchant": pb.Merchant(**merchant),
        **changes,
    }
    return pb.CreatePaymentRequest(**fields)


@pytest.mark.parametrize(
    ("field", "request_"),
    [
        ("merchant.merchant_id", purchase(merchant={"merchant_id": NUL})),
        ("merchant.name", purchase(merchant={"name": NUL})),
        ("merchant.city", purchase(merchant={"city": NUL})),
        ("merchant.category_code", purchase(merchant={"category_code": "58\x001"})),
        ("merchant.country_code", purchase(merchant={"country_code": "U\x00"})),
        ("card.holder_name", purchase(card={"holder_name": NUL})),
        ("card.number", purchase(card={"number": "4242424242424242\x00"})),
        ("card.cvc", purchase(card={"cvc": "12\x00"})),
        ("idempotency_key", purchase(idempotency_key=NUL)),
        ("description", purchase(description=NUL)),
        ("amount.currency_code", purchase(amount=pb.Money(currency_code="US\x00", amount_minor=1))),
    ],
)
async def test_nul_in_create_payment_is_invalid_argument(
    edge: grpc.aio.Channel, user: User, field: str, request_: pb.CreatePaymentRequest
) -> None:
    stub = payments_pb2_grpc.PaymentServiceStub(edge)
    error = await refused(stub.CreatePayment(request_, metadata=user.metadata, timeout=10))
    assert_invalid(error, field)


async def test_nul_in_payment_lookups_says_nothing_internal(
    edge: grpc.aio.Channel, user: User
) -> None:
    stub = payments_pb2_grpc.PaymentServiceStub(edge)
    md = user.metadata
    # A payment id that is no id is a payment that does not exist (like another user's).
    error = await refused(stub.GetPayment(pb.GetPaymentRequest(payment_id=NUL), metadata=md))
    assert error.code() == grpc.StatusCode.NOT_FOUND, error
    assert_catalogued(rich_error(error), Reason.NOT_FOUND)
    error = await refused(
        stub.VerifyPayment(pb.VerifyPaymentRequest(payment_id=NUL, code="123456"), metadata=md)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND, error
    assert_catalogued(rich_error(error), Reason.NOT_FOUND)
    error = await refused(stub.ListPayments(pb.ListPaymentsRequest(page_token=NUL), metadata=md))
    assert_invalid(error, "page_token")


async def test_nul_in_login_email_is_a_failed_login(edge: grpc.aio.Channel) -> None:
    """An e-mail with NUL was never registered: Login answers as for any unknown e-mail
    (the same answer after the same work, so nothing is learned), without a look-up."""
    stub = auth_pb2_grpc.AuthServiceStub(edge)
    error = await refused(stub.Login(auth_pb2.LoginRequest(email=NUL, password=PASSWORD)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
    assert_catalogued(rich_error(error), Reason.INVALID_CREDENTIALS)
    for word in LEAKS:
        assert word not in f"{error.details()}", error


@pytest.mark.parametrize(
    ("field", "call"),
    [
        (
            "email",
            lambda s: s.Register(
                auth_pb2.RegisterRequest(
                    email=f"a\x00{unique_email()}", password=PASSWORD, first_name="A", last_name="B"
                )
            ),
        ),
        (
            "first_name",
            lambda s: s.Register(
                auth_pb2.RegisterRequest(
                    email=unique_email(), password=PASSWORD, first_name=NUL, last_name="B"
                )
            ),
        ),
    ],
)
async def test_nul_in_auth_fields_is_invalid_argument(
    edge: grpc.aio.Channel,
    field: str,
    call: Callable[[auth_pb2_grpc.AuthServiceStub], Awaitable[Any]],
) -> None:
    error = await refused(call(auth_pb2_grpc.AuthServiceStub(edge)))
    assert_invalid(error, field)


async def test_nul_in_insights_fields_is_invalid_argument(
    edge: grpc.aio.Channel, user: User, services: list[Running]
) -> None:
    insights = insights_pb2_grpc.InsightsServiceStub(edge)
    error = await refused(
        insights.ListLoyaltyStandings(
            ipb.ListLoyaltyStandingsRequest(merchant_id=NUL), metadata=user.metadata, timeout=10
        )
    )
    assert_invalid(error, "merchant_id")
    admin = await admin_user(edge, services)
    catalog = insights_pb2_grpc.BenefitCatalogServiceStub(edge)
    benefit = ipb.Benefit(
        brand=pb.CARD_BRAND_VISA,
        category_code="5999",
        reward_kind=ipb.REWARD_KIND_CASHBACK,
        rate_bps=100,
        description="dining\x00cashback",
    )
    error = await refused(
        catalog.PutBenefit(
            ipb.PutBenefitRequest(benefit=benefit), metadata=admin.metadata, timeout=10
        )
    )
    assert_invalid(error, "benefit.description")
    error = await refused(
        catalog.DeleteBenefit(
            ipb.DeleteBenefitRequest(brand=pb.CARD_BRAND_VISA, category_code="58\x0012"),
            metadata=admin.metadata,
            timeout=10,
        )
    )
    assert_invalid(error, "category_code")


# ---------------------------------------------------------------- crafted page tokens


def token(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


CRAFTED_STANDING_TOKENS = [
    token({"v": 10**30, "m": "x", "f": ""}),  # beyond bigint
    token({"v": -(10**30), "m": "x", "f": ""}),
    token({"v": 1, "m": "a\x00b", "f": ""}),  # NUL in the cursor's merchant id
    token({"v": 1, "m": "\ud800", "f": ""}),  # a lone surrogate
    token({"v": True, "m": "x", "f": ""}),
    token({"v": "1e400", "m": "x", "f": ""}),
    token({"v": 1.5, "m": ["x"], "f": ""}),
    token({"v": 1, "m": "x" * 100_000, "f": ""}),
    token([1, 2]),
    "!!!not-base64!!!",
    base64.urlsafe_b64encode(b"\xff\xfe{").decode(),
]
CRAFTED_TIP_TOKENS = [
    token({"t": "2024-01-01T00:00:00", "id": str(uuid.uuid4())}),  # no time zone
    token({"t": "9999-12-31T23:59:59-14:00", "id": str(uuid.uuid4())}),  # beyond UTC range
    token({"t": "0001-01-01T00:00:00+14:00", "id": str(uuid.uuid4())}),
    token({"t": "2024-01-01T00:00:00+00:00", "id": "not-a-uuid"}),
    token({"t": "2024-01-01T00:00:00+00:00\x00", "id": str(uuid.uuid4())}),
    token({"t": 12, "id": 12}),
    token({"t": None, "id": None}),
    token("just a string"),
]


@pytest.mark.parametrize("page_token", CRAFTED_STANDING_TOKENS)
async def test_crafted_standings_page_token_is_invalid_argument(
    edge: grpc.aio.Channel, user: User, page_token: str
) -> None:
    stub = insights_pb2_grpc.InsightsServiceStub(edge)
    error = await refused(
        stub.ListLoyaltyStandings(
            ipb.ListLoyaltyStandingsRequest(page_token=page_token),
            metadata=user.metadata,
            timeout=10,
        )
    )
    assert_invalid(error, "page_token")


@pytest.mark.parametrize("page_token", CRAFTED_TIP_TOKENS)
async def test_crafted_tips_page_token_is_invalid_argument(
    edge: grpc.aio.Channel, user: User, page_token: str
) -> None:
    stub = insights_pb2_grpc.InsightsServiceStub(edge)
    error = await refused(
        stub.ListBenefitTips(
            ipb.ListBenefitTipsRequest(page_token=page_token), metadata=user.metadata, timeout=10
        )
    )
    assert_invalid(error, "page_token")


async def test_nul_in_a_callback_gateway_id_is_an_unknown_gateway(edge: grpc.aio.Channel) -> None:
    """A gateway id with NUL names no gateway: refused like any unknown one, before SQL."""
    stub = callbacks_pb2_grpc.CallbackServiceStub(edge)
    error = await refused(
        stub.ReportResult(
            callbacks_pb2.ReportResultRequest(gateway_id="sandbox-json" + NUL, payload=b"{}"),
            metadata=(("x-payrail-signature", "t=1,v1=00"),),
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
    assert_catalogued(rich_error(error), Reason.CALLBACK_REJECTED)
    for word in LEAKS:
        assert word not in f"{error.details()}", error
