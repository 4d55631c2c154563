"""The payment system of record over PostgreSQL (schema ``payments``).

Every write is one transaction: the payment, its vaulted card, its idempotency key, any
ledger hold and the outbox rows that announce it commit together or not at all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg

from payment_svc.domain.cards import CardBrand
from payment_svc.domain.errors import InsufficientFunds, NotFound
from payment_svc.domain.money import Money
from payment_svc.domain.payment import CardView, StatusChanged
from payment_svc.domain.status import (
    FundingSource,
    PaymentKind,
    PaymentStatus,
)
from payment_svc.domain.validation import Merchant
from payment_svc.proto_mapping import created_event, status_changed_event
from payment_svc.service.ports import (
    BalanceView,
    ExistingKey,
    NewPayment,
    PageCursor,
    PaymentView,
)
from payrail_common import tracing

EVENTS_TOPIC = "payments.events"
STATUS_TOPIC = "payments.status"

# What CreatePayment writes (the dispatch columns start at their defaults).
_CREATED_COLUMNS = (
    "id, user_id, kind, status, funding_source, currency_code, amount_minor, description,"
    " card_brand, card_masked, card_exp_month, card_exp_year, merchant, failure_code,"
    " failure_message, version, create_time, update_time, verification_reason, verified"
)
# What a PaymentView is read from.
PAYMENT_COLUMNS = _CREATED_COLUMNS + ", gateway_id, gateway_reference, dispatch_attempt"


def payment_columns(alias: str) -> str:
    """PAYMENT_COLUMNS qualified by a table alias, for joins."""
    return ", ".join(f"{alias}.{column.strip()}" for column in PAYMENT_COLUMNS.split(","))


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def view_from_row(row: asyncpg.Record) -> PaymentView:
    card = None
    if row["card_masked"] is not None:
        brand = row["card_brand"]
        card = CardView(
            brand=None if brand is None else CardBrand(brand),
            masked_number=row["card_masked"],
            exp_month=row["card_exp_month"],
            exp_year=row["card_exp_year"],
        )
    merchant = None
    if row["merchant"] is not None:
        merchant = Merchant(**json.loads(row["merchant"]))
    funding = row["funding_source"]
    return PaymentView(
        payment_id=str(row["id"]),
        user_id=str(row["user_id"]),
        kind=PaymentKind(row["kind"]),
        status=PaymentStatus(row["status"]),
        funding_source=None if funding is None else FundingSource(funding),
        amount=Money(row["currency_code"], row["amount_minor"]),
        description=row["description"],
        card=card,
        merchant=merchant,
        failure_code=row["failure_code"],
        failure_message=row["failure_message"],
        version=row["version"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        verification_reason=row["verification_reason"],
        verified=row["verified"],
        gateway_id=row["gateway_id"] or "",
        gateway_reference=row["gateway_reference"],
        attempt=row["dispatch_attempt"],
    )


def _outbox_insert(first: int) -> str:
    """INSERT of outbox rows given as the six column arrays of :func:`outbox_arrays`, in
    parameters $first .. $first+5 (one statement text, prepared once, whatever the count)."""
    arrays = ", ".join(
        f"${first + i}::{kind}[]"
        for i, kind in enumerate(("uuid", "text", "text", "text", "bytea", "text"))
    )
    columns = "event_id, topic, message_key, event_type, payload, request_id"
    return f"INSERT INTO payments.outbox ({columns}) SELECT * FROM unnest({arrays})"  # noqa: S608


_OUTBOX_INSERT = _outbox_insert(1)


@dataclass(frozen=True)
class OutboxRow:
    topic: str
    key: str
    event_type: str
    event: tuple[str, bytes]  # (event id, serialized event)
    # The request the row is written for; None: the one bound now (tracing).
    request_id: str | None = None


def outbox_arrays(rows: Sequence[OutboxRow]) -> list[list[Any]]:
    """The six column arrays of ``_OUTBOX_INSERT`` for ``rows``; each row keeps the id of
    the request it is written for (the relay publishes it as a header)."""
    bound = tracing.current()
    return [
        [uuid.UUID(row.event[0]) for row in rows],
        [row.topic for row in rows],
        [row.key for row in rows],
        [row.event_type for row in rows],
        [row.event[1] for row in rows],
        [row.request_id or bound for row in rows],
    ]


async def insert_outbox(
    conn: asyncpg.Connection, *, topic: str, key: str, event_type: str, event: tuple[str, bytes]
) -> None:
    await conn.execute(_OUTBOX_INSERT, *outbox_arrays([OutboxRow(topic, key, event_type, event)]))


def status_change_rows(
    view: PaymentView, previous: PaymentStatus, request_id: str | None = None
) -> list[OutboxRow]:
    """The outbox row of a status change: one row, on the lifecycle stream; the relay
    also publishes it to ``payments.status`` (outbox_relay.ALSO_PUBLISHED_TO)."""
    return [
        OutboxRow(
            EVENTS_TOPIC,
            view.payment_id,
            "payment.status_changed",
            status_changed_event(view, previous),
            request_id,
        )
    ]


# Many status changes and their announcements in one round trip (a batch's); constants.
_STATUS_UPDATE_MANY = (  # noqa: S608
    "WITH changed AS (UPDATE payments.payments AS p SET status = u.status,"
    " version = u.version, failure_code = u.failure_code, failure_message = u.failure_message,"
    " update_time = u.update_time, gateway_id = u.gateway_id,"
    " gateway_reference = u.gateway_reference, dispatch_attempt = u.dispatch_attempt"
    " FROM unnest($7::uuid[], $8::text[], $9::bigint[], $10::text[], $11::text[],"
    " $12::timestamptz[], $13::text[], $14::text[], $15::int[])"
    " AS u(id, status, version, failure_code, failure_message, update_time, gateway_id,"
    " gateway_reference, dispatch_attempt) WHERE p.id = u.id) "
) + _OUTBOX_INSERT


async def save_status_changes(
    conn: asyncpg.Connection, changes: Sequence[tuple[PaymentView, PaymentStatus, str | None]]
) -> None:
    """:func:`save_status_change` for many payments (each once) in one statement:
    (payment after, status before, the request id its outbox row carries)."""
    if not changes:
        return
    rows = [row for p, previous, rid in changes for row in status_change_rows(p, previous, rid)]
    await conn.execute(
        _STATUS_UPDATE_MANY,
        *outbox_arrays(rows),
        [uuid.UUID(p.payment_id) for p, _, _ in changes],
        [p.status.value for p, _, _ in changes],
        [p.version for p, _, _ in changes],
        [p.failure_code for p, _, _ in changes],
        [p.failure_message for p, _, _ in changes],
        [p.update_time for p, _, _ in changes],
        [p.gateway_id or None for p, _, _ in changes],
        [p.gateway_reference for p, _, _ in changes],
        [p.attempt for p, _, _ in changes],
    )


# A status change and its announcement in one round trip.
_STATUS_UPDATE = (
    "WITH changed AS (UPDATE payments.payments SET status = $7, version = $8,"
    " failure_code = $9, failure_message = $10, update_time = $11, gateway_id = $13,"
    " gateway_reference = $14, dispatch_attempt = $15 WHERE id = $12) "
)
_STATUS_UPDATE_AND_ANNOUNCE = _STATUS_UPDATE + _OUTBOX_INSERT


async def save_status_change(
    conn: asyncpg.Connection, updated: PaymentView, previous: PaymentStatus
) -> None:
    """Write ``updated``'s status, version, failure, update time and dispatch (gateway,
    its reference, attempt), and announce it."""
    await conn.execute(
        _STATUS_UPDATE_AND_ANNOUNCE,
        *outbox_arrays(status_change_rows(updated, previous)),
        updated.status.value,
        updated.version,
        updated.failure_code,
        updated.failure_message,
        updated.update_time,
        uuid.UUID(updated.payment_id),
        updated.gateway_id or None,
        updated.gateway_reference,
        updated.attempt,
    )


async def wallet_account_for_update(
    conn: asyncpg.Connection, user_id: uuid.UUID, currency_code: str
) -> asyncpg.Record:
    """The user's wallet in this currency, created on first use, locked for this transaction."""
    await conn.execute(
        "INSERT INTO payments.ledger_accounts (owner_user_id, purpose, currency_code)"
        " VALUES ($1, 'WALLET', $2) ON CONFLICT DO NOTHING",
        user_id,
        currency_code,
    )
    return await conn.fetchrow(
        "SELECT id, balance_minor, held_minor FROM payments.ledger_accounts"
        " WHERE owner_user_id = $1 AND purpose = 'WALLET' AND currency_code = $2 FOR UPDATE",
        user_id,
        currency_code,
    )


