"""Double-entry ledger postings, inside the caller's transaction.

Every journal entry's postings sum to zero per currency. Wallets belong to users; the
EXTERNAL account stands for the card networks (money entering or leaving payrail), and
MERCHANTS for what payrail owes merchants. A hold never moves money: it only reserves a
wallet's available balance until the payment settles (posted) or fails (released).
"""

from __future__ import annotations

import uuid

import asyncpg

from payment_svc.adapters.postgres import release_hold, wallet_account_for_update
from payment_svc.domain.status import FundingSource, PaymentKind, PaymentStatus
from payment_svc.service.ports import PaymentView

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


async def settle(conn: asyncpg.Connection, view: PaymentView) -> None:
    """Post the ledger for a payment that just became COMPLETED or FAILED."""
    payment_id = uuid.UUID(view.payment_id)
    if view.status is not PaymentStatus.COMPLETED:
        await release_hold(conn, payment_id)
        return
    amount = view.amount.amount_minor
    currency = view.amount.currency_code
    user_id = uuid.UUID(view.user_id)
    external = await system_account(conn, "EXTERNAL", currency)
    if view.kind is PaymentKind.DEPOSIT:
        wallet = (await wallet_account_for_update(conn, user_id, currency))["id"]
        await post_entry(conn, payment_id, "deposit", [(external, -amount), (wallet, amount)])
        return
    wallet_funded = view.kind is PaymentKind.WITHDRAWAL or (
        view.funding_source is FundingSource.WALLET
    )
    if wallet_funded:
        hold = await conn.fetchrow(
            "UPDATE payments.holds SET status = 'POSTED', update_time = now()"
            " WHERE payment_id = $1 AND status = 'ACTIVE' RETURNING account_id, amount_minor",
            payment_id,
        )
        if hold is None:
            raise RuntimeError("a wallet-funded payment settled without an active hold")
        await conn.execute(
            "UPDATE payments.ledger_accounts SET held_minor = held_minor - $2 WHERE id = $1",
            hold["account_id"],
            hold["amount_minor"],
        )
        counterpart = (
            external
            if view.kind is PaymentKind.WITHDRAWAL
            else await system_account(conn, "MERCHANTS", currency)
        )
        await post_entry(
            conn,
            payment_id,
            view.kind.value.lower(),
            [(hold["account_id"], -amount), (counterpart, amount)],
        )
        return
    merchants = await system_account(conn, "MERCHANTS", currency)
    await post_entry(conn, payment_id, "card purchase", [(external, -amount), (merchants, amount)])
