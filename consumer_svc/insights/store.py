"""PostgreSQL adapter of the insights process: the only module that talks SQL.

A consumer group's batch is one transaction that starts with the batch's inbox rows (one
multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING: the rows it inserts are the events
not seen before, so the database, not a read before the write, decides what is new): a
redelivered event finds its row and changes nothing. The effects are keyed by payment id
as well (a visit, a tip), so even a second, different event about the same completed
payment cannot count twice, in the same batch or another. Rows are inserted and locked in
key order, so two batches that touch the same rows (a standing, a card) wait for each
other instead of deadlocking.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import asyncpg

from consumer_svc.insights.domain import (
    Benefit,
    Card,
    CardUse,
    KnownCard,
    Tip,
    advise_in_turn,
)


@dataclass(frozen=True)
class Visit:
    """A completed purchase, as loyalty counts it."""

    payment_id: str
    user_id: str
    merchant_id: str
    merchant_name: str
    visit_time: datetime


@dataclass(frozen=True)
class CardPurchase:
    """A completed card purchase, as benefits looks at it."""

    payment_id: str
    user_id: str
    merchant_id: str
    merchant_name: str
    category_code: str
    card: Card
    amount_minor: int
    currency_code: str
    purchase_time: datetime


@dataclass(frozen=True)
class StandingRow:
    merchant_id: str
    merchant_name: str
    visits: int
    last_visit_time: datetime


@dataclass(frozen=True)
class TipRow:
    tip_id: str
    payment_id: str
    merchant_id: str
    merchant_name: str
    category_code: str
    used_card: Card
    used_rate_bps: int
    better_card: Card
    better_rate_bps: int
    currency_code: str
    extra_reward_minor: int
    message: str
    create_time: datetime


# Cursor of ListLoyaltyStandings: the last row's (visits, merchant_id).
StandingCursor = tuple[int, str]
# Cursor of ListBenefitTips: the last row's (create_time, tip_id).
TipCursor = tuple[datetime, str]

# The batch's inbox rows ($3: event ids); returns the event ids not seen before.
_INBOX = (
    "INSERT INTO consumer.inbox (consumer_group, event_id, topic)"
    " SELECT $1, event_id, $2 FROM unnest($3::text[]) AS b(event_id) ORDER BY event_id"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)

# Loyalty's whole batch in one statement (so one implicit transaction): the inbox rows,
# a visit per payment, and the standings of the visits this batch counted, summed per
# (user, merchant) first (an upsert cannot touch one row twice). The merchant's name is
# that of the latest visit, as when visits were counted one at a time (a later one wins
# a tie). Returns the event ids new to the inbox and those whose visit counted.
_RECORD_VISITS = """
WITH batch AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::timestamptz[]) WITH ORDINALITY
        AS b(event_id, payment_id, user_id, merchant_id, merchant_name, visit_time, ord)
), inbox AS (
    INSERT INTO consumer.inbox (consumer_group, event_id, topic)
    SELECT $1, event_id, $2 FROM batch ORDER BY event_id
    ON CONFLICT DO NOTHING RETURNING event_id
), visits AS (
    -- Two events about one payment in this batch: the first counts.
    INSERT INTO consumer.loyalty_visits (payment_id, user_id, merchant_id, event_id, visit_time)
    SELECT payment_id, user_id, merchant_id, event_id, visit_time
    FROM batch JOIN inbox USING (event_id) ORDER BY payment_id, ord
    ON CONFLICT (payment_id) DO NOTHING RETURNING event_id
), tally AS (
    SELECT user_id, merchant_id, count(*) AS visits, max(visit_time) AS last_visit_time,
           (array_agg(merchant_name ORDER BY visit_time DESC, ord DESC))[1] AS merchant_name
    FROM batch JOIN visits USING (event_id) GROUP BY user_id, merchant_id
), standings AS (
    INSERT INTO consumer.loyalty_standings AS s
        (user_id, merchant_id, merchant_name, visits, last_visit_time)
    SELECT user_id, merchant_id, merchant_name, visits, last_visit_time
    FROM tally ORDER BY user_id, merchant_id
    ON CONFLICT (user_id, merchant_id) DO UPDATE SET
        visits = s.visits + EXCLUDED.visits,
        merchant_name = CASE WHEN EXCLUDED.last_visit_time >= s.last_visit_time
            THEN EXCLUDED.merchant_name ELSE s.merchant_name END,
        last_visit_time = greatest(s.last_visit_time, EXCLUDED.last_visit_time)
)
SELECT ARRAY(SELECT event_id FROM inbox) AS fresh, ARRAY(SELECT event_id FROM visits) AS counted
"""

# Benefits' writes for a batch in one statement: the cards (first and last use per card
# over the batch, an upsert cannot touch one row twice) and the tips, at most one per
# payment (two tips about one payment in this batch: the first is kept). Tips of one
# batch are a microsecond apart in batch order, so ListBenefitTips (newest first) shows
# them in the order they were earned. Returns the ids of the tips recorded.
_RECORD_CARDS_AND_TIPS = """
WITH cards AS (
    INSERT INTO consumer.benefit_cards AS c
        (user_id, brand, masked_number, first_use_time, last_use_time)
    SELECT user_id, brand, masked_number, min(use_time), max(use_time)
    FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
        AS u(user_id, brand, masked_number, use_time)
    GROUP BY user_id, brand, masked_number ORDER BY user_id, brand, masked_number
    ON CONFLICT (user_id, brand, masked_number) DO UPDATE SET
        first_use_time = least(c.first_use_time, EXCLUDED.first_use_time),
        last_use_time = greatest(c.last_use_time, EXCLUDED.last_use_time)
), tips AS (
    INSERT INTO consumer.benefit_tips (tip_id, payment_id, user_id, merchant_id,
        merchant_name, category_code, used_brand, used_masked_number, used_rate_bps,
        better_brand, better_masked_number, better_rate_bps, currency_code,
        extra_reward_minor, message, create_time)
    SELECT tip_id, payment_id, user_id, merchant_id, merchant_name, category_code,
        used_brand, used_masked_number, used_rate_bps, better_brand, better_masked_number,
        better_rate_bps, currency_code, extra_reward_minor, message,
        now() + ord * interval '1 microsecond'
    FROM unnest($5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                $11::text[], $12::text[], $13::integer[], $14::text[], $15::text[],
                $16::integer[], $17::text[], $18::bigint[], $19::text[]) WITH ORDINALITY
        AS t(tip_id, payment_id, user_id, merchant_id, merchant_name, category_code,
             used_brand, used_masked_number, used_rate_bps, better_brand,
             better_masked_number, better_rate_bps, currency_code, extra_reward_minor,
             message, ord)
    ORDER BY payment_id, ord
    ON CONFLICT (payment_id) DO NOTHING RETURNING tip_id
)
SELECT ARRAY(SELECT tip_id FROM tips)
"""


@dataclass(frozen=True)
class _NewTip:
    tip_id: uuid.UUID
    event_id: str
    purchase: CardPurchase
    tip: Tip


def _columns(rows: Sequence[object], *paths: str) -> list[list[Any]]:
    """One list per attribute path (``"card.brand"``) over ``rows``: the arrays a
    multi-row ``unnest($1::text[], ...)`` statement takes."""
    return [[attrgetter(path)(row) for row in rows] for path in paths]


def _benefit(row: asyncpg.Record) -> Benefit:
    return Benefit(
        brand=row["brand"],
        category_code=row["category_code"],
        reward_kind=row["reward_kind"],
        rate_bps=row["rate_bps"],
        description=row["description"],
        update_time=row["update_time"],
    )


class InsightsStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------ loyalty

    async def record_visits(
        self, *, group: str, topic: str, visits: Mapping[str, Visit]
    ) -> dict[str, str]:
        """Count each visit (by event id) once, in one statement; the result of each event
        id: "counted", "duplicate" (event seen) or "duplicate_payment" (another event
        already counted this payment)."""
        row = await self._pool.fetchrow(
            _RECORD_VISITS,
            group,
            topic,
            list(visits),
            *_columns(
                list(visits.values()),
                "payment_id",
                "user_id",
                "merchant_id",
                "merchant_name",
                "visit_time",
            ),
        )
        assert row is not None
        fresh, counted = set(row["fresh"]), set(row["counted"])
        return {
            event_id: (
                "duplicate"
                if event_id not in fresh
                else "counted"
                if event_id in counted
                else "duplicate_payment"
            )
            for event_id in visits
        }

    async def list_standings(
        self, user_id: str, *, merchant_id: str, limit: int, after: StandingCursor | None
    ) -> list[StandingRow]:
        """Most visits first, then by merchant id; at most ``limit`` rows after ``after``."""
        rows = await self._pool.fetch(
            "SELECT merchant_id, merchant_name, visits, last_visit_time"
            " FROM consumer.loyalty_standings"
            " WHERE user_id = $1 AND ($2 = '' OR merchant_id = $2)"
            "  AND ($3::bigint IS NULL OR visits < $3 OR (visits = $3 AND merchant_id > $4::text))"
            " ORDER BY visits DESC, merchant_id LIMIT $5",
            user_id,
            merchant_id,
            None if after is None else after[0],
            None if after is None else after[1],
            limit,
        )
        return [
            StandingRow(r["merchant_id"], r["merchant_name"], r["visits"], r["last_visit_time"])
            for r in rows
        ]

    # ------------------------------------------------------------ benefits

    async def record_card_purchases(
        self, *, group: str, topic: str, purchases: Mapping[str, CardPurchase]
    ) -> dict[str, str]:
        """Remember the cards and, for each purchase (by event id, in batch order) where
        another card the user had paid with before would have earned more, record a
        tip — all in one transaction. The result of each event id: "tip", "no_tip",
        "duplicate" (event seen) or "duplicate_payment" (the payment's tip exists)."""
        results = dict.fromkeys(purchases, "duplicate")
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = {r["event_id"] for r in await conn.fetch(_INBOX, group, topic, list(purchases))}
            todo = [(e, p) for e, p in purchases.items() if e in fresh]
            if not todo:
                return results
            cards = await conn.fetch(
                "SELECT user_id, brand, masked_number, last_use_time FROM consumer.benefit_cards"
                " WHERE user_id = ANY($1::text[])",
                sorted({p.user_id for _, p in todo}),
            )
            catalog = await conn.fetch(
                "SELECT * FROM consumer.benefit_catalog WHERE category_code = ANY($1::text[])",
                sorted({p.category_code for _, p in todo} | {"*"}),
            )
            known: dict[str, list[KnownCard]] = {}
            for r in cards:
                known.setdefault(r["user_id"], []).append(
                    KnownCard(Card(r["brand"], r["masked_number"]), r["last_use_time"])
                )
            uses = [
                CardUse(p.user_id, p.card, p.category_code, p.amount_minor, p.purchase_time)
                for _, p in todo
            ]
            tips = advise_in_turn(uses, known, [_benefit(r) for r in catalog])
            tipped = [
                _NewTip(uuid.uuid4(), event_id, purchase, tip)
                for (event_id, purchase), tip in zip(todo, tips, strict=True)
                if tip is not None
            ]
            recorded = set(
                await conn.fetchval(
                    _RECORD_CARDS_AND_TIPS,
                    *_columns(
                        [purchase for _, purchase in todo],
                        "user_id",
                        "card.brand",
                        "card.masked_number",
                        "purchase_time",
                    ),
                    *_columns(
                        tipped,
                        "tip_id",
                        "purchase.payment_id",
                        "purchase.user_id",
                        "purchase.merchant_id",
                        "purchase.merchant_name",
                        "purchase.category_code",
                        "tip.used_card.brand",
                        "tip.used_card.masked_number",
                        "tip.used_rate_bps",
                        "tip.better_card.brand",
                        "tip.better_card.masked_number",
                        "tip.better_rate_bps",
                        "purchase.currency_code",
                        "tip.extra_reward_minor",
                        "tip.message",
                    ),
                )
            )
        for event_id, _ in todo:
            results[event_id] = "no_tip"
        for new in tipped:
            results[new.event_id] = "tip" if new.tip_id in recorded else "duplicate_payment"
        return results

    async def list_tips(self, user_id: str, *, limit: int, after: TipCursor | None) -> list[TipRow]:
        """Newest first; at most ``limit`` rows after ``after``."""
        rows = await self._pool.fetch(
            "SELECT * FROM consumer.benefit_tips WHERE user_id = $1"
            " AND ($2::timestamptz IS NULL OR (create_time, tip_id) < ($2, $3::uuid))"
            " ORDER BY create_time DESC, tip_id DESC LIMIT $4",
            user_id,
            None if after is None else after[0],
            None if after is None else uuid.UUID(after[1]),
            limit,
        )
        return [
            TipRow(
                tip_id=str(r["tip_id"]),
                payment_id=r["payment_id"],
                merchant_id=r["merchant_id"],
                merchant_name=r["merchant_name"],
                category_code=r["category_code"],
                used_card=Card(r["used_brand"], r["used_masked_number"]),
                used_rate_bps=r["used_rate_bps"],
                better_card=Card(r["better_brand"], r["better_masked_number"]),
                better_rate_bps=r["better_rate_bps"],
                currency_code=r["currency_code"],
                extra_reward_minor=r["extra_reward_minor"],
                message=r["message"],
                create_time=r["create_time"],
            )
            for r in rows
        ]

    # ------------------------------------------------------------ the catalog

    async def put_benefit(self, benefit: Benefit) -> Benefit:
        row = await self._pool.fetchrow(
            "INSERT INTO consumer.benefit_catalog"
            " (brand, category_code, reward_kind, rate_bps, description)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (brand, category_code) DO UPDATE SET reward_kind = EXCLUDED.reward_kind,"
            "  rate_bps = EXCLUDED.rate_bps, description = EXCLUDED.description,"
            "  update_time = now()"
            " RETURNING *",
            benefit.brand,
            benefit.category_code,
            benefit.reward_kind,
            benefit.rate_bps,
            benefit.description,
        )
        return _benefit(row)

    async def seed_benefit(self, benefit: Benefit) -> bool:
        """Add the entry unless one exists for its (brand, category); True when added."""
        return bool(
            await self._pool.fetchval(
                "INSERT INTO consumer.benefit_catalog"
                " (brand, category_code, reward_kind, rate_bps, description)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
                benefit.brand,
                benefit.category_code,
                benefit.reward_kind,
                benefit.rate_bps,
                benefit.description,
            )
        )

    async def list_benefits(self) -> Sequence[Benefit]:
        rows = await self._pool.fetch(
            "SELECT * FROM consumer.benefit_catalog ORDER BY brand, category_code"
        )
        return [_benefit(r) for r in rows]

    async def delete_benefit(self, brand: str, category_code: str) -> bool:
        return bool(
            await self._pool.fetchval(
                "DELETE FROM consumer.benefit_catalog WHERE brand = $1 AND category_code = $2"
                " RETURNING true",
                brand,
                category_code,
            )
        )
