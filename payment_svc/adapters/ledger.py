"""Double-entry ledger postings, inside the caller's transaction.

The rules — which hold is posted or released, which accounts an entry debits and
credits — are payment_svc.domain.ledger's; this module resolves account roles to rows
(creating system accounts and wallets on first use) and writes entries and balances.
Every journal entry's postings sum to zero per currency.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from payment_svc.domain.ledger import AccountRole, HoldAction, settlement_for
from payment_svc.domain.payment import Payment

_SYSTEM_ACCOUNT_FIND = (
    "SELECT id FROM payments.ledger_accounts"
    " WHERE owner_user_id IS NULL AND purpose = $1 AND currency_code = $2"
)
# The system account's id, created on first use, in one round trip: the INSERT returns a
# new row, the SELECT finds an existing one (a statement's snapshot never shows both).
_SYSTEM_ACCOUNT_CREATE = (
    "WITH created AS (INSERT INTO payments.ledger_accounts (owner_user_id, purpose,"
    " currency_code) VALUES (NULL, $1, $2) ON CONFLICT DO NOTHING RETURNING id)"
    " SELECT id FROM created UNION ALL "
)
_SYSTEM_ACCOUNT = _SYSTEM_ACCOUNT_CREATE + _SYSTEM_ACCOUNT_FIND


async def system_account(conn: asyncpg.Connection, purpose: str, currency_code: str) -> int:
    account_id: int | None = await conn.fetchval(_SYSTEM_ACCOUNT, purpose, currency_code)
    if account_id is None:
        # Another transaction created it while this statement waited on the conflict:
        # committed now, but after this statement's snapshot. A new statement sees it.
        account_id = await conn.fetchval(_SYSTEM_ACCOUNT_FIND, purpose, currency_code)
    if account_id is None:
        raise RuntimeError(f"the {purpose} {currency_code} ledger account cannot be found")
    return account_id


# ---------------------------------------------------------------- many at once

# The system accounts (EXTERNAL, MERCHANTS) of some currencies, created on first use.
_SYSTEM_ACCOUNTS = (
    "WITH wanted AS (SELECT * FROM unnest($1::text[], $2::text[]) AS w(purpose, currency)),"
    " created AS (INSERT INTO payments.ledger_accounts (owner_user_id, purpose, currency_code)"
    " SELECT NULL, purpose, currency FROM wanted ORDER BY purpose, currency"
    " ON CONFLICT DO NOTHING RETURNING id, purpose, currency_code)"
    " SELECT id, purpose, currency_code FROM created UNION"
    " SELECT a.id, a.purpose, a.currency_code FROM payments.ledger_accounts a"
    " JOIN wanted w ON a.purpose = w.purpose AND a.currency_code = w.currency"
    " WHERE a.owner_user_id IS NULL"
)

# Holds ended by a batch, and the held funds they free, in one statement: which wallet
# each posted hold reserved (the entry's debit).
_END_HOLDS = (
    "WITH ended AS (UPDATE payments.holds SET status = $2, update_time = now()"
    " WHERE payment_id = ANY($1::uuid[]) AND status = 'ACTIVE'"
    " RETURNING payment_id, account_id, amount_minor),"
    " freed AS (UPDATE payments.ledger_accounts AS a SET held_minor = a.held_minor - f.total"
    " FROM (SELECT account_id, sum(amount_minor) AS total FROM ended GROUP BY account_id) f"
    " WHERE a.id = f.account_id)"
    " SELECT payment_id, account_id FROM ended"
)
# Users' wallets in their currencies, created on first use.
_WALLETS = (
    "WITH wanted AS (SELECT * FROM unnest($1::uuid[], $2::text[]) AS w(owner, currency)),"
    " created AS (INSERT INTO payments.ledger_accounts (owner_user_id, purpose, currency_code)"
    " SELECT owner, 'WALLET', currency FROM wanted ORDER BY owner, currency"
    " ON CONFLICT DO NOTHING RETURNING id, owner_user_id, currency_code)"
    " SELECT id, owner_user_id, currency_code FROM created UNION"
    " SELECT a.id, a.owner_user_id, a.currency_code FROM payments.ledger_accounts a"
    " JOIN wanted w ON a.owner_user_id = w.owner AND a.currency_code = w.currency"
    " WHERE a.purpose = 'WALLET'"
)
# The accounts an entry batch moves, locked in id order: concurrent batches queue
# instead of deadlocking.
_LOCK_ACCOUNTS = (
    "SELECT count(*) FROM (SELECT id FROM payments.ledger_accounts"
    " WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE) AS locked"
)
# Many journal entries with their postings and the balances they move, in one statement
# (one entry per payment; balances moved once per account with the batch's sum).
_POST_ENTRIES = (
    "WITH entry AS (INSERT INTO payments.journal_entries (payment_id, description)"
    " SELECT * FROM unnest($1::uuid[], $2::text[]) RETURNING id, payment_id),"
    " posted AS (INSERT INTO payments.postings (entry_id, account_id, amount_minor)"
    " SELECT entry.id, p.account_id, p.amount_minor"
    " FROM unnest($3::uuid[], $4::bigint[], $5::bigint[]) AS p(payment_id, account_id,"
    " amount_minor) JOIN entry ON entry.payment_id = p.payment_id)"
    " UPDATE payments.ledger_accounts AS a SET balance_minor = a.balance_minor + s.total"
    " FROM (SELECT account_id, sum(amount_minor) AS total"
    " FROM unnest($4::bigint[], $5::bigint[]) AS m(account_id, amount_minor)"
    " GROUP BY account_id) s WHERE a.id = s.account_id"
)


async def _system_accounts(
    conn: asyncpg.Connection, wanted: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """(purpose, currency) -> account id for every wanted system account, in one round
    trip; one another transaction created meanwhile is found by :func:`system_account`
    (a new statement sees it)."""
    rows = await conn.fetch(_SYSTEM_ACCOUNTS, [p for p, _ in wanted], [c for _, c in wanted])
    found = {(r["purpose"], r["currency_code"]): int(r["id"]) for r in rows}
    for purpose, currency in wanted:
        if (purpose, currency) not in found:
            found[(purpose, currency)] = await system_account(conn, purpose, currency)
    return found


async def settle_many(conn: asyncpg.Connection, payments: Sequence[Payment]) -> None:
    """:func:`settle` for many payments that just became final (each once), in a fixed
    number of statements whatever their number: holds released, holds posted, wallets
    found or created, accounts locked in id order, entries posted."""
    settlements = [(p, settlement_for(p)) for p in payments]
    released = [uuid.UUID(p.payment_id) for p, s in settlements if s.hold is HoldAction.RELEASE]
    posted = [uuid.UUID(p.payment_id) for p, s in settlements if s.hold is HoldAction.POST]
    if released:
        await conn.execute(_END_HOLDS, released, "RELEASED")
    held_wallet: dict[str, int] = {}
    if posted:
        rows = await conn.fetch(_END_HOLDS, posted, "POSTED")
        held_wallet = {str(row["payment_id"]): int(row["account_id"]) for row in rows}
        if len(held_wallet) != len(posted):
            raise RuntimeError("a wallet-funded payment settled without an active hold")
    entries = [(p, s.entry) for p, s in settlements if s.entry is not None]
    if not entries:
        return
    wanted = sorted(
        {
            (p.user_id, entry.currency_code)
            for p, entry in entries
            if p.payment_id not in held_wallet
            and any(x.role is AccountRole.WALLET for x in entry.postings)
        }
    )
    wallets: dict[tuple[str, str], int] = {}
    if wanted:
        rows = await conn.fetch(_WALLETS, [uuid.UUID(u) for u, _ in wanted], [c for _, c in wanted])
        wallets = {(str(r["owner_user_id"]), r["currency_code"]): int(r["id"]) for r in rows}
    systems = await _system_accounts(
        conn,
        sorted(
            {
                (x.role.value, entry.currency_code)
                for _, entry in entries
                for x in entry.postings
                if x.role is not AccountRole.WALLET
            }
        ),
    )
    payment_ids: list[uuid.UUID] = []
    descriptions: list[str] = []
    posting_payments: list[uuid.UUID] = []
    accounts: list[int] = []
    amounts: list[int] = []
    for payment, entry in entries:
        pid = uuid.UUID(payment.payment_id)
        payment_ids.append(pid)
        descriptions.append(entry.description)
        for posting in entry.postings:
            if posting.role is AccountRole.WALLET:
                account = (
                    held_wallet.get(payment.payment_id)
                    or wallets[(payment.user_id, entry.currency_code)]
                )
            else:
                account = systems[(posting.role.value, entry.currency_code)]
            posting_payments.append(pid)
            accounts.append(account)
            amounts.append(posting.amount_minor)
    await conn.execute(_LOCK_ACCOUNTS, sorted(set(accounts)))
    await conn.execute(
        _POST_ENTRIES, payment_ids, descriptions, posting_payments, accounts, amounts
    )


async def settle(conn: asyncpg.Connection, payment: Payment) -> None:
    """Apply the posting rules (payment_svc.domain.ledger) for a payment that just became
    final: its hold posted or released, its journal entry with the balances it moves."""
    await settle_many(conn, [payment])
