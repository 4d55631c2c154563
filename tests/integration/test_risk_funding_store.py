"""The risk memory behind withdrawal_card and the velocity card scope, on the real
PostgreSQL: a card funds a wallet only once a deposit with it COMPLETED (learnt
idempotently from its final status), and a card's payments are counted per user in
development but across all users in production."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from consumer_svc.risk.rules import (
    Decision,
    DecisionDeferred,
    PaymentFacts,
    RiskPolicy,
    assess,
)
from consumer_svc.risk.store import RiskStore
from payrail_common import pg
from tests.conftest import StackEnv

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PRODUCTION = RiskPolicy()  # the defaults
DEVELOPMENT = replace(PRODUCTION, velocity_card_scope="user")  # what `make up` sets


@pytest_asyncio.fixture(loop_scope="session")
async def store(stack: StackEnv) -> AsyncIterator[RiskStore]:
    pool = await pg.create_pool(stack.pg_dsn, size_min=2, size_max=8)
    redis = Redis.from_url(stack.redis_url, socket_timeout=1.0)
    try:
        yield RiskStore(pool, redis)
    finally:
        await redis.aclose()
        await pool.close()


def facts(user_id: str, card: str, kind: str) -> PaymentFacts:
    return PaymentFacts(
        payment_id=str(uuid.uuid4()),
        user_id=user_id,
        card_fingerprint=card,
        amount_minor=1000,
        currency_code="USD",
        at=datetime.now(UTC),
        kind=kind,
    )


async def decide(store: RiskStore, f: PaymentFacts, policy: RiskPolicy = DEVELOPMENT) -> Decision:
    assessment = await store.decide(
        f,
        lambda history: assess(f, history, policy),
        window_s=policy.velocity_window_s,
        amounts_max=policy.amount_history,
        card_per_user=policy.velocity_card_scope == "user",
        check_funding=policy.withdrawal_funding_card_only,
    )
    return assessment.decision


async def test_a_card_funds_the_wallet_once_its_deposit_completed(store: RiskStore) -> None:
    user, card_a, card_b = str(uuid.uuid4()), f"fp-{uuid.uuid4()}", f"fp-{uuid.uuid4()}"
    deposit = facts(user, card_a, "DEPOSIT")
    assert await decide(store, deposit) is Decision.APPROVE
    # Under way: a withdrawal to card A cannot be decided yet, and nothing is recorded.
    early = facts(user, card_a, "WITHDRAWAL")
    with pytest.raises(DecisionDeferred):
        await decide(store, early)
    assert await store.card_fingerprint(early.payment_id) == ""
    await store.settle_deposit(deposit.payment_id, completed=True, at=datetime.now(UTC))
    assert await decide(store, early) is Decision.APPROVE
    # A never-seen card B is refused: the stolen-card cash-out path.
    assert await decide(store, facts(user, card_b, "WITHDRAWAL")) is Decision.DENY
    # Card A funded this user's wallet, nobody else's.
    assert await decide(store, facts(str(uuid.uuid4()), card_a, "WITHDRAWAL")) is Decision.DENY


async def test_a_failed_deposit_funds_nothing_and_outcomes_are_learnt_once(
    store: RiskStore,
) -> None:
    user, card = str(uuid.uuid4()), f"fp-{uuid.uuid4()}"
    deposit = facts(user, card, "DEPOSIT")
    assert await decide(store, deposit) is Decision.APPROVE
    await store.settle_deposit(deposit.payment_id, completed=False, at=datetime.now(UTC))
    # A redelivered or contradicting event about the same deposit changes nothing.
    await store.settle_deposit(deposit.payment_id, completed=True, at=datetime.now(UTC))
    assert await decide(store, facts(user, card, "WITHDRAWAL")) is Decision.DENY


async def test_a_deposit_decided_before_the_table_existed_is_learnt_from_its_outcome(
    store: RiskStore, stack: StackEnv
) -> None:
    user, card = str(uuid.uuid4()), f"fp-{uuid.uuid4()}"
    deposit = facts(user, card, "DEPOSIT")
    assert await decide(store, deposit) is Decision.APPROVE
    pool = await pg.create_pool(stack.pg_dsn, size_min=1, size_max=1)
    try:
        await pool.execute(
            "DELETE FROM consumer.risk_deposits WHERE payment_id = $1",
            uuid.UUID(deposit.payment_id),
        )
    finally:
        await pool.close()
    await store.settle_deposit(deposit.payment_id, completed=True, at=datetime.now(UTC))
    assert await decide(store, facts(user, card, "WITHDRAWAL")) is Decision.APPROVE


async def test_with_the_rule_off_any_card_may_be_paid_out(store: RiskStore) -> None:
    off = replace(DEVELOPMENT, withdrawal_funding_card_only=False)
    withdrawal = facts(str(uuid.uuid4()), f"fp-{uuid.uuid4()}", "WITHDRAWAL")
    assert await decide(store, withdrawal, off) is Decision.APPROVE


async def test_a_shared_test_card_is_counted_per_user_in_development_only(
    store: RiskStore,
) -> None:
    card = f"fp-{uuid.uuid4()}"
    users = [str(uuid.uuid4()) for _ in range(DEVELOPMENT.velocity_max_per_card + 1)]
    # Development: six people, one payment each with the same card: all approved.
    for user in users:
        assert await decide(store, facts(user, card, "PURCHASE")) is Decision.APPROVE
    # Each user still has their own limit with it.
    mine = [facts(users[0], card, "PURCHASE") for _ in range(DEVELOPMENT.velocity_max_per_card)]
    decisions = [await decide(store, f) for f in mine]
    assert decisions[-1] is Decision.DENY
    assert decisions[:-1] == [Decision.APPROVE] * (DEVELOPMENT.velocity_max_per_card - 1)


async def test_production_still_denies_one_card_across_many_users(store: RiskStore) -> None:
    card = f"fp-{uuid.uuid4()}"
    burst = [
        facts(str(uuid.uuid4()), card, "PURCHASE")
        for _ in range(PRODUCTION.velocity_max_per_card + 3)
    ]
    decisions = await asyncio.gather(*(decide(store, f, PRODUCTION) for f in burst))
    assert sorted(d.value for d in decisions) == sorted(
        [Decision.APPROVE.value] * PRODUCTION.velocity_max_per_card + [Decision.DENY.value] * 3
    )
