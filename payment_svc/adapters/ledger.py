"""Double-entry ledger postings, inside the caller's transaction.

The rules — which hold is posted or released, which accounts an entry debits and
credits — are payment_svc.domain.ledger's; this module resolves account roles to rows
(creating system accounts and wallets on first use) and writes entries and balances.
Every journal entry's postings sum to zero per currency.
"""

from __future__ import annotations

import uuid

import asyncpg

from payment_svc.adapters.postgres import release_hold, wallet_account_for_update
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

# A journal entry with its postings and the balances they move, in one round trip.
_POST_ENTRY = (
    "WITH entry AS (INSERT INTO payments.journal_entries (payment_id, description)"
    " VALUES ($1, $2) RETURNING id),"
    " posted AS (INSERT INTO payments.postings (entry_id, account_id, amount_minor)"
    " SELECT entry.id, p.account_id, p.amount_minor"
    " FROM entry, unnest($3::bigint[], $4::bigint[]) AS p(account_id, amount_minor))"
    " UPDATE payments.ledger_accounts AS a SET balance_minor = a.balance_minor + p.amount_minor"
    " FROM unnest($3::bigint[], $4::bigint[]) AS p(account_id, amount_minor)"
    " WHERE a.id = p.account_id"
)


async def system_account(conn: asyncpg.Connection, purpose: str, currency_code: str) -> int:
    account_id: int | None = await conn.fetchval(_SYSTEM_ACCOUNT, purpose, currency_code)
    if account_id is None:
        # Another transaction created it while this statement waited on the conflict:
        # committed now, but after this statement's snapshot. A new statement sees it.
        account_id = await conn.fetchval(_SYSTEM_ACCOUNT_FIND, purpose, currency_code)
    if account_id is None:
        raise RuntimeError(f"the {purpose} {currency_code} ledger account cannot be found")
    return account_id


async def post_entry(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    description: str,
    postings: list[tuple[int, int]],
) -> None:
    """One journal entry; refuses postings that do not sum to zero or that touch one
    account twice (one UPDATE moves each account once)."""
    if sum(amount for _, amount in postings) != 0:
        raise ValueError("a journal entry must sum to zero")
    accounts = [account_id for account_id, _ in postings]
    if len(set(accounts)) != len(accounts):
        raise ValueError("a journal entry posts to each account at most once")
    await conn.execute(
        _POST_ENTRY, payment_id, description, accounts, [amount for _, amount in postings]
    )


async def _post_hold(conn: asyncpg.Connection, payment_id: uuid.UUID) -> int:
    """Mark the payment's active hold posted and take it off the held funds; the wallet
    account it reserved (whose debit the journal entry now makes)."""
    hold = await conn.fetchrow(
        "WITH posted AS (UPDATE payments.holds SET status = 'POSTED', update_time = now()"
        " WHERE payment_id = $1 AND status = 'ACTIVE' RETURNING account_id, amount_minor)"
        " UPDATE payments.ledger_accounts AS a SET held_minor = a.held_minor - posted.amount_minor"
        " FROM posted WHERE a.id = posted.account_id RETURNING a.id",
        payment_id,
    )
    if hold is None:
        raise RuntimeError("a wallet-funded payment settled without an active hold")
    account_id: int = hold["id"]
    return account_id


async def settle(conn: asyncpg.Connection, payment: Payment) -> None:
    """Apply the posting rules (payment_svc.domain.ledger) for a payment that just became
    final: its hold posted or released, its journal entry with the balances it moves."""
    settlement = settlement_for(payment)
    payment_id = uuid.UUID(payment.payment_id)
    wallet: int | None = None
    if settlement.hold is HoldAction.RELEASE:
        await release_hold(conn, payment_id)
    elif settlement.hold is HoldAction.POST:
        wallet = await _post_hold(conn, payment_id)
    entry = settlement.entry
    if entry is None:
        return
    accounts: dict[AccountRole, int] = {}
    for posting in entry.postings:
        if posting.role is AccountRole.WALLET:
            if wallet is None:
                row = await wallet_account_for_update(
                    conn, uuid.UUID(payment.user_id), entry.currency_code
                )
                wallet = int(row["id"])
            accounts[posting.role] = wallet
        else:
            accounts[posting.role] = await system_account(
                conn, posting.role.value, entry.currency_code
            )
    await post_entry(
        conn,
        payment_id,
        entry.description,
        [(accounts[p.role], p.amount_minor) for p in entry.postings],
    )