async def release_hold(conn: asyncpg.Connection, payment_id: uuid.UUID) -> None:
    """Return an active hold's funds to the available balance (no journal entry: a hold
    never moved money)."""
    hold = await conn.fetchrow(
        "UPDATE payments.holds SET status = 'RELEASED', update_time = now()"
        " WHERE payment_id = $1 AND status = 'ACTIVE' RETURNING account_id, amount_minor",
        payment_id,
    )
    if hold is not None:
        await conn.execute(
            "UPDATE payments.ledger_accounts SET held_minor = held_minor - $2 WHERE id = $1",
            hold["account_id"],
            hold["amount_minor"],
        )


# Everything CreatePayment writes after claiming its idempotency key, in one round
# trip: the payment, its vaulted card ($22 not null), its hold and the wallet's held
# funds ($26 > 0), and its outbox row. Foreign keys are checked at the statement's end,
# when the payment row exists.
_NEW_PAYMENT_COLUMNS = f"{_CREATED_COLUMNS}, card_fingerprint"
_CREATE_PAYMENT_REST = (
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
    " $18, $19, $20, $21)),"
    " card AS (INSERT INTO payments.cards (payment_id, key_id, nonce, ciphertext, fingerprint)"
    " SELECT $1, $22, $23, $24, $21 WHERE $22::text IS NOT NULL),"
    " hold AS (INSERT INTO payments.holds (payment_id, account_id, amount_minor, status)"
    " SELECT $1, $25, $26, 'ACTIVE' WHERE $26::bigint > 0),"
    " held AS (UPDATE payments.ledger_accounts SET held_minor = held_minor + $26"
    " WHERE id = $25 AND $26::bigint > 0),"
    " outbox AS ("
)
_CREATE_PAYMENT = "WITH payment AS (INSERT INTO payments.payments (" + _NEW_PAYMENT_COLUMNS + ")"
_CREATE_PAYMENT += _CREATE_PAYMENT_REST + _outbox_insert(27) + ") SELECT 1"


class PostgresPaymentRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, new: NewPayment) -> PaymentView | ExistingKey:
        view = new.payment
        user_id = uuid.UUID(view.user_id)
        payment_id = uuid.UUID(view.payment_id)
        async with self._pool.acquire() as conn, conn.transaction():
            # The key goes in first: a concurrent request with the same key blocks here
            # until this transaction ends, then finds the winner (never read-then-write).
            claimed = await conn.fetchval(
                "INSERT INTO payments.idempotency_keys"
                " (user_id, idempotency_key, request_hash, payment_id)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
                user_id,
                new.idempotency_key,
                new.request_hash,
                payment_id,
            )
            if not claimed:
                existing = await conn.fetchrow(
                    "SELECT payment_id, request_hash FROM payments.idempotency_keys"
                    " WHERE user_id = $1 AND idempotency_key = $2",
                    user_id,
                    new.idempotency_key,
                )
                return ExistingKey(str(existing["payment_id"]), existing["request_hash"])
            if new.hold_minor:
                account = await wallet_account_for_update(conn, user_id, view.amount.currency_code)
                if account["balance_minor"] - account["held_minor"] < new.hold_minor:
                    raise InsufficientFunds(view.amount.currency_code)
            card = view.card
            sealed = new.sealed_pan if new.card_fingerprint is not None else None
            await conn.execute(
                _CREATE_PAYMENT,
                payment_id,
                user_id,
                view.kind.value,
                view.status.value,
                None if view.funding_source is None else view.funding_source.value,
                view.amount.currency_code,
                view.amount.amount_minor,
                view.description,
                None if card is None or card.brand is None else card.brand.value,
                None if card is None else card.masked_number,
                None if card is None else card.exp_month,
                None if card is None else card.exp_year,
                None if view.merchant is None else json.dumps(asdict(view.merchant)),
                view.failure_code,
                view.failure_message,
                view.version,
                view.create_time,
                view.update_time,
                view.verification_reason,
                view.verified,
                new.card_fingerprint if sealed is not None else None,
                None if sealed is None else sealed.key_id,
                None if sealed is None else sealed.nonce,
                None if sealed is None else sealed.ciphertext,
                account["id"] if new.hold_minor else None,
                new.hold_minor,
                *outbox_arrays(
                    [
                        OutboxRow(
                            EVENTS_TOPIC,
                            view.payment_id,
                            "payment.created",
                            created_event(view, new.card_fingerprint),
                        )
                    ]
                ),
            )
        return view

    async def key_exists(self, user_id: str, idempotency_key: str) -> bool:
        uid = _uuid(user_id)
        if uid is None:
            return False
        found = await self._pool.fetchval(
            "SELECT true FROM payments.idempotency_keys"
            " WHERE user_id = $1 AND idempotency_key = $2",
            uid,
            idempotency_key,
        )
        return bool(found)

    async def get(self, user_id: str, payment_id: str) -> PaymentView | None:
        uid, pid = _uuid(user_id), _uuid(payment_id)
        if uid is None or pid is None:
            return None
        row = await self._pool.fetchrow(
            f"SELECT {PAYMENT_COLUMNS} FROM payments.payments"  # noqa: S608 - constant
            " WHERE id = $1 AND user_id = $2",
            pid,
            uid,
        )
        return None if row is None else view_from_row(row)

    async def list(
        self,
        user_id: str,
        *,
        limit: int,
        after: PageCursor | None,
        status: PaymentStatus | None,
        kind: PaymentKind | None,
    ) -> Sequence[PaymentView]:
        uid = _uuid(user_id)
        if uid is None:
            return []
        args: list[Any] = [uid, limit]
        where = ["user_id = $1"]
        if after is not None:
            args += [after.create_time, uuid.UUID(after.payment_id)]
            where.append(f"(create_time, id) < (${len(args) - 1}, ${len(args)})")
        if status is not None:
            args.append(status.value)
            where.append(f"status = ${len(args)}")
        if kind is not None:
            args.append(kind.value)
            where.append(f"kind = ${len(args)}")
        rows = await self._pool.fetch(
            f"SELECT {PAYMENT_COLUMNS} FROM payments.payments WHERE {' AND '.join(where)}"  # noqa: S608
            " ORDER BY create_time DESC, id DESC LIMIT $2",
            *args,
        )
        return [view_from_row(row) for row in rows]

    async def cancel(self, user_id: str, payment_id: str, now: datetime) -> PaymentView:
        uid, pid = _uuid(user_id), _uuid(payment_id)
        if uid is None or pid is None:
            raise NotFound("payment")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {PAYMENT_COLUMNS} FROM payments.payments"  # noqa: S608 - constant
                " WHERE id = $1 AND user_id = $2 FOR UPDATE",
                pid,
                uid,
            )
            if row is None:
                raise NotFound("payment")
            change = view_from_row(row).cancel(now)
            # The hold goes back to the available balance (the ledger's rules for CANCELED).
            await release_hold(conn, pid)
            (event,) = change.events
            assert isinstance(event, StatusChanged)
            await save_status_change(conn, change.payment, event.previous)
        return change.payment

    async def balances(self, user_id: str, currency_code: str | None) -> Sequence[BalanceView]:
        uid = _uuid(user_id)
        if uid is None:
            return []
        rows = await self._pool.fetch(
            "SELECT currency_code, balance_minor - held_minor AS available, held_minor"
            " FROM payments.ledger_accounts"
            " WHERE owner_user_id = $1 AND purpose = 'WALLET'"
            " AND ($2::text IS NULL OR currency_code = $2) ORDER BY currency_code",
            uid,
            currency_code,
        )
        return [BalanceView(r["currency_code"], r["available"], r["held_minor"]) for r in rows]
