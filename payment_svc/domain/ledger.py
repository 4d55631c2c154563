"""The ledger's posting rules: what a payment's final status does to the books.

Pure functions from a payment in its final status to a :class:`Settlement`: what
happens to its hold (if it has one) and the balanced journal entry it posts (if any).
Accounts are named by role — the payment's user's WALLET in its currency, EXTERNAL (the
card networks: money entering or leaving payrail) and MERCHANTS (what payrail owes
merchants) — and the adapter resolves them to rows. A hold never moves money: it only
reserves a wallet's available balance until the payment settles (POST: the entry moves
the money) or ends otherwise (RELEASE).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from payment_svc.domain.payment import Payment
from payment_svc.domain.status import FundingSource, PaymentKind, PaymentStatus


class AccountRole(enum.StrEnum):
    WALLET = "WALLET"  # the payment's user's wallet in the payment's currency
    EXTERNAL = "EXTERNAL"
    MERCHANTS = "MERCHANTS"


class HoldAction(enum.Enum):
    NONE = "NONE"  # the payment reserved nothing
    POST = "POST"  # the reservation becomes the entry's debit of the wallet
    RELEASE = "RELEASE"  # the reservation is returned to the available balance


@dataclass(frozen=True)
class Posting:
    role: AccountRole
    amount_minor: int  # negative: debit (money leaves the account); positive: credit


@dataclass(frozen=True)
class JournalEntry:
    """Postings in one currency that sum to zero, each account at most once."""

    description: str
    currency_code: str
    postings: tuple[Posting, ...]

    def __post_init__(self) -> None:
        if sum(p.amount_minor for p in self.postings) != 0:
            raise ValueError("a journal entry must sum to zero")
        roles = [p.role for p in self.postings]
        if len(set(roles)) != len(roles):
            raise ValueError("a journal entry posts to each account at most once")
        if any(p.amount_minor == 0 for p in self.postings):
            raise ValueError("a posting moves money")


@dataclass(frozen=True)
class Settlement:
    hold: HoldAction
    entry: JournalEntry | None


NOTHING = Settlement(HoldAction.NONE, None)


def _transfer(
    description: str, payment: Payment, source: AccountRole, to: AccountRole
) -> JournalEntry:
    amount = payment.amount.amount_minor
    return JournalEntry(
        description,
        payment.amount.currency_code,
        (Posting(source, -amount), Posting(to, amount)),
    )


def settlement_for(payment: Payment) -> Settlement:
    """What ``payment``'s final status does to the books (nothing before it is final)."""
    if not payment.is_final:
        return NOTHING
    if payment.status is not PaymentStatus.COMPLETED:
        # Failed, denied, canceled or expired: whatever was reserved is free again.
        return Settlement(
            HoldAction.RELEASE if payment.holds_wallet_funds else HoldAction.NONE, None
        )
    if payment.kind is PaymentKind.DEPOSIT:
        return Settlement(
            HoldAction.NONE,
            _transfer("deposit", payment, AccountRole.EXTERNAL, AccountRole.WALLET),
        )
    if payment.kind is PaymentKind.WITHDRAWAL:
        return Settlement(
            HoldAction.POST,
            _transfer("withdrawal", payment, AccountRole.WALLET, AccountRole.EXTERNAL),
        )
    if payment.funding_source is FundingSource.WALLET:
        return Settlement(
            HoldAction.POST,
            _transfer("purchase", payment, AccountRole.WALLET, AccountRole.MERCHANTS),
        )
    return Settlement(
        HoldAction.NONE,
        _transfer("card purchase", payment, AccountRole.EXTERNAL, AccountRole.MERCHANTS),
    )


__all__ = [
    "NOTHING",
    "AccountRole",
    "HoldAction",
    "JournalEntry",
    "Posting",
    "Settlement",
    "settlement_for",
]
