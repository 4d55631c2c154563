"""Processing use cases: the registry, dispatch with a sealed card, failures, and
authenticated gateway results with settlement.

The gateway SDK's primitives (signature verification, result decoding, card sealing)
arrive through :class:`GatewayCrypto`, so this module stays free of wire formats.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from payment_svc.domain.errors import (
    CallbackRejected,
    DecryptionFailed,
    ResultConflict,
    ValidationFailed,
)
from payment_svc.service import lifecycle
from payment_svc.service.ports import PaymentCache, PaymentView
from payment_svc.service.processing_ports import (
    AppliedResult,
    DispatchItem,
    DispatchRecord,
    GatewayView,
    ProcessingRepository,
    StaleCursor,
    StalePending,
    Sweeper,
)
from payment_svc.service.results import (
    BatchResult,
    ResultBatches,
    ResultOutcome,
    ResultsRepository,
    authenticate,
)
from payment_svc.vault import CardVault, SealedCvc
from payrail_common import tracing
from payrail_common.fields import FieldViolation

log = logging.getLogger(__name__)

# Dispatches per BeginDispatches call.
DISPATCH_BATCH_MAX = 500


@dataclass(frozen=True)
class DecodedResult:
    event_id: str
    payment_id: str
    approved: bool
    failure_code: str
    failure_message: str
    # The gateway's own reference for the charge ("" when it sent none).
    gateway_reference: str = ""


@dataclass(frozen=True)
class CardPlaintext:
    """The card as sealed for a gateway; exists only between vault and sealing."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str
    holder_name: str

    def __repr__(self) -> str:
        return "CardPlaintext(<redacted>)"


class GatewayCrypto(Protocol):
    def verify(self, payload: bytes, header: str, secrets: Sequence[bytes], now: int) -> None:
        """Raise ValueError (any subclass) with a reason when the signature is not valid."""

    def decode_result(self, wire_format: str, payload: bytes) -> DecodedResult:
        """Raise ValueError when the payload is not a result in that format."""

    def decode_results(self, wire_format: str, payload: bytes) -> Sequence[BatchResult]:
        """Raise ValueError when the payload is not a batch of results in that format."""

    def seal_card(self, public_key: bytes, card: CardPlaintext, payment_id: str) -> bytes: ...


class CvcTaker(Protocol):
    async def take(self, payment_id: str) -> SealedCvc | None:
        """Read and delete: a CVC is used for one dispatch at most."""

    async def take_many(self, payment_ids: Sequence[str]) -> list[SealedCvc | None]:
        """:meth:`take` for many payments at once, in order."""


@dataclass(frozen=True)
class Dispatch:
    record: DispatchRecord
    sealed_card: bytes


@dataclass(frozen=True)
class JanitorPolicy:
    """When payments that wait stop waiting."""

    # PENDING this long (risk checks or routing never happened) -> EXPIRED.
    pending_ttl_s: int = 1800
    # REQUIRES_VERIFICATION this long without an answer from the owner -> DENIED
    # (verification_expired).
    verification_ttl_s: int = 600
    # Dispatches per payment (the first and the re-dispatches) before gateway_timeout.
    dispatch_attempts_max: int = 3


@dataclass(frozen=True)
class SweepResult:
    redispatches: list[Dispatch]
    expired: list[PaymentView]
    timed_out: list[PaymentView]


@dataclass(frozen=True)
class StalePage:
    # Stale PENDING payments whose creation event the outbox has published.
    payments: list[StalePending]
    # Where the next page starts; None after the last page.
    next_cursor: StaleCursor | None


