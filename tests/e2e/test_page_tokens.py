"""Page tokens cannot be forged, against the real processes and through the edge: on
ListPayments and both insights lists, a token of the former base64-JSON kind, a tampered
one, an expired one and another user's are INVALID_ARGUMENT on ``page_token``, while
the tokens the services issue keep paging, for their user and filters only."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio

from payrail.insights.v1 import insights_pb2 as ipb
from payrail.insights.v1 import insights_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.keys import read_secret_file
from payrail_common.pagetokens import CursorValue, PageTokens, derive_keys
from tests.conftest import JwtKeys, StackEnv
from tests.e2e.conftest import Running
from tests.e2e.test_malformed_requests import assert_invalid, refused
from tests.helpers import User, register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

PAYMENTS_SCOPE = "payrail.payments.v1.PaymentService/ListPayments"
STANDINGS_SCOPE = "payrail.insights.v1.InsightsService/ListLoyaltyStandings"
TIPS_SCOPE = "payrail.insights.v1.InsightsService/ListBenefitTips"
WHEN = "2026-01-01T00:00:00+00:00"
# (scope, filters of an unfiltered request, a cursor of the list's shape)
LISTS: dict[str, tuple[str, tuple[CursorValue, ...], tuple[CursorValue, ...]]] = {
    "payments": (PAYMENTS_SCOPE, (0, 0), (WHEN, str(uuid.uuid4()))),
    "standings": (STANDINGS_SCOPE, ("",), (1, "merchant-x")),
    "tips": (TIPS_SCOPE, (), (WHEN, str(uuid.uuid4()))),
}
# The former format, with a cursor of the right shape: accepted before page tokens were
# signed.
LEGACY = {
    "payments": {"t": WHEN, "id": str(uuid.uuid4()), "s": 0, "k": 0},
    "standings": {"v": 1, "m": "merchant-x", "f": ""},
    "tips": {"t": WHEN, "id": str(uuid.uuid4())},
}

Lister = Callable[[grpc.aio.Channel, User, str], Awaitable[Any]]


async def _payments(edge: grpc.aio.Channel, user: User, token: str) -> Any:
    return await payments_pb2_grpc.PaymentServiceStub(edge).ListPayments(
        pb.ListPaymentsRequest(page_token=token), metadata=user.metadata, timeout=10
    )


async def _standings(edge: grpc.aio.Channel, user: User, token: str) -> Any:
    return await insights_pb2_grpc.InsightsServiceStub(edge).ListLoyaltyStandings(
        ipb.ListLoyaltyStandingsRequest(page_token=token), metadata=user.metadata, timeout=10
    )


async def _tips(edge: grpc.aio.Channel, user: User, token: str) -> Any:
    return await insights_pb2_grpc.InsightsServiceStub(edge).ListBenefitTips(
        ipb.ListBenefitTipsRequest(page_token=token), metadata=user.metadata, timeout=10
    )


LISTERS: dict[str, Lister] = {"payments": _payments, "standings": _standings, "tips": _tips}


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


@pytest_asyncio.fixture(loop_scope="session")
async def alice(edge: grpc.aio.Channel) -> User:
    return await register_and_login(edge)


@pytest_asyncio.fixture(loop_scope="session")
async def bob(edge: grpc.aio.Channel) -> User:
    return await register_and_login(edge)


def codec(keys: JwtKeys, *, clock_s: Callable[[], float] = time.time) -> PageTokens:
    """The deployment's page-token codec, as the services derive it from their key."""
    edge_key = read_secret_file(keys.edge_assertion_key_path)
    return PageTokens(derive_keys([edge_key]), clock_s=clock_s)


def mint(tokens: PageTokens, name: str, user: User) -> str:
    scope, filters, cursor = LISTS[name]
    return tokens.issue(scope=scope, user_id=user.user_id, filters=filters, cursor=cursor)


def tampered(token: str) -> str:
    """The token with its cursor's id changed and the payload re-encoded."""
    prefix, payload, mac = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["c"][1] = "zzz' OR '1'='1" if isinstance(data["c"][1], str) else 10**30
    edited = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{prefix}.{edited}.{mac}"


@pytest.mark.parametrize("name", sorted(LISTS))
async def test_a_token_of_the_deployment_for_its_user_pages(
    edge: grpc.aio.Channel, alice: User, jwt_keys: JwtKeys, name: str
) -> None:
    """The control: a well-signed token for the caller is accepted (so every refusal
    below is about what was changed, not about the format)."""
    await LISTERS[name](edge, alice, mint(codec(jwt_keys), name, alice))


@pytest.mark.parametrize("name", sorted(LISTS))
@pytest.mark.parametrize("kind", ["legacy", "tampered", "expired", "other-user"])
async def test_an_unusable_token_is_invalid_argument(
    edge: grpc.aio.Channel, alice: User, bob: User, jwt_keys: JwtKeys, name: str, kind: str
) -> None:
    if kind == "legacy":
        token = base64.urlsafe_b64encode(json.dumps(LEGACY[name]).encode()).decode()
    elif kind == "tampered":
        token = tampered(mint(codec(jwt_keys), name, alice))
    elif kind == "expired":
        token = mint(codec(jwt_keys, clock_s=lambda: time.time() - 7200), name, alice)
    else:
        token = mint(codec(jwt_keys), name, bob)
    assert_invalid(await refused(LISTERS[name](edge, alice, token)), "page_token")


async def test_issued_standing_tokens_are_bound_to_user_and_filter(
    edge: grpc.aio.Channel, alice: User, bob: User, stack: StackEnv
) -> None:
    """Tokens the service issued itself: the next page for their user, nobody else's."""
    prefix = f"pt-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        await conn.executemany(
            "INSERT INTO consumer.loyalty_standings"
            " (user_id, merchant_id, merchant_name, visits, last_visit_time)"
            " VALUES ($1, $2, $2, $3, $4)",
            [(alice.user_id, f"{prefix}-{i}", 3 - i, datetime.now(UTC)) for i in range(3)],
        )
    finally:
        await conn.close()
    stub = insights_pb2_grpc.InsightsServiceStub(edge)
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListLoyaltyStandings(
            ipb.ListLoyaltyStandingsRequest(page_size=1, page_token=token),
            metadata=alice.metadata,
            timeout=10,
        )
        seen += [s.merchant_id for s in page.standings]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"{prefix}-{i}" for i in range(3)]

    first = await stub.ListLoyaltyStandings(
        ipb.ListLoyaltyStandingsRequest(page_size=1), metadata=alice.metadata, timeout=10
    )
    assert first.next_page_token
    assert_invalid(await refused(_standings(edge, bob, first.next_page_token)), "page_token")
    other_filter = await refused(
        stub.ListLoyaltyStandings(
            ipb.ListLoyaltyStandingsRequest(
                page_size=1, page_token=first.next_page_token, merchant_id=f"{prefix}-1"
            ),
            metadata=alice.metadata,
            timeout=10,
        )
    )
    assert_invalid(other_filter, "page_token")
