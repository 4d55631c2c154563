"""Processing over PostgreSQL: the gateway registry, dispatch, failures and gateway
results with settlement. Each call is one transaction and idempotent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import asyncpg

from payment_svc.adapters.ledger import settle, settle_many
from payment_svc.adapters.postgres import (
    EVENTS_TOPIC,
    PAYMENT_COLUMNS,
    insert_outbox,
    payment_columns,
    save_status_change,
    save_status_changes,
    view_from_row,
)
from payment_svc.domain.errors import NotFound
from payment_svc.domain.payment import Change, Dispatched, Payment, StatusChanged, Verified
from payment_svc.domain.status import PaymentStatus
from payment_svc.proto_mapping import verified_event
from payment_svc.service.ports import PaymentView
from payment_svc.service.processing_ports import (
    AppliedResult,
    DispatchItem,
    DispatchRecord,
    GatewayView,
    StaleCursor,
    StalePending,
)
from payment_svc.vault import SealedPan
from payrail_common import tracing

# Before the first page of stale PENDING payments.
_CURSOR_START = StaleCursor(datetime(1970, 1, 1, tzinfo=UTC), str(uuid.UUID(int=0)))

_GATEWAY_COLUMNS = (
    "id, wire_format, topic, kinds, currency_codes, priority, callback_timeout_seconds, public_key"
)


def _gateway(row: asyncpg.Record) -> GatewayView:
    return GatewayView(
        gateway_id=row["id"],
        wire_format=row["wire_format"],
        topic=row["topic"],
        kinds=tuple(row["kinds"]),
        currency_codes=tuple(row["currency_codes"]),
        priority=row["priority"],
        callback_timeout_s=row["callback_timeout_seconds"],
        public_key=bytes(row["public_key"]),
    )


def payment_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("payment") from None


def _sealed_pan(row: asyncpg.Record) -> SealedPan | None:
    if row["key_id"] is None:
        return None
    return SealedPan(row["key_id"], bytes(row["nonce"]), bytes(row["ciphertext"]))


async def vaulted_card(conn: asyncpg.Connection, payment_id: uuid.UUID) -> SealedPan | None:
    """The payment's encrypted card, or None for a wallet-funded payment."""
    card = await conn.fetchrow(
        "SELECT key_id, nonce, ciphertext FROM payments.cards WHERE payment_id = $1", payment_id
    )
    return None if card is None else _sealed_pan(card)


async def locked_payment(conn: asyncpg.Connection, payment_id: uuid.UUID) -> PaymentView:
    row = await conn.fetchrow(
        f"SELECT {PAYMENT_COLUMNS} FROM payments.payments WHERE id = $1 FOR UPDATE",  # noqa: S608
        payment_id,
    )
    if row is None:
        raise NotFound("payment")
    return view_from_row(row)


@dataclass(frozen=True)
class LockedForProcessing:
    """A payment locked for this transaction, with its dispatch (if any) and its vaulted
    card (if any): one round trip instead of three."""

    # (The payment itself says where it was dispatched and which attempt it is on.)
    payment: PaymentView
    dispatch_deadline: datetime | None
    sealed: SealedPan | None


_LOCK_FOR_PROCESSING_FROM = (
    f"SELECT {payment_columns('p')}, d.callback_deadline AS dispatch_deadline,"  # noqa: S608
    " c.key_id, c.nonce, c.ciphertext"
    " FROM payments.payments p"
    " LEFT JOIN payments.dispatches d ON d.payment_id = p.id"
    " LEFT JOIN payments.cards c ON c.payment_id = p.id"
)
_LOCK_FOR_PROCESSING = _LOCK_FOR_PROCESSING_FROM + " WHERE p.id = $1 FOR UPDATE OF p"
# The same for many payments, locked in id order (the caller passes them sorted).
_LOCK_MANY_FOR_PROCESSING = (
    _LOCK_FOR_PROCESSING_FROM + " WHERE p.id = ANY($1::uuid[]) ORDER BY p.id FOR UPDATE OF p"
)