class Processing:
    def __init__(
        self,
        *,
        repository: ProcessingRepository,
        vault: CardVault,
        cvcs: CvcTaker,
        crypto: GatewayCrypto,
        cache: PaymentCache,
        sweeper: Sweeper | None = None,
        janitor: JanitorPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        results: ResultsRepository | None = None,
    ) -> None:
        self._repository = repository
        self._vault = vault
        self._cvcs = cvcs
        self._crypto = crypto
        self._cache = cache
        self._sweeper = sweeper
        self._janitor = janitor or JanitorPolicy()
        self._clock = clock
        # Batches of results (ReportResults), when a repository for them is wired.
        self._batches = (
            None
            if results is None
            else ResultBatches(
                auth=repository, repository=results, crypto=crypto, cache=cache, clock=clock
            )
        )

    async def gateways(self) -> Sequence[GatewayView]:
        return await self._repository.list_gateways()

    async def begin_dispatch(self, payment_id: str, gateway_id: str) -> Dispatch:
        record = await self._repository.begin_dispatch(payment_id, gateway_id, self._clock())
        await self._cache.put(record.payment)
        dispatch = await self._sealed(record)
        if dispatch.record.dispatch and record.changed:
            lifecycle.step("dispatched", dispatch.record.payment)
        return dispatch

    async def begin_dispatches(self, items: Sequence[DispatchItem]) -> list[Dispatch | None]:
        """Many dispatches in one transaction (the processor's batch); None for an item
        whose payment or gateway does not exist. Each item's log line and outbox row
        carry its own request id."""
        if not 1 <= len(items) <= DISPATCH_BATCH_MAX:
            raise ValidationFailed(
                [FieldViolation("items", f"must hold 1 to {DISPATCH_BATCH_MAX} dispatches")]
            )
        records = await self._repository.begin_dispatches(items, self._clock())
        await self._cache.put_many([r.payment for r in records if r is not None])
        to_seal = [r for r in records if r is not None and r.dispatch and r.sealed_pan is not None]
        cvcs = dict(
            zip(
                [r.payment.payment_id for r in to_seal],
                await self._cvcs.take_many([r.payment.payment_id for r in to_seal]),
                strict=True,
            )
        )
        dispatches: list[Dispatch | None] = []
        for item, record in zip(items, records, strict=True):
            if record is None:
                dispatches.append(None)
                continue
            with tracing.bind(item.request_id):
                pid = record.payment.payment_id
                dispatch = await self._sealed(record, (cvcs[pid],) if pid in cvcs else None)
                if dispatch.record.dispatch and record.changed:
                    lifecycle.step("dispatched", dispatch.record.payment)
            dispatches.append(dispatch)
        return dispatches

    async def sweep(self, limit: int) -> SweepResult:
        """One janitor pass: expire, time out, and claim re-dispatches."""
        if self._sweeper is None:
            raise RuntimeError("no sweeper configured")
        now = self._clock()
        policy = self._janitor
        expired = await self._sweeper.expire_due(
            now,
            pending_ttl_s=policy.pending_ttl_s,
            verification_ttl_s=policy.verification_ttl_s,
            limit=limit,
        )
        claimed, timed_out = await self._sweeper.claim_timeouts(
            now, attempts_max=policy.dispatch_attempts_max, limit=limit
        )
        for view in (*expired, *timed_out):
            await self._cache.put(view)
            lifecycle.step(view.status.value.lower().replace("_", " "), view, by="janitor")
        redispatches = [await self._sealed(record) for record in claimed]
        for redispatch in redispatches:
            if redispatch.record.dispatch:
                # Status and version are unchanged: the cached copy would keep the old
                # attempt, so it is dropped (the next read refills it).
                await self._cache.forget(redispatch.record.payment.payment_id)
                lifecycle.step("re-dispatched", redispatch.record.payment, by="janitor")
        return SweepResult(redispatches, expired, timed_out)

    async def stale_pending(
        self, older_than_s: int, limit: int, after: StaleCursor | None = None
    ) -> StalePage:
        """One page of payments PENDING for at least ``older_than_s``, with their creation
        event, for the janitor to re-publish when the processor never handled it. A payment
        whose event the outbox has not sent yet is left out: the relay still owes it."""
        if self._sweeper is None:
            raise RuntimeError("no sweeper configured")
        before = self._clock() - timedelta(seconds=older_than_s)
        found, cursor = await self._sweeper.stale_pending(before, after=after, limit=limit)
        return StalePage([p for p in found if p.event is not None], cursor)

    async def _sealed(
        self, record: DispatchRecord, taken: tuple[SealedCvc | None] | None = None
    ) -> Dispatch:
        """The dispatch with the card opened from the vault and sealed to the gateway
        (``taken``: its CVC, already taken from the store for a batch)."""
        if not record.dispatch or record.gateway is None or record.sealed_pan is None:
            return Dispatch(record, b"")
        pid = record.payment.payment_id
        try:
            pan = self._vault.decrypt_pan(record.sealed_pan, pid)
        except DecryptionFailed:
            # The vault no longer holds this card's key (retired too early) or the row is
            # damaged: the payment cannot be sent anywhere. End it rather than retry.
            log.error("vaulted card unreadable", extra={"payment_id": pid})
            failed = await self._repository.fail(
                pid, "card_unavailable", "the stored card could not be read", self._clock()
            )
            await self._cache.put(failed)
            lifecycle.step("failed", failed)
            return Dispatch(replace(record, payment=failed, dispatch=False), b"")
        sealed_cvc = taken[0] if taken is not None else await self._cvcs.take(pid)
        cvc = "" if sealed_cvc is None else self._vault.open_cvc(sealed_cvc, pid).reveal()
        card = record.payment.card
        plaintext = CardPlaintext(
            number=pan.reveal(),
            exp_month=0 if card is None else card.exp_month,
            exp_year=0 if card is None else card.exp_year,
            cvc=cvc,
            holder_name="",
        )
        return Dispatch(record, self._crypto.seal_card(record.gateway.public_key, plaintext, pid))

    async def fail(self, payment_id: str, failure_code: str, failure_message: str) -> PaymentView:
        view = await self._repository.fail(payment_id, failure_code, failure_message, self._clock())
        if view.failure_code == failure_code:
            lifecycle.step("failed", view)
        return view

    async def report_result(self, gateway_id: str, payload: bytes, header: str) -> AppliedResult:
        """Verify, decode and apply one gateway callback."""
        now = self._clock()
        wire_format = await authenticate(
            self._repository, self._crypto, gateway_id, payload, header, now
        )
        try:
            result = self._crypto.decode_result(wire_format, payload)
        except ValueError:
            # Signed by the gateway, yet not a result: refuse it as unauthenticated input.
            raise CallbackRejected("undecodable_payload") from None
        try:
            applied = await self._repository.apply_result(
                gateway_id=gateway_id,
                event_id=result.event_id,
                payment_id=result.payment_id,
                approved=result.approved,
                failure_code=result.failure_code,
                failure_message=result.failure_message,
                now=now,
                gateway_reference=result.gateway_reference,
            )
        except ResultConflict as conflict:
            # A gateway contradicting a final state is an operational alert, not noise.
            log.error(
                "ALERT gateway result conflicts with final state",
                extra={
                    "gateway_id": gateway_id,
                    "payment_id": result.payment_id,
                    "status": conflict.current,
                    "approved": result.approved,
                },
            )
            raise
        await self._cache.put(applied.payment)
        if not applied.duplicate:
            lifecycle.step(
                applied.payment.status.value.lower(),
                applied.payment,
                gateway_outcome="APPROVED" if result.approved else "DECLINED",
            )
        return applied

    async def report_results(
        self, gateway_id: str, payload: bytes, header: str, request_ids: Sequence[str] = ()
    ) -> list[ResultOutcome]:
        """Verify, decode and apply a batch of gateway callbacks in one transaction
        (:mod:`payment_svc.service.results`); one outcome per result, in order."""
        if self._batches is None:
            raise RuntimeError("no results repository configured")
        return await self._batches.report(gateway_id, payload, header, request_ids)
