"""A batch of gateway results applied in one PostgreSQL transaction (``ReportResults``).

The rules are those of one result: the :class:`Payment` aggregate's ``apply_result``
(only the gateway a payment was dispatched to may report on it; the same outcome again
for a final payment changes nothing; any other outcome for a payment that is not
PROCESSING is a conflict; else COMPLETED or FAILED), and an ``event_id`` already
recorded for the gateway changes nothing. What differs is the shape of the work, in
round trips for a batch of n results:

1. one statement locks every payment the batch names, **in sorted id order** (two
   batches sharing payments wait for each other instead of deadlocking);
2. one statement records the event ids (``unnest``) of the results that name a payment
   of this gateway, and answers which of them are new;
3. every result that applies, together: the ledger (holds ended, wallets found, the
   accounts locked in id order, the entries posted) and the status changes with their
   outbox rows, in a fixed number of statements whatever the batch's size
   (:func:`payment_svc.adapters.processing.save_many`);
4. rarely, one statement forgets the event ids of results that turned out to conflict,
   so a conflicting result records nothing, exactly as when it is reported alone.

Results apply in payload order, so several results for one payment see each other's
effects. Within one batch an ``event_id`` counts once: a later result with an event id
an earlier one carried changes nothing (DUPLICATE when the earlier one was recorded,
otherwise the earlier one's disposition). The account rows the ledger moves are not
locked in a global order, so two concurrent transactions may deadlock on them; then
PostgreSQL aborts one, and the whole batch is tried again here (a few times, then the
call answers UNAVAILABLE and the gateway retries it).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from payment_svc.adapters.postgres import PAYMENT_COLUMNS, view_from_row
from payment_svc.adapters.processing import save_many
from payment_svc.domain.errors import ResultConflict
from payment_svc.domain.payment import Change, Payment
from payment_svc.service.results import BatchResult, Disposition, ResultOutcome
from payrail_common import tracing

# Every payment the batch names, locked in id order.
_LOCK_PAYMENTS = (
    f"SELECT {PAYMENT_COLUMNS} FROM payments.payments"  # noqa: S608 - constant
    " WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"
)
# The replay guard for the whole batch: which of these event ids are new for the gateway
# (inserted in event id order, so concurrent batches meet the unique index in one order).
_RECORD_EVENTS = (
    "INSERT INTO payments.callback_events (event_id, gateway_id, payment_id, outcome)"
    " SELECT e.event_id, $1, e.payment_id, e.outcome"
    " FROM unnest($2::text[], $3::uuid[], $4::text[]) AS e(event_id, payment_id, outcome)"
    " ORDER BY e.event_id"
    " ON CONFLICT (gateway_id, event_id) DO NOTHING RETURNING event_id"
)
# Results that conflicted record nothing (their event ids were new a moment ago).
_FORGET_EVENTS = (
    "DELETE FROM payments.callback_events WHERE gateway_id = $1 AND event_id = ANY($2::text[])"
)

# A deadlock or serialization failure aborts the transaction: run the batch again.
_ATTEMPTS_MAX = 3
_RETRY_BACKOFF_S = 0.05
_RETRIED = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _key(payment_id: str) -> str:
    """The payment id as payment_svc writes it ("" when it is no payment id at all)."""
    pid = _uuid(payment_id)
    return "" if pid is None else str(pid)


@dataclass
class _Batch:
    """One batch's working state inside its transaction."""

    gateway_id: str
    # The payments of this gateway the batch names, as they stand after the results so far.
    payments: dict[str, Payment] = field(default_factory=dict)
    # Event ids new to the gateway (recorded by step 2) and not yet claimed by a result.
    unclaimed: set[str] = field(default_factory=set)
    # The first outcome of each event id in the batch.
    first: dict[str, ResultOutcome] = field(default_factory=dict)
    # The changes the batch made, saved together at its end.
    changes: list[tuple[Change, str | None]] = field(default_factory=list)


class PostgresResultsRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def apply_results(
        self, gateway_id: str, results: Sequence[BatchResult], now: datetime
    ) -> list[ResultOutcome]:
        for attempt in range(1, _ATTEMPTS_MAX + 1):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await self._apply(conn, gateway_id, results, now)
            except _RETRIED:
                if attempt == _ATTEMPTS_MAX:
                    raise
                await asyncio.sleep(random.uniform(0, _RETRY_BACKOFF_S * attempt))  # noqa: S311
        raise AssertionError("unreachable")

    async def _apply(
        self,
        conn: asyncpg.Connection,
        gateway_id: str,
        results: Sequence[BatchResult],
        now: datetime,
    ) -> list[ResultOutcome]:
        batch = _Batch(gateway_id)
        ids = sorted({pid for r in results if (pid := _uuid(r.payment_id)) is not None})
        for row in await conn.fetch(_LOCK_PAYMENTS, ids):
            payment = view_from_row(row)
            # A gateway may only report on payments it was given (checked before any
            # event is recorded: another gateway's ids are not this one's).
            if payment.gateway_id == gateway_id:
                batch.payments[payment.payment_id] = payment
        await self._record_events(conn, batch, results)
        outcomes = [await self._apply_one(conn, batch, result, now) for result in results]
        # Every applied result's ledger entry and status change, in a fixed number of
        # statements for the batch (each payment changes at most once: then it is final).
        await save_many(conn, batch.changes)
        if batch.unclaimed:
            await conn.execute(_FORGET_EVENTS, gateway_id, sorted(batch.unclaimed))
        return outcomes

    async def _record_events(
        self, conn: asyncpg.Connection, batch: _Batch, results: Sequence[BatchResult]
    ) -> None:
        """Step 2: the first result of each event id that names a payment of the gateway."""
        candidates: dict[str, BatchResult] = {}
        for result in results:
            if _key(result.payment_id) in batch.payments and result.event_id not in candidates:
                candidates[result.event_id] = result
        if not candidates:
            return
        rows = await conn.fetch(
            _RECORD_EVENTS,
            batch.gateway_id,
            list(candidates),
            [uuid.UUID(r.payment_id) for r in candidates.values()],
            ["APPROVED" if r.approved else "DECLINED" for r in candidates.values()],
        )
        batch.unclaimed = {row["event_id"] for row in rows}

    async def _apply_one(
        self, conn: asyncpg.Connection, batch: _Batch, result: BatchResult, now: datetime
    ) -> ResultOutcome:
        earlier = batch.first.get(result.event_id)
        if earlier is not None:
            # An event id counts once per batch: this result changes nothing.
            recorded = earlier.disposition in (Disposition.APPLIED, Disposition.DUPLICATE)
            current = batch.payments.get(_key(result.payment_id))
            return ResultOutcome(
                result,
                Disposition.DUPLICATE if recorded else earlier.disposition,
                current,
                earlier.conflict_status if not recorded else "",
            )
        outcome = await self._first_of_event(conn, batch, result, now)
        batch.first[result.event_id] = outcome
        return outcome

    async def _first_of_event(
        self, conn: asyncpg.Connection, batch: _Batch, result: BatchResult, now: datetime
    ) -> ResultOutcome:
        current = batch.payments.get(_key(result.payment_id))
        if current is None:
            return ResultOutcome(result, Disposition.NOT_FOUND, None)
        if result.event_id not in batch.unclaimed:
            return ResultOutcome(result, Disposition.DUPLICATE, current)  # applied before
        try:
            change = current.apply_result(
                batch.gateway_id,
                approved=result.approved,
                failure_code=result.failure_code,
                failure_message=result.failure_message,
                gateway_reference=result.gateway_reference,
                now=now,
            )
        except ResultConflict as conflict:
            # Left unclaimed: step 4 forgets its event id.
            return ResultOutcome(result, Disposition.CONFLICT, current, conflict.current)
        batch.unclaimed.discard(result.event_id)
        if not change.changed:
            return ResultOutcome(result, Disposition.DUPLICATE, current)
        # Saved with the batch; its outbox row carries the request id of the gateway
        # request it answers.
        batch.changes.append((change, result.request_id or tracing.current()))
        updated = change.payment
        batch.payments[updated.payment_id] = updated
        return ResultOutcome(result, Disposition.APPLIED, updated)


__all__ = ["PostgresResultsRepository"]