def _locked(row: asyncpg.Record) -> LockedForProcessing:
    return LockedForProcessing(
        payment=view_from_row(row),
        dispatch_deadline=row["dispatch_deadline"],
        sealed=_sealed_pan(row),
    )


async def lock_for_processing(
    conn: asyncpg.Connection, payment_id: uuid.UUID
) -> LockedForProcessing:
    row = await conn.fetchrow(_LOCK_FOR_PROCESSING, payment_id)
    if row is None:
        raise NotFound("payment")
    return _locked(row)


async def save_many(
    conn: asyncpg.Connection, changes: Sequence[tuple[Change, str | None]]
) -> list[Payment]:
    """:func:`save` for the changes of many payments (each payment once; no dispatch
    among them), each with the request id its outbox row carries: every ledger effect
    and every status change in a fixed number of statements (a batch of gateway
    results)."""
    finals = [c.payment for c, _ in changes if c.payment.is_final and _moved(c)]
    await settle_many(conn, finals)
    status_changes = [
        (change.payment, event.previous, request_id)
        for change, request_id in changes
        for event in change.events
        if isinstance(event, StatusChanged)
    ]
    await save_status_changes(conn, status_changes)
    for change, request_id in changes:
        others = tuple(e for e in change.events if not isinstance(e, StatusChanged))
        if others:
            with tracing.bind(request_id or tracing.current()):
                await save(conn, Change(change.payment, others))
    return [change.payment for change, _ in changes]


def _moved(change: Change) -> bool:
    return any(isinstance(e, StatusChanged) for e in change.events)


async def save(
    conn: asyncpg.Connection, change: Change, *, dispatch_deadline: datetime | None = None
) -> Payment:
    """Persist what the aggregate decided, inside the caller's transaction: the payment's
    new state, the ledger for a final status, its outbox rows, its dispatch record
    (``dispatch_deadline`` is required for a Dispatched event). Challenge events are the
    verification adapter's (they need the code's hash)."""
    payment = change.payment
    pid = uuid.UUID(payment.payment_id)
    for event in change.events:
        if isinstance(event, StatusChanged):
            if payment.is_final:
                await settle(conn, payment)
            await save_status_change(conn, payment, event.previous)
        elif isinstance(event, Verified):
            await conn.execute(
                "UPDATE payments.payments SET verified = true, version = $2,"
                " update_time = $3 WHERE id = $1",
                pid,
                payment.version,
                payment.update_time,
            )
            await insert_outbox(
                conn,
                topic=EVENTS_TOPIC,
                key=payment.payment_id,
                event_type="payment.verified",
                event=verified_event(payment),
            )
        elif isinstance(event, Dispatched):
            if dispatch_deadline is None:
                raise ValueError("a dispatch needs its callback deadline")
            # The first dispatch (its status change wrote gateway and attempt on the
            # payment) or a re-dispatch (attempt + 1, status and version unchanged).
            await conn.execute(
                "WITH d AS (INSERT INTO payments.dispatches"
                " (payment_id, gateway_id, attempt, callback_deadline) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (payment_id) DO UPDATE SET attempt = EXCLUDED.attempt,"
                " callback_deadline = EXCLUDED.callback_deadline, update_time = $5)"
                " UPDATE payments.payments SET dispatch_attempt = $3 WHERE id = $1",
                pid,
                event.gateway_id,
                event.attempt,
                dispatch_deadline,
                payment.update_time,
            )
    return payment


class PostgresProcessingRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def list_gateways(self) -> Sequence[GatewayView]:
        rows = await self._pool.fetch(
            f"SELECT {_GATEWAY_COLUMNS} FROM payments.gateways"  # noqa: S608 - constant
            " WHERE enabled ORDER BY priority DESC, id"
        )
        return [_gateway(r) for r in rows]

    async def gateway_callback_auth(self, gateway_id: str) -> tuple[str, Sequence[bytes]] | None:
        row = await self._pool.fetchrow(
            "SELECT g.wire_format, array_agg(s.secret) AS secrets"
            " FROM payments.gateways g JOIN payments.gateway_secrets s ON s.gateway_id = g.id"
            " WHERE g.id = $1 AND g.enabled AND s.active GROUP BY g.wire_format",
            gateway_id,
        )
        if row is None:
            return None
        return row["wire_format"], [bytes(secret) for secret in row["secrets"]]

    async def begin_dispatches(
        self, items: Sequence[DispatchItem], now: datetime
    ) -> list[DispatchRecord | None]:
        """Many dispatches in one transaction, answered in order (None: the payment or
        the gateway does not exist). Payments are locked in id order, so concurrent
        batches never deadlock; an item repeated in the batch sees the first's result
        (the same dispatch again). Round trips: lock, gateways, one write per kind."""
        pids: dict[str, uuid.UUID] = {}
        for item in items:
            try:
                pids[item.payment_id] = uuid.UUID(item.payment_id)
            except ValueError:
                continue
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_LOCK_MANY_FOR_PROCESSING, sorted(set(pids.values())))
            locked = {str(row["id"]): _locked(row) for row in rows}
            gateway_rows = await conn.fetch(
                f"SELECT {_GATEWAY_COLUMNS} FROM payments.gateways"  # noqa: S608
                " WHERE id = ANY($1::text[]) AND enabled",
                sorted({item.gateway_id for item in items}),
            )
            gateways = {row["id"]: _gateway(row) for row in gateway_rows}
            answers: list[DispatchRecord | None] = []
            status_changes: list[tuple[Payment, PaymentStatus, str | None]] = []
            dispatches: list[tuple[uuid.UUID, str, int, datetime]] = []
            for item in items:
                found = locked.get(item.payment_id)
                gateway = gateways.get(item.gateway_id)
                if found is None or gateway is None:
                    answers.append(None)
                    continue
                current = found.payment
                change = current.begin_dispatch(item.gateway_id, now)
                if change is None or (not change.changed and found.dispatch_deadline is None):
                    answers.append(DispatchRecord(current, gateway, 0, None, None, dispatch=False))
                    continue
                if change.changed:
                    deadline = now + timedelta(seconds=gateway.callback_timeout_s)
                    updated = change.payment
                    for event in change.events:
                        if isinstance(event, StatusChanged):
                            status_changes.append((updated, event.previous, item.request_id))
                        elif isinstance(event, Dispatched):
                            dispatches.append(
                                (pids[item.payment_id], event.gateway_id, event.attempt, deadline)
                            )
                    # A repeat of this payment later in the batch sees it dispatched.
                    locked[item.payment_id] = replace(
                        found, payment=updated, dispatch_deadline=deadline
                    )
                    answers.append(
                        DispatchRecord(
                            updated, gateway, updated.attempt, deadline, found.sealed, dispatch=True
                        )
                    )
                else:
                    answers.append(
                        DispatchRecord(
                            current,
                            gateway,
                            current.attempt,
                            found.dispatch_deadline,
                            found.sealed,
                            dispatch=True,
                            changed=False,
                        )
                    )
            await save_status_changes(conn, status_changes)
            if dispatches:
                await conn.execute(
                    "INSERT INTO payments.dispatches"
                    " (payment_id, gateway_id, attempt, callback_deadline)"
                    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[])"
                    " ON CONFLICT (payment_id) DO UPDATE SET gateway_id = EXCLUDED.gateway_id,"
                    " attempt = EXCLUDED.attempt, callback_deadline = EXCLUDED.callback_deadline,"
                    " update_time = now()",
                    [d[0] for d in dispatches],
                    [d[1] for d in dispatches],
                    [d[2] for d in dispatches],
                    [d[3] for d in dispatches],
                )
        return answers

    async def begin_dispatch(
        self, payment_id: str, gateway_id: str, now: datetime
    ) -> DispatchRecord:
        pid = payment_uuid(payment_id)
        async with self._pool.acquire() as conn, conn.transaction():
            locked = await lock_for_processing(conn, pid)
            current = locked.payment
            row = await conn.fetchrow(
                f"SELECT {_GATEWAY_COLUMNS} FROM payments.gateways"  # noqa: S608
                " WHERE id = $1 AND enabled",
                gateway_id,
            )
            if row is None:
                raise NotFound("gateway")
            gateway = _gateway(row)
            change = current.begin_dispatch(gateway_id, now)
            if change is None or (not change.changed and locked.dispatch_deadline is None):
                return DispatchRecord(current, gateway, 0, None, None, dispatch=False)
            deadline: datetime | None
            if change.changed:
                deadline = now + timedelta(seconds=gateway.callback_timeout_s)
                updated = await save(conn, change, dispatch_deadline=deadline)
            else:
                # A redelivered event: the same dispatch again, nothing changes.
                updated, deadline = current, locked.dispatch_deadline
        return DispatchRecord(
            updated,
            gateway,
            updated.attempt,
            deadline,
            locked.sealed,
            dispatch=True,
            changed=change.changed,
        )

    async def fail(
        self, payment_id: str, failure_code: str, failure_message: str, now: datetime
    ) -> PaymentView:
        pid = payment_uuid(payment_id)
        async with self._pool.acquire() as conn, conn.transaction():
            current = await locked_payment(conn, pid)
            return await save(conn, current.fail(failure_code, failure_message, now))

    async def apply_result(
        self,
        *,
        gateway_id: str,
        event_id: str,
        payment_id: str,
        approved: bool,
        failure_code: str,
        failure_message: str,
        now: datetime,
        gateway_reference: str = "",
    ) -> AppliedResult:
        pid = payment_uuid(payment_id)
        outcome = "APPROVED" if approved else "DECLINED"
        async with self._pool.acquire() as conn, conn.transaction():
            current = await locked_payment(conn, pid)
            if current.gateway_id != gateway_id:
                # A gateway may only report on payments it was given (checked before the
                # event is recorded: another gateway's ids are not this one's).
                raise NotFound("payment")
            fresh = await conn.fetchval(
                "INSERT INTO payments.callback_events"
                " (event_id, gateway_id, payment_id, outcome) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (gateway_id, event_id) DO NOTHING RETURNING true",
                event_id,
                gateway_id,
                pid,
                outcome,
            )
            if not fresh:
                return AppliedResult(current, duplicate=True)
            change = current.apply_result(
                gateway_id,
                approved=approved,
                failure_code=failure_code,
                failure_message=failure_message,
                gateway_reference=gateway_reference,
                now=now,
            )
            if not change.changed:
                return AppliedResult(current, duplicate=True)
            return AppliedResult(await save(conn, change), duplicate=False)


