"""The risk gate's memory on the real PostgreSQL and Redis: decisions are atomic per
user and card, recorded once, and only approved card-present purchases move the last
known location."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from consumer_svc.risk.rules import (
    Assessment,
    Decision,
    History,
    Location,
    PaymentFacts,
    RiskPolicy,
    assess,
)
from consumer_svc.risk.store import RiskStore
from payrail_common import pg
from tests.conftest import StackEnv

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

POLICY = RiskPolicy(velocity_max_per_card=3, velocity_max_per_user=50)
SEOUL = (37.5665, 126.9780)
NEW_YORK = (40.7128, -74.0060)


@pytest_asyncio.fixture(loop_scope="session")
async def store(stack: StackEnv) -> AsyncIterator[RiskStore]:
    # Every connection open from the start, so the deciders of a burst really overlap.
    pool = await pg.create_pool(stack.pg_dsn, size_min=8, size_max=8)
    redis = Redis.from_url(stack.redis_url, socket_timeout=1.0)
    try:
        yield RiskStore(pool, redis)
    finally:
        await redis.aclose()
        await pool.close()


def facts(
    user_id: str,
    card: str,
    *,
    at: datetime | None = None,
    place: tuple[float, float] | None = None,
) -> PaymentFacts:
    at = at or datetime.now(UTC)
    payment_id = str(uuid.uuid4())
    location = None
    if place is not None:
        location = Location(place[0], place[1], at, payment_id=payment_id)
    return PaymentFacts(
        payment_id=payment_id,
        user_id=user_id,
        card_fingerprint=card,
        amount_minor=1000,
        currency_code="USD",
        at=at,
        location=location,
    )


async def decide(store: RiskStore, f: PaymentFacts) -> Decision:
    assessment = await store.decide(
        f,
        lambda history: assess(f, history, POLICY),
        window_s=POLICY.velocity_window_s,
        amounts_max=POLICY.amount_history,
    )
    return assessment.decision


async def test_a_concurrent_burst_on_one_card_gets_exactly_the_limit(store: RiskStore) -> None:
    # Warm up: every pooled connection prepares the statements first, so the burst's
    # deciders overlap instead of queueing behind statement preparation.
    await asyncio.gather(*(decide(store, facts(str(uuid.uuid4()), "")) for _ in range(16)))
    user, card = str(uuid.uuid4()), f"fp-{uuid.uuid4()}"
    burst = [facts(user, card) for _ in range(POLICY.velocity_max_per_card + 5)]
    decisions = await asyncio.gather(*(decide(store, f) for f in burst))
    assert sorted(d.value for d in decisions) == sorted(
        [Decision.APPROVE.value] * POLICY.velocity_max_per_card + [Decision.DENY.value] * 5
    )


async def test_a_redelivery_gets_the_recorded_decision_not_a_new_one(store: RiskStore) -> None:
    user, card = str(uuid.uuid4()), f"fp-{uuid.uuid4()}"
    first = facts(user, card)
    assert await decide(store, first) is Decision.APPROVE
    for _ in range(POLICY.velocity_max_per_card):
        await decide(store, facts(user, card))
    # The card is now past its limit, yet the first payment's answer stands.
    assert await decide(store, first) is Decision.APPROVE
    assert await decide(store, facts(user, card)) is Decision.DENY


async def test_history_counts_the_window_and_takes_amounts_beyond_it(store: RiskStore) -> None:
    user, card = str(uuid.uuid4()), f"fp-{uuid.uuid4()}"
    seen: list[History] = []
    old = facts(user, card, at=datetime.now(UTC) - timedelta(hours=1))

    def record(history: History) -> Assessment:
        seen.append(history)
        return assess(old, history, POLICY)

    await store.decide(old, record, window_s=600, amounts_max=20)
    await store.decide(facts(user, card), record, window_s=600, amounts_max=20)
    # The hour-old payment is outside the 10-minute window but counts as usual amount.
    assert (seen[1].recent_card_payments, seen[1].recent_user_payments) == (0, 0)
    assert list(seen[1].recent_amounts) == [1000]


async def test_only_approved_card_present_purchases_move_the_last_location(
    store: RiskStore, stack: StackEnv
) -> None:
    user, card = str(uuid.uuid4()), f"fp-{uuid.uuid4()}"
    start = datetime.now(UTC) - timedelta(minutes=5)
    assert await decide(store, facts(user, card, at=start, place=SEOUL)) is Decision.APPROVE
    flagged = facts(user, card, at=start + timedelta(minutes=1), place=NEW_YORK)
    assert await decide(store, flagged) is Decision.REVIEW
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT subject, latitude FROM consumer.risk_locations WHERE subject = ANY($1)",
            [f"user:{user}", f"card:{card}"],
        )
    finally:
        await conn.close()
    assert sorted((r["subject"], r["latitude"]) for r in rows) == sorted(
        [(f"user:{user}", SEOUL[0]), (f"card:{card}", SEOUL[0])]
    )
    # Redis holds the same once the transaction committed (cache-aside).
    client = Redis.from_url(stack.redis_url)
    try:
        cached = await client.get(f"risk:loc:v1:card:{card}")
    finally:
        await client.aclose()
    assert cached is not None
    assert json.loads(cached)["latitude"] == SEOUL[0]
