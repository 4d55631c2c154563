"""The invariants, read from PostgreSQL and set against the client's record.

Each check returns its violations as short sentences naming the payment (or account,
or entry); an invariant holds when its list is empty. Read the schema in
payment_svc/migrations/*.sql for what the tables mean.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from chaos.client import OpRecord
from payment_svc.domain.idempotency import IdempotencyKeyHasher
from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2 as pb
from payrail_common.keys import read_secret_file

TERMINAL = {"COMPLETED", "FAILED", "DENIED", "CANCELED", "EXPIRED"}
IN_FLIGHT = {"PENDING", "REQUIRES_VERIFICATION", "PROCESSING"}

_PAYMENTS = """
SELECT p.id::text AS id, p.user_id::text AS user_id, p.kind, p.status, p.funding_source,
       p.currency_code, p.amount_minor, p.failure_code, k.idempotency_key
FROM payments.payments p
LEFT JOIN payments.idempotency_keys k ON k.payment_id = p.id AND k.user_id = p.user_id
WHERE p.user_id = ANY($1::uuid[])
"""


@dataclass
class Findings:
    """Violations per invariant, in a stable order for the table."""

    violations: dict[str, list[str]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, invariant: str, problems: list[str] | None = None) -> None:
        self.violations.setdefault(invariant, []).extend(problems or [])


async def unfinished(pool: asyncpg.Pool, user_ids: list[str]) -> int:
    """Payments of the run's users not yet in a final state (the drain polls this)."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM payments.payments WHERE user_id = ANY($1::uuid[])"
        " AND status <> ALL($2::text[])",
        user_ids,
        sorted(TERMINAL),
    )
    return count


# payment_svc stores a client's idempotency key only as a keyed digest: the check digests
# the client's keys the same way. Loaded by fetch_payments, used by check_client_record.
_key_hasher: IdempotencyKeyHasher | None = None


async def _load_key_hasher(pool: asyncpg.Pool) -> IdempotencyKeyHasher:
    """From the stack's own key file: the chaos stack keeps PostgreSQL's data in
    <data dir>/pg and payment_svc's keys in <data dir>/keys (chaos/stack.py)."""
    pg_data = Path(await pool.fetchval("SHOW data_directory"))
    path = pg_data.parent / "keys" / "vault-fingerprint.key"
    return IdempotencyKeyHasher.from_root(read_secret_file(path))


async def fetch_payments(pool: asyncpg.Pool, user_ids: list[str]) -> dict[str, dict[str, Any]]:
    global _key_hasher
    _key_hasher = await _load_key_hasher(pool)
    return {r["id"]: dict(r) for r in await pool.fetch(_PAYMENTS, user_ids)}


def _stored_key(user_id: str, key: str) -> str:
    if _key_hasher is None:
        raise RuntimeError("fetch_payments must run before check_client_record")
    return _key_hasher.stored_key(user_id, key)


def check_client_record(
    f: Findings,
    records: list[OpRecord],
    payments: dict[str, dict[str, Any]],
    api_view: dict[str, pb.Payment],
) -> None:
    by_key = {(p["user_id"], p["idempotency_key"]): p for p in payments.values()}
    known = {(r.user_id, _stored_key(r.user_id, r.key)) for r in records}
    exactly_once, told, outcome, final = [], [], [], []
    for rec in records:
        ids = rec.payment_ids
        row = by_key.get((rec.user_id, _stored_key(rec.user_id, rec.key)))
        if len(ids) > 1:
            told.append(f"key {rec.key}: told {len(ids)} different payment ids {sorted(ids)}")
        if rec.accepted and row is None:
            exactly_once.append(f"key {rec.key}: accepted as {sorted(ids)} but not in the database")
            continue
        if row is None:
            f.outcomes["never accepted (" + _last_code(rec) + ")"] += 1
            continue
        if ids and row["id"] not in ids:
            told.append(f"key {rec.key}: told {sorted(ids)}, database has {row['id']}")
        op = rec.op
        if (row["kind"], row["currency_code"], row["amount_minor"]) != (
            op.kind,
            op.currency,
            op.amount_minor,
        ):
            told.append(f"payment {row['id']}: not what key {rec.key} asked for")
        for answer in rec.answers:
            if answer["code"] == "OK" and answer["status"] not in IN_FLIGHT | {row["status"]}:
                told.append(f"payment {row['id']}: told {answer['status']}, final {row['status']}")
        seen = api_view.get(row["id"])
        if seen is None:
            told.append(f"payment {row['id']}: missing from ListPayments")
        else:
            status = pb.PaymentStatus.Name(seen.status).removeprefix("PAYMENT_STATUS_")
            if status != row["status"]:
                told.append(
                    f"payment {row['id']}: ListPayments says {status}, database {row['status']}"
                )
        label = row["status"] + (f"/{row['failure_code']}" if row["failure_code"] else "")
        f.outcomes[label + ("" if rec.accepted else " (never acknowledged)")] += 1
        if row["status"] not in TERMINAL:
            final.append(f"payment {row['id']} ({op.kind} {op.payer}): still {row['status']}")
            continue
        want_status, want_code = op.expected
        if (row["status"], row["failure_code"]) != (want_status, want_code):
            outcome.append(
                f"payment {row['id']} ({op.kind} {op.currency} {op.payer}): {label},"
                f" expected {want_status}{'/' + want_code if want_code else ''}"
            )
    for key, row in by_key.items():
        if key not in known:
            exactly_once.append(
                f"payment {row['id']}: key (stored as {key[1]}) the client never sent"
            )
    f.add("accepted payment exists exactly once per key", exactly_once)
    f.add("every payment final within the drain time", final)
    f.add("outcome matches the test card (no fault-made FAILED/EXPIRED)", outcome)
    f.add("what the client was told agrees with the final state", told)


