"""Ports and values of the processing use cases (dispatch, results, failures)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from payment_svc.service.ports import PaymentView
from payment_svc.vault import SealedPan


@dataclass(frozen=True)
class GatewayView:
    gateway_id: str
    wire_format: str
    topic: str
    kinds: tuple[str, ...]
    currency_codes: tuple[str, ...]
    priority: int
    callback_timeout_s: int
    public_key: bytes


@dataclass(frozen=True)
class DispatchRecord:
    """What BeginDispatch hands back: dispatch=False means nothing is to be sent."""

    payment: PaymentView
    gateway: GatewayView | None
    attempt: int
    callback_deadline: datetime | None
    sealed_pan: SealedPan | None
    dispatch: bool
    # False when this dispatch had been begun before (a redelivery): nothing changed.
    changed: bool = True


@dataclass(frozen=True)
class AppliedResult:
    payment: PaymentView
    # True when this event id, or this same outcome, had already been applied.
    duplicate: bool


@dataclass(frozen=True)
class StaleCursor:
    """Where a listing of stale PENDING payments stopped: (update time, payment id)."""

    update_time: datetime
    payment_id: str


@dataclass(frozen=True)
class StalePending:
    """A payment PENDING for too long and the PaymentCreated event that announced it,
    as the outbox published it; ``event`` is None while the outbox has not sent it yet."""

    payment_id: str
    create_time: datetime
    event_id: str | None
    event: bytes | None


@dataclass(frozen=True)
class DispatchItem:
    """One dispatch of a batch: the payment, the gateway routing chose, and the request
    the dispatch continues (its log lines and outbox row carry the id)."""

    payment_id: str
    gateway_id: str
    request_id: str | None = None


class ProcessingRepository(Protocol):
    async def list_gateways(self) -> Sequence[GatewayView]: ...

    async def gateway_callback_auth(self, gateway_id: str) -> tuple[str, Sequence[bytes]] | None:
        """(wire format, active callback secrets) of an enabled gateway that has at least
        one active secret; None otherwise."""

    async def begin_dispatch(
        self, payment_id: str, gateway_id: str, now: datetime
    ) -> DispatchRecord: ...

    async def begin_dispatches(
        self, items: Sequence[DispatchItem], now: datetime
    ) -> list[DispatchRecord | None]:
        """Many at once, one transaction; None where the payment or gateway is unknown."""

    async def fail(
        self, payment_id: str, failure_code: str, failure_message: str, now: datetime
    ) -> PaymentView: ...

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
    ) -> AppliedResult: ...


class Sweeper(Protocol):
    async def expire_due(
        self, now: datetime, *, pending_ttl_s: int, verification_ttl_s: int, limit: int
    ) -> list[PaymentView]: ...

    async def claim_timeouts(
        self, now: datetime, *, attempts_max: int, limit: int
    ) -> tuple[list[DispatchRecord], list[PaymentView]]: ...

    async def stale_pending(
        self, before: datetime, *, after: StaleCursor | None, limit: int
    ) -> tuple[list[StalePending], StaleCursor | None]:
        """Up to ``limit`` payments PENDING since before ``before``, oldest first, after
        ``after``; and the cursor of the next page (None after the last)."""
