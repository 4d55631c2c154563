"""What the payment use cases need from the outside world; adapters/ implements it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from payment_svc.domain.payment import Payment
from payment_svc.domain.status import PaymentKind, PaymentStatus
from payment_svc.vault import SealedCvc, SealedPan

# The Payment aggregate is what the use cases read and write; "view" is its old name here.
PaymentView = Payment


@dataclass(frozen=True)
class BalanceView:
    currency_code: str
    available_minor: int
    held_minor: int


@dataclass(frozen=True)
class NewPayment:
    """Everything one CreatePayment transaction writes."""

    payment: PaymentView
    # The client's key and the request fingerprint as stored: keyed digests
    # (domain/idempotency.py), never the text the client sent.
    idempotency_key: str
    request_hash: str
    sealed_pan: SealedPan | None
    card_fingerprint: str | None
    # Wallet funds to reserve (withdrawals, wallet-funded purchases).
    hold_minor: int


@dataclass(frozen=True)
class ExistingKey:
    """The idempotency key was used before: by this payment, for this request hash."""

    payment_id: str
    request_hash: str


@dataclass(frozen=True)
class PageCursor:
    """Where the previous page ended (newest-first order)."""

    create_time: datetime
    payment_id: str


class PaymentRepository(Protocol):
    async def create(self, new: NewPayment) -> PaymentView | ExistingKey:
        """Write payment, vaulted card, hold and outbox row in one transaction, or, when
        the key exists, write nothing and return it. Raises InsufficientFunds."""

    async def get(self, user_id: str, payment_id: str) -> PaymentView | None: ...

    async def key_exists(self, user_id: str, idempotency_key: str) -> bool:
        """Whether this user already used this idempotency key (its stored digest)."""

    async def list(
        self,
        user_id: str,
        *,
        limit: int,
        after: PageCursor | None,
        status: PaymentStatus | None,
        kind: PaymentKind | None,
    ) -> Sequence[PaymentView]: ...

    async def cancel(self, user_id: str, payment_id: str, now: datetime) -> PaymentView:
        """Cancel before dispatch; NotFound or InvalidTransition otherwise."""

    async def balances(self, user_id: str, currency_code: str | None) -> Sequence[BalanceView]: ...


class Admission(Protocol):
    def admit(self) -> None:
        """Raise ProcessingBacklog while new payments must wait for the pipeline."""


class PaymentCache(Protocol):
    """Cache-aside for GetPayment, written through on every status change; every method
    degrades to a no-op when Redis is down."""

    async def get(self, payment_id: str) -> PaymentView | None: ...

    async def put(self, view: PaymentView) -> None:
        """Store unless a copy of the same or a newer version is cached."""

    async def forget(self, payment_id: str) -> None:
        """Drop the cached copy (a change that kept the version, e.g. a re-dispatch)."""

    async def put_many(self, views: Sequence[PaymentView]) -> None:
        """:meth:`put` for many payments at once."""


class CvcStore(Protocol):
    """Short-lived sealed CVCs for the gateway dispatch; never PostgreSQL or Kafka."""

    async def put(self, payment_id: str, sealed: SealedCvc) -> None: ...


class ChangeWatcher(Protocol):
    def watch(self, payment_id: str) -> AbstractAsyncContextManager[asyncio.Queue[int]]:
        """While open, the queue receives a version each time the payment changes."""
