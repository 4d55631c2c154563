"""What operators read and change in payment_svc's tables (PaymentAdminService).

Reads across every user's payments, so nothing here is reachable without the admin role
(checked in api/admin.py). Card data is what PaymentView already holds: masked only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from payment_svc.adapters.postgres import PAYMENT_COLUMNS, view_from_row
from payment_svc.service.ports import PaymentView

__all__ = ["AdminQueries", "PaymentFilter", "PaymentStory", "SearchCursor"]


@dataclass(frozen=True)
class SearchCursor:
    """Where a search page ended: the last payment's (create_time, id)."""

    create_time: datetime
    payment_id: uuid.UUID


@dataclass(frozen=True)
class PaymentFilter:
    payment_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    status: str | None = None
    kind: str | None = None
    gateway_id: str | None = None
    create_time_from: datetime | None = None
    create_time_to: datetime | None = None


@dataclass(frozen=True)
class PaymentStory:
    payment: PaymentView
    events: list[asyncpg.Record]
    dispatch: asyncpg.Record | None
    results: list[asyncpg.Record]
    verification: asyncpg.Record | None
    entries: list[asyncpg.Record]
    postings: list[asyncpg.Record]


_SEARCH = (
    f"SELECT {PAYMENT_COLUMNS} FROM payments.payments"  # noqa: S608 - constants only
    " WHERE ($1::uuid IS NULL OR id = $1)"
    " AND ($2::uuid IS NULL OR user_id = $2)"
    " AND ($3::text IS NULL OR status = $3)"
    " AND ($4::text IS NULL OR kind = $4)"
    " AND ($5::text IS NULL OR gateway_id = $5)"
    " AND ($6::timestamptz IS NULL OR create_time >= $6)"
    " AND ($7::timestamptz IS NULL OR create_time < $7)"
    " AND ($8::timestamptz IS NULL OR (create_time, id) < ($8, $9::uuid))"
    " ORDER BY create_time DESC, id DESC LIMIT $10"
)
_GATEWAY_COLUMNS = (
    "id, wire_format, topic, kinds, currency_codes, priority, enabled,"
    " callback_timeout_seconds, create_time"
)


class AdminQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def search(
        self, where: PaymentFilter, *, after: SearchCursor | None, limit: int
    ) -> list[PaymentView]:
        rows = await self._pool.fetch(
            _SEARCH,
            where.payment_id,
            where.user_id,
            where.status,
            where.kind,
            where.gateway_id,
            where.create_time_from,
            where.create_time_to,
            None if after is None else after.create_time,
            None if after is None else after.payment_id,
            limit,
        )
        return [view_from_row(row) for row in rows]

    async def story(self, payment_id: uuid.UUID) -> PaymentStory | None:
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            row = await conn.fetchrow(
                f"SELECT {PAYMENT_COLUMNS} FROM payments.payments WHERE id = $1",  # noqa: S608
                payment_id,
            )
            if row is None:
                return None
            key = str(payment_id)
            events = await conn.fetch(
                "SELECT event_id, event_type, topic, payload, create_time, sent_time"
                " FROM payments.outbox WHERE message_key = $1 AND topic = 'payments.events'"
                " ORDER BY id",
                key,
            )
            dispatch = await conn.fetchrow(
                "SELECT gateway_id, attempt, callback_deadline, update_time"
                " FROM payments.dispatches WHERE payment_id = $1",
                payment_id,
            )
            results = await conn.fetch(
                "SELECT event_id, gateway_id, outcome, apply_time FROM payments.callback_events"
                " WHERE payment_id = $1 ORDER BY apply_time, event_id",
                payment_id,
            )
            verification = await conn.fetchrow(
                "SELECT issue_time, expire_time, failed_attempts, outcome, answer_time"
                " FROM payments.verifications WHERE payment_id = $1",
                payment_id,
            )
            entries = await conn.fetch(
                "SELECT id, description, create_time FROM payments.journal_entries"
                " WHERE payment_id = $1 ORDER BY id",
                payment_id,
            )
            postings = await conn.fetch(
                "SELECT p.entry_id, a.purpose, a.owner_user_id, a.currency_code, p.amount_minor"
                " FROM payments.postings p JOIN payments.ledger_accounts a ON a.id = p.account_id"
                " WHERE p.entry_id = ANY($1::bigint[]) ORDER BY p.entry_id, p.id",
                [e["id"] for e in entries],
            )
        return PaymentStory(
            view_from_row(row), list(events), dispatch, list(results), verification,
            list(entries), list(postings),
        )  # fmt: skip

    async def gateways(self) -> list[asyncpg.Record]:
        return list(
            await self._pool.fetch(
                f"SELECT {_GATEWAY_COLUMNS} FROM payments.gateways"  # noqa: S608 - constant
                " ORDER BY priority DESC, id"
            )
        )

    async def update_gateway(
        self, gateway_id: str, *, enabled: bool | None, priority: int | None
    ) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._pool.fetchrow(
            "UPDATE payments.gateways SET enabled = coalesce($2, enabled),"  # noqa: S608
            " priority = coalesce($3, priority) WHERE id = $1"
            f" RETURNING {_GATEWAY_COLUMNS}",
            gateway_id,
            enabled,
            priority,
        )
        return row
