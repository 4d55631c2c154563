"""The loyalty and benefits groups and the notification sink a batch at a time, on the
real PostgreSQL: a batch is applied once, in a handful of statements, and a redelivered
batch changes nothing; two batches over the same standings never deadlock."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from consumer_svc.consuming import Item
from consumer_svc.insights.domain import Benefit
from consumer_svc.insights.handlers import BenefitsHandler, LoyaltyHandler
from consumer_svc.insights.store import InsightsStore
from consumer_svc.notifications import NotificationSink
from payrail.events.v1 import events_pb2
from payrail.notifications.v1 import notifications_pb2 as npb
from payrail.payments.v1 import payments_pb2 as pb
from payrail_common import pg
from tests.conftest import StackEnv

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
# A merchant category of these tests' own, so the catalog entries below change nothing
# any other test relies on.
CATEGORY = "5816"
BRANDS = {"VISA": pb.CARD_BRAND_VISA, "MASTERCARD": pb.CARD_BRAND_MASTERCARD}
# A card as a payment shows it: brand name and masked number.
CardSpec = tuple[str, str]
VISA: CardSpec = ("VISA", "424242******4242")
MASTERCARD: CardSpec = ("MASTERCARD", "555555******4444")


class Statements:
    """The statements of ours the pool's connections send (asyncpg's query logger):
    those on the consumer schema and transaction control, not the type look-ups asyncpg
    makes the first time a connection meets a type."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def init(self, conn: asyncpg.Connection) -> None:
        conn.add_query_logger(self._log)

    def _log(self, record: Any) -> None:
        query = record.query.strip()
        if "consumer." in query or query.rstrip(";") in ("BEGIN", "COMMIT"):
            self.sent.append(query)


@pytest_asyncio.fixture(loop_scope="session")
async def statements() -> Statements:
    return Statements()


@pytest_asyncio.fixture(loop_scope="session")
async def pool(stack: StackEnv, statements: Statements) -> AsyncIterator[asyncpg.Pool]:
    pool = await pg.create_pool(stack.pg_dsn, size_max=4, init=statements.init)
    try:
        yield pool
    finally:
        await pool.close()


def completed(
    payment_id: str,
    user_id: str,
    *,
    event_id: str | None = None,
    merchant_id: str = "cafe",
    merchant_name: str = "Cafe",
    card: CardSpec | None = VISA,
    minutes: int = 0,
    amount_minor: int = 5000,
) -> bytes:
    payment = pb.Payment(
        payment_id=payment_id,
        kind=pb.PAYMENT_KIND_PURCHASE,
        status=pb.PAYMENT_STATUS_COMPLETED,
        amount=pb.Money(currency_code="USD", amount_minor=amount_minor),
        merchant=pb.Merchant(merchant_id=merchant_id, name=merchant_name, category_code=CATEGORY),
    )
    if card is not None:
        payment.card.brand = BRANDS[card[0]]
        payment.card.masked_number = card[1]
    payment.update_time.FromDatetime(T0 + timedelta(minutes=minutes))
    event = events_pb2.PaymentEvent(
        event_id=event_id or str(uuid.uuid4()), payment_id=payment_id, user_id=user_id
    )
    event.status_changed.payment.CopyFrom(payment)
    return event.SerializeToString()


def items(*values: bytes) -> list[Item]:
    return [Item(value, f"it-{i}") for i, value in enumerate(values)]


def new_id() -> str:
    return str(uuid.uuid4())


async def standings(pool: asyncpg.Pool, user_id: str) -> dict[str, tuple[int, str, datetime]]:
    rows = await pool.fetch(
        "SELECT merchant_id, visits, merchant_name, last_visit_time"
        " FROM consumer.loyalty_standings WHERE user_id = $1",
        user_id,
    )
    return {r["merchant_id"]: (r["visits"], r["merchant_name"], r["last_visit_time"]) for r in rows}


async def test_a_loyalty_batch_counts_once_in_one_statement(
    pool: asyncpg.Pool, statements: Statements
) -> None:
    loyalty = LoyaltyHandler(InsightsStore(pool), group=f"it-loyalty-{uuid.uuid4().hex[:8]}")
    user = new_id()
    # Before: one visit at the cafe from an earlier batch, at minute 5.
    p0 = new_id()
    assert await loyalty.handle_batch(items(completed(p0, user, minutes=5))) == ["counted"]
    p1, p2, p3, p4 = (new_id() for _ in range(4))
    twice = completed(p1, user, minutes=1)
    batch = items(
        twice,
        completed(p2, user, minutes=9, merchant_name="Cafe Nine"),
        twice,
        completed(p3, user, minutes=9, merchant_name="Cafe Nine Later"),
        completed(p1, user, minutes=1),  # another event about p1
        completed(p0, user, minutes=5),  # another event about the earlier batch's payment
        completed(p4, user, merchant_id="bakery", minutes=2, merchant_name="Bakery"),
    )
    statements.sent.clear()
    results = await loyalty.handle_batch(batch)
    assert results == [
        "counted",
        "counted",
        "duplicate",
        "counted",
        "duplicate_payment",
        "duplicate_payment",
        "counted",
    ]
    assert len(statements.sent) == 1
    after = await standings(pool, user)
    # The latest visit names the merchant; a tie in time goes to the later event.
    assert after == {
        "cafe": (4, "Cafe Nine Later", T0 + timedelta(minutes=9)),
        "bakery": (1, "Bakery", T0 + timedelta(minutes=2)),
    }
    visits = await pool.fetchval(
        "SELECT count(*) FROM consumer.loyalty_visits WHERE user_id = $1", user
    )
    assert visits == 5
    # The same batch again changes nothing.
    assert set(await loyalty.handle_batch(batch)) == {"duplicate"}
    assert await standings(pool, user) == after