def _last_code(rec: OpRecord) -> str:
    return str(rec.answers[-1]["code"]) if rec.answers else "no answer"


async def check_ledger(
    f: Findings, pool: asyncpg.Pool, payments: dict[str, dict[str, Any]]
) -> None:
    ids = [uuid.UUID(p) for p in payments]
    entries = Counter(
        {
            str(r["payment_id"]): r["n"]
            for r in await pool.fetch(
                "SELECT payment_id, count(*) AS n FROM payments.journal_entries"
                " WHERE payment_id = ANY($1::uuid[]) GROUP BY payment_id",
                ids,
            )
        }
    )
    settlement = []
    for pid, p in payments.items():
        want = 1 if p["status"] == "COMPLETED" else 0
        if entries[pid] != want:
            settlement.append(f"payment {pid} ({p['status']}): {entries[pid]} journal entries")
    f.add("one settlement entry per settled payment, none for others", settlement)

    rows = await pool.fetch(
        "SELECT e.id, a.currency_code, coalesce(sum(p.amount_minor), 0) AS total, count(p.id) AS n"
        " FROM payments.journal_entries e LEFT JOIN payments.postings p ON p.entry_id = e.id"
        " LEFT JOIN payments.ledger_accounts a ON a.id = p.account_id"
        " GROUP BY e.id, a.currency_code HAVING coalesce(sum(p.amount_minor), 0) <> 0"
        " OR count(p.id) < 2"
    )
    f.add(
        "every journal entry balanced",
        [f"entry {r['id']}: {r['total']} {r['currency_code']}" for r in rows],
    )

    rows = await pool.fetch(
        "SELECT a.id, a.balance_minor, coalesce(sum(p.amount_minor), 0) AS posted"
        " FROM payments.ledger_accounts a LEFT JOIN payments.postings p ON p.account_id = a.id"
        " GROUP BY a.id HAVING a.balance_minor <> coalesce(sum(p.amount_minor), 0)"
    )
    problems = [
        f"account {r['id']}: balance {r['balance_minor']}, postings {r['posted']}" for r in rows
    ]
    rows = await pool.fetch(
        "SELECT a.id, a.held_minor, coalesce(sum(h.amount_minor)"
        " FILTER (WHERE h.status = 'ACTIVE'), 0) AS active"
        " FROM payments.ledger_accounts a LEFT JOIN payments.holds h ON h.account_id = a.id"
        " GROUP BY a.id HAVING a.held_minor <> coalesce(sum(h.amount_minor)"
        " FILTER (WHERE h.status = 'ACTIVE'), 0)"
    )
    problems += [
        f"account {r['id']}: held {r['held_minor']}, active holds {r['active']}" for r in rows
    ]
    f.add("every account balance equals its postings (and holds)", problems)

    rows = await pool.fetch(
        "SELECT id, balance_minor, held_minor FROM payments.ledger_accounts"
        " WHERE purpose = 'WALLET' AND (balance_minor < 0 OR balance_minor - held_minor < 0)"
    )
    f.add(
        "no wallet below zero",
        [f"wallet {r['id']}: {r['balance_minor']} held {r['held_minor']}" for r in rows],
    )

    holds: dict[str, str] = {
        str(r["payment_id"]): r["status"]
        for r in await pool.fetch(
            "SELECT payment_id, status FROM payments.holds WHERE payment_id = ANY($1::uuid[])", ids
        )
    }
    problems = []
    for pid, p in payments.items():
        wallet_funded = p["kind"] == "WITHDRAWAL" or p["funding_source"] == "WALLET"
        hold = holds.get(pid)
        if not wallet_funded:
            if hold is not None:
                problems.append(f"payment {pid}: a hold on a card-funded {p['kind']}")
            continue
        want_hold = {"COMPLETED": "POSTED"}.get(
            p["status"], "RELEASED" if p["status"] in TERMINAL else "ACTIVE"
        )
        if hold != want_hold:
            problems.append(f"payment {pid} ({p['status']}): hold {hold}, expected {want_hold}")
    f.add("holds released for failed/canceled payments (posted for settled)", problems)


async def check_callbacks(
    f: Findings, pool: asyncpg.Pool, payments: dict[str, dict[str, Any]]
) -> None:
    """A result applied twice would announce two terminal transitions for one payment."""
    terminal_events: dict[str, int] = defaultdict(int)
    rows = await pool.fetch(
        "SELECT message_key, payload FROM payments.outbox WHERE topic = 'payments.events'"
        " AND event_type = 'payment.status_changed' AND message_key = ANY($1::text[])",
        list(payments),
    )
    for row in rows:
        event = events_pb2.PaymentEvent.FromString(bytes(row["payload"]))
        status = pb.PaymentStatus.Name(event.status_changed.payment.status)
        if status.removeprefix("PAYMENT_STATUS_") in TERMINAL:
            terminal_events[row["message_key"]] += 1
    problems = []
    for pid, p in payments.items():
        n = terminal_events[pid]
        if n > 1 or (p["status"] in TERMINAL and n != 1):
            problems.append(f"payment {pid} ({p['status']}): {n} terminal status changes recorded")
    f.add("no callback applied twice (one terminal transition per payment)", problems)
    unsent = await pool.fetchval("SELECT count(*) FROM payments.outbox WHERE sent_time IS NULL")
    f.add("outbox fully relayed", [f"{unsent} outbox rows never sent"] if unsent else [])