class PostgresSweeper:
    """The janitor's queries; each claims rows with SKIP LOCKED so janitors never collide."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def expire_due(
        self, now: datetime, *, pending_ttl_s: int, verification_ttl_s: int, limit: int
    ) -> list[PaymentView]:
        """PENDING too long -> EXPIRED; an unanswered step-up challenge past its time ->
        DENIED (verification_expired); verified but never dispatched -> EXPIRED."""
        pending_before = now - timedelta(seconds=pending_ttl_s)
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {PAYMENT_COLUMNS} FROM payments.payments"  # noqa: S608 - constant
                " WHERE (status = 'PENDING' AND create_time < $1)"
                "    OR (status = 'REQUIRES_VERIFICATION' AND NOT verified AND update_time < $2)"
                "    OR (status = 'REQUIRES_VERIFICATION' AND verified AND update_time < $1)"
                " ORDER BY update_time LIMIT $3 FOR UPDATE SKIP LOCKED",
                pending_before,
                now - timedelta(seconds=verification_ttl_s),
                limit,
            )
            ended = []
            for row in rows:
                current = view_from_row(row)
                if current.awaiting_verification:
                    await conn.execute(
                        "UPDATE payments.verifications SET outcome = 'EXPIRED', answer_time = $2"
                        " WHERE payment_id = $1 AND outcome IS NULL",
                        uuid.UUID(current.payment_id),
                        now,
                    )
                ended.append(await save(conn, current.expire(now)))
            return ended

    async def claim_timeouts(
        self, now: datetime, *, attempts_max: int, limit: int
    ) -> tuple[list[DispatchRecord], list[PaymentView]]:
        """(re-dispatches with attempt + 1, payments failed with gateway_timeout)."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {payment_columns('p')}, d.gateway_id, d.attempt"  # noqa: S608
                " FROM payments.payments p JOIN payments.dispatches d ON d.payment_id = p.id"
                " WHERE p.status = 'PROCESSING' AND d.callback_deadline < $1"
                " ORDER BY d.callback_deadline LIMIT $2 FOR UPDATE OF p, d SKIP LOCKED",
                now,
                limit,
            )
            redispatch: list[DispatchRecord] = []
            timed_out: list[PaymentView] = []
            for row in rows:
                # The dispatch record counts the attempts (the payment's copy may predate it).
                current = replace(view_from_row(row), attempt=row["attempt"])
                if current.attempt >= attempts_max:
                    timed_out.append(await save(conn, current.time_out(now)))
                    continue
                gateway_row = await conn.fetchrow(
                    f"SELECT {_GATEWAY_COLUMNS} FROM payments.gateways WHERE id = $1",  # noqa: S608
                    row["gateway_id"],
                )
                gateway = _gateway(gateway_row)
                deadline = now + timedelta(seconds=gateway.callback_timeout_s)
                again = await save(conn, current.redispatch(now), dispatch_deadline=deadline)
                sealed = await vaulted_card(conn, uuid.UUID(again.payment_id))
                redispatch.append(
                    DispatchRecord(again, gateway, again.attempt, deadline, sealed, dispatch=True)
                )
            return redispatch, timed_out

    async def stale_pending(
        self, before: datetime, *, after: StaleCursor | None, limit: int
    ) -> tuple[list[StalePending], StaleCursor | None]:
        """PENDING payments last changed before ``before`` (a PENDING payment's update
        time is its creation time), oldest first, with their published creation event."""
        cursor = after or _CURSOR_START
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, create_time, update_time FROM payments.payments"
                " WHERE status = 'PENDING' AND update_time < $1 AND (update_time, id) > ($2, $3)"
                " ORDER BY update_time, id LIMIT $4",
                before,
                cursor.update_time,
                uuid.UUID(cursor.payment_id),
                limit,
            )
            if not rows:
                return [], None
            # One look-up for the whole page (outbox_created_by_payment_idx).
            events = await conn.fetch(
                "SELECT message_key, event_id, payload FROM payments.outbox"
                " WHERE message_key = ANY($1::text[]) AND event_type = 'payment.created'"
                " AND topic = 'payments.events' AND sent_time IS NOT NULL",
                [str(row["id"]) for row in rows],
            )
        by_payment = {e["message_key"]: e for e in events}
        found = []
        for row in rows:
            event = by_payment.get(str(row["id"]))
            found.append(
                StalePending(
                    payment_id=str(row["id"]),
                    create_time=row["create_time"],
                    event_id=None if event is None else str(event["event_id"]),
                    event=None if event is None else bytes(event["payload"]),
                )
            )
        last = rows[-1]
        next_cursor = (
            StaleCursor(last["update_time"], str(last["id"])) if len(rows) == limit else None
        )
        return found, next_cursor