async def test_batches_over_the_same_rows_in_opposite_orders_never_deadlock(
    pool: asyncpg.Pool,
) -> None:
    # Eight batches at once, four per group, each touching the same 100 standings (user x
    # merchant) or the same 100 cards (user x card), in opposite orders: rows are locked
    # in key order, so the batches wait for each other and all finish (locked in random
    # order instead, PostgreSQL finds a deadlock here within a few rounds).
    store = InsightsStore(pool)
    users = [new_id() for _ in range(10)]
    merchants = [f"m{i}" for i in range(10)]
    cards: list[CardSpec] = [("VISA", f"400000******{i:04d}") for i in range(10)]

    def batch(reverse: bool) -> list[Item]:
        values = [
            completed(new_id(), u, merchant_id=m, card=c)
            for u in users
            for m, c in zip(merchants, cards, strict=True)
        ]
        return items(*(values[::-1] if reverse else values))

    suffix = uuid.uuid4().hex[:8]
    loyalty = LoyaltyHandler(store, group=f"it-loyalty-{suffix}")
    benefits = BenefitsHandler(store, group=f"it-benefits-{suffix}")
    rounds = 10
    for _ in range(rounds):
        outcome = await asyncio.gather(
            *(
                handler.handle_batch(batch(reverse))
                for handler in (loyalty, benefits)
                for reverse in (False, True, False, True)
            )
        )
        assert set().union(*outcome[:4]) == {"counted"}
        assert set().union(*outcome[4:]) <= {"tip", "no_tip"}
    for user in users:
        assert {m: s[0] for m, s in (await standings(pool, user)).items()} == dict.fromkeys(
            merchants, 4 * rounds
        )
        assert await pool.fetchval(
            "SELECT count(*) FROM consumer.benefit_cards WHERE user_id = $1", user
        ) == len(cards)


async def test_a_benefits_batch_tips_in_order_once_in_one_transaction(
    pool: asyncpg.Pool, statements: Statements
) -> None:
    store = InsightsStore(pool)
    await store.put_benefit(Benefit("VISA", CATEGORY, "CASHBACK", 300))
    await store.put_benefit(Benefit("MASTERCARD", CATEGORY, "CASHBACK", 100))
    benefits = BenefitsHandler(store, group=f"it-benefits-{uuid.uuid4().hex[:8]}")
    user, other = new_id(), new_id()
    p1, p2, p3, p4, p5 = (new_id() for _ in range(5))
    twice = completed(p2, user, card=MASTERCARD, minutes=2)
    batch = items(
        completed(p1, user, card=VISA, minutes=1),
        twice,
        twice,
        completed(p2, user, card=MASTERCARD, minutes=2),  # another event about p2
        completed(p3, user, card=None, minutes=3),  # wallet-funded
        completed(p4, other, card=MASTERCARD, minutes=4),  # another user: no Visa known
        completed(p5, user, card=MASTERCARD, minutes=5, amount_minor=10_000),
    )
    statements.sent.clear()
    results = await benefits.handle_batch(batch)
    assert results == [
        "no_tip",
        "tip",
        "duplicate",
        "duplicate_payment",
        "no_card",
        "no_tip",
        "tip",
    ]
    # BEGIN, the inbox, the cards, the catalog, cards and tips written, COMMIT.
    assert len(statements.sent) == 6
    tips = await store.list_tips(user, limit=10, after=None)
    # Newest first, in the order they were earned within the batch.
    assert [(t.payment_id, t.extra_reward_minor) for t in tips] == [(p5, 200), (p2, 100)]
    assert tips[0].message == "The card ending 4242 would have earned 3% here (you earned 1%)"
    cards = await pool.fetch(
        "SELECT brand, first_use_time, last_use_time FROM consumer.benefit_cards"
        " WHERE user_id = $1 ORDER BY brand",
        user,
    )
    assert [(r["brand"], r["first_use_time"], r["last_use_time"]) for r in cards] == [
        ("MASTERCARD", T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)),
        ("VISA", T0 + timedelta(minutes=1), T0 + timedelta(minutes=1)),
    ]
    # The same batch again changes nothing, in one statement besides BEGIN and COMMIT.
    statements.sent.clear()
    again = await benefits.handle_batch(batch)
    assert [r for r in again if r not in ("no_card",)] == ["duplicate"] * 6
    assert len(statements.sent) == 3
    assert len(await store.list_tips(user, limit=10, after=None)) == 2


async def test_the_sink_delivers_a_batch_once(
    pool: asyncpg.Pool, statements: Statements, tmp_path: Path
) -> None:
    path = tmp_path / "notifications.jsonl"
    sink = NotificationSink(pool=pool, path=path, group=f"it-sink-{uuid.uuid4().hex[:8]}")
    ids = [new_id() for _ in range(100)]
    values = [
        npb.Notification(notification_id=i, user_id="u", text="hello").SerializeToString()
        for i in ids
    ]
    statements.sent.clear()
    assert await sink.handle_batch(items(*values, values[0])) == ["delivered"] * 100 + ["duplicate"]
    assert len(statements.sent) == 2  # the inbox read and the inbox write
    again: list[Any] = await sink.handle_batch(items(*values))
    assert again == ["duplicate"] * 100
    delivered = [json.loads(line)["notification_id"] for line in path.read_text().splitlines()]
    assert delivered == ids
