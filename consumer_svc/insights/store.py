"""PostgreSQL adapter of the insights process: the only module that talks SQL.

Every effect of a consumer group is one transaction that starts with the group's inbox
row: a redelivered event finds its row and changes nothing. The effects are keyed by
payment id as well (a visit, a tip), so even a second, different event about the same
completed payment cannot count twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from consumer_svc.insights.domain import Benefit, Card, KnownCard, Tip, advise


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

_INBOX = (
    "INSERT INTO consumer.inbox (consumer_group, event_id, topic) VALUES ($1, $2, $3)"
    " ON CONFLICT DO NOTHING RETURNING true"
)


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

    async def record_visit(self, *, group: str, event_id: str, topic: str, visit: Visit) -> str:
        """Count the visit once; return "counted", "duplicate" (event seen) or
        "duplicate_payment" (another event already counted this payment)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(_INBOX, group, event_id, topic):
                return "duplicate"
            counted = await conn.fetchval(
                "INSERT INTO consumer.loyalty_visits"
                " (payment_id, user_id, merchant_id, event_id, visit_time)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (payment_id) DO NOTHING RETURNING true",
                visit.payment_id,
                visit.user_id,
                visit.merchant_id,
                event_id,
                visit.visit_time,
            )
            if not counted:
                return "duplicate_payment"
            # One statement, so concurrent visits at the same merchant serialize on the row.
            await conn.execute(
                "INSERT INTO consumer.loyalty_standings AS s"
                " (user_id, merchant_id, merchant_name, visits, last_visit_time)"
                " VALUES ($1, $2, $3, 1, $4)"
                " ON CONFLICT (user_id, merchant_id) DO UPDATE SET"
                "  visits = s.visits + 1,"
                "  merchant_name = CASE WHEN EXCLUDED.last_visit_time >= s.last_visit_time"
                "   THEN EXCLUDED.merchant_name ELSE s.merchant_name END,"
                "  last_visit_time = greatest(s.last_visit_time, EXCLUDED.last_visit_time)",
                visit.user_id,
                visit.merchant_id,
                visit.merchant_name,
                visit.visit_time,
            )
            return "counted"

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

    async def record_card_purchase(
        self, *, group: str, event_id: str, topic: str, purchase: CardPurchase
    ) -> str:
        """Remember the card and, when another card the user has paid with would have
        earned more, record a tip; return "tip", "no_tip" or "duplicate"."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(_INBOX, group, event_id, topic):
                return "duplicate"
            cards = await conn.fetch(
                "SELECT brand, masked_number, last_use_time FROM consumer.benefit_cards"
                " WHERE user_id = $1",
                purchase.user_id,
            )
            catalog = await conn.fetch(
                "SELECT * FROM consumer.benefit_catalog WHERE category_code IN ($1, '*')",
                purchase.category_code,
            )
            tip = advise(
                used=purchase.card,
                known=[
                    KnownCard(Card(r["brand"], r["masked_number"]), r["last_use_time"])
                    for r in cards
                ],
                category_code=purchase.category_code,
                amount_minor=purchase.amount_minor,
                catalog=[_benefit(r) for r in catalog],
            )
            await conn.execute(
                "INSERT INTO consumer.benefit_cards AS c"
                " (user_id, brand, masked_number, first_use_time, last_use_time)"
                " VALUES ($1, $2, $3, $4, $4)"
                " ON CONFLICT (user_id, brand, masked_number) DO UPDATE SET"
                "  first_use_time = least(c.first_use_time, EXCLUDED.first_use_time),"
                "  last_use_time = greatest(c.last_use_time, EXCLUDED.last_use_time)",
                purchase.user_id,
                purchase.card.brand,
                purchase.card.masked_number,
                purchase.purchase_time,
            )
            if tip is None:
                return "no_tip"
            recorded = await self._insert_tip(conn, purchase, tip)
            return "tip" if recorded else "duplicate_payment"

    @staticmethod
    async def _insert_tip(conn: asyncpg.Connection, purchase: CardPurchase, tip: Tip) -> bool:
        return bool(
            await conn.fetchval(
                "INSERT INTO consumer.benefit_tips (tip_id, payment_id, user_id, merchant_id,"
                " merchant_name, category_code, used_brand, used_masked_number, used_rate_bps,"
                " better_brand, better_masked_number, better_rate_bps, currency_code,"
                " extra_reward_minor, message)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                " ON CONFLICT (payment_id) DO NOTHING RETURNING true",
                uuid.uuid4(),
                purchase.payment_id,
                purchase.user_id,
                purchase.merchant_id,
                purchase.merchant_name,
                purchase.category_code,
                tip.used_card.brand,
                tip.used_card.masked_number,
                tip.used_rate_bps,
                tip.better_card.brand,
                tip.better_card.masked_number,
                tip.better_rate_bps,
                purchase.currency_code,
                tip.extra_reward_minor,
                tip.message,
            )
        )

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
