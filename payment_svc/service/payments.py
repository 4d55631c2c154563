"""Payment use cases: create (validated, vaulted, idempotent), read, list, cancel, balances."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from payment_svc.domain.cards import PanSecret
from payment_svc.domain.errors import (
    IdempotencyKeyReused,
    NotFound,
    ProcessingBacklog,
    ValidationFailed,
)
from payment_svc.domain.money import AmountLimits, Currency
from payment_svc.domain.payment import CardView, Payment
from payment_svc.domain.status import (
    TERMINAL,
    FundingSource,
    PaymentKind,
    PaymentStatus,
)
from payment_svc.domain.validation import (
    CreatePaymentCommand,
    effective_funding_source,
    request_fingerprint,
    validate_create_payment,
)
from payment_svc.service import lifecycle
from payment_svc.service.ports import (
    Admission,
    BalanceView,
    ChangeWatcher,
    CvcStore,
    ExistingKey,
    NewPayment,
    PageCursor,
    PaymentCache,
    PaymentRepository,
    PaymentView,
)
from payment_svc.vault import CardVault
from payrail_common.fields import FieldViolation

log = logging.getLogger(__name__)

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100


@dataclass(frozen=True)
class Created:
    payment: PaymentView
    # True when the idempotency key had been used with the same request before.
    replayed: bool


def _holds_wallet_funds(kind: PaymentKind, funding: FundingSource | None) -> bool:
    return kind is PaymentKind.WITHDRAWAL or funding is FundingSource.WALLET


class Payments:
    """The use cases behind PaymentService, over injected ports."""

    def __init__(
        self,
        *,
        repository: PaymentRepository,
        cache: PaymentCache,
        cvcs: CvcStore,
        vault: CardVault,
        currencies: Mapping[str, Currency],
        limits: AmountLimits,
        changes: ChangeWatcher | None = None,
        admission: Admission | None = None,
        watch_poll_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repository = repository
        self._cache = cache
        self._cvcs = cvcs
        self._vault = vault
        # Keys and request fingerprints are stored only as keyed digests.
        self._keys = vault.idempotency_hasher()
        self._currencies = currencies
        self._limits = limits
        self._changes = changes
        self._admission = admission
        self._watch_poll_s = watch_poll_s
        self._clock = clock

    async def create(self, cmd: CreatePaymentCommand) -> Created:
        now = self._clock()
        violations = validate_create_payment(
            cmd, today=now.date(), currencies=self._currencies, limits=self._limits
        )
        if violations:
            raise ValidationFailed(violations)
        if cmd.kind is None:  # validation guarantees a kind; this narrows the type
            raise ValidationFailed([FieldViolation("kind", "is required")])
        stored_key = self._keys.stored_key(cmd.user_id, cmd.idempotency_key)
        if self._admission is not None:
            try:
                # Bad input heard about its fields first; new payments wait out a backlog.
                self._admission.admit()
            except ProcessingBacklog:
                # A retry of a payment already accepted is no new work: it gets its
                # answer (the replay, or IDEMPOTENCY_KEY_REUSED) below, backlog or not.
                if not await self._repository.key_exists(cmd.user_id, stored_key):
                    raise
        payment_id = str(uuid.uuid4())
        funding = effective_funding_source(cmd.kind, cmd.funding_source)
        card_view = sealed_pan = fingerprint = None
        if cmd.card is not None:
            pan = PanSecret.from_input(cmd.card.number.reveal())
            fingerprint = self._vault.fingerprint(pan)
            sealed_pan = self._vault.encrypt_pan(pan, payment_id)
            card_view = CardView(pan.brand, pan.masked, cmd.card.exp_month, cmd.card.exp_year)
        view = Payment.create(
            payment_id=payment_id,
            user_id=cmd.user_id,
            kind=cmd.kind,
            funding_source=funding,
            amount=cmd.amount,
            description=cmd.description,
            card=card_view,
            merchant=cmd.merchant,
            now=now,
        ).payment
        request_hash = self._keys.stored_request_hash(
            request_fingerprint(cmd, card_fingerprint=fingerprint)
        )
        result = await self._repository.create(
            NewPayment(
                payment=view,
                idempotency_key=stored_key,
                request_hash=request_hash,
                sealed_pan=sealed_pan,
                card_fingerprint=fingerprint,
                hold_minor=cmd.amount.amount_minor if _holds_wallet_funds(cmd.kind, funding) else 0,
            )
        )
        if isinstance(result, ExistingKey):
            if result.request_hash != request_hash:
                raise IdempotencyKeyReused()
            original = await self._repository.get(cmd.user_id, result.payment_id)
            if original is None:  # the key row references it: only a broken database
                raise NotFound("payment")
            return Created(original, replayed=True)
        if cmd.card is not None and cmd.card.cvc:
            # Held only briefly, sealed, in Redis, for the gateway dispatch. A Redis outage
            # does not fail an accepted payment: the dispatch proceeds without a CVC.
            try:
                await self._cvcs.put(payment_id, self._vault.seal_cvc(cmd.card.cvc, payment_id))
            except Exception as exc:
                log.warning(
                    "cvc not cached", extra={"payment_id": payment_id, "error": type(exc).__name__}
                )
        lifecycle.step(
            "created",
            result,
            amount_minor=result.amount.amount_minor,
            currency_code=result.amount.currency_code,
        )
        return Created(result, replayed=False)

    async def get(self, user_id: str, payment_id: str) -> PaymentView:
        cached = await self._cache.get(payment_id)
        if cached is not None:
            # Ownership is checked on the cached copy too: a cache hit is no back door.
            if cached.user_id != user_id:
                raise NotFound("payment")
            return cached
        view = await self._repository.get(user_id, payment_id)
        if view is None:
            raise NotFound("payment")
        await self._cache.put(view)
        return view

    async def watch(self, user_id: str, payment_id: str) -> AsyncIterator[PaymentView]:
        """The payment now, then every newer version, ending after a final state.

        Subscribes before the first read, so no change between the two is missed; reads
        PostgreSQL (not the cache) each time; a missed notification costs at most
        ``watch_poll_s``.
        """
        if self._changes is None:
            raise RuntimeError("no change feed configured")
        async with self._changes.watch(payment_id) as changed:
            view = await self._repository.get(user_id, payment_id)
            if view is None:
                raise NotFound("payment")
            yield view
            while view.status not in TERMINAL:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.get(), timeout=self._watch_poll_s)
                latest = await self._repository.get(user_id, payment_id)
                if latest is not None and latest.version > view.version:
                    view = latest
                    yield view

    async def list(
        self,
        user_id: str,
        *,
        page_size: int,
        after: PageCursor | None,
        status: PaymentStatus | None,
        kind: PaymentKind | None,
    ) -> tuple[Sequence[PaymentView], PageCursor | None]:
        """One page, newest first, and the cursor of the next page (None on the last)."""
        size = PAGE_SIZE_DEFAULT if page_size == 0 else min(page_size, PAGE_SIZE_MAX)
        rows = await self._repository.list(
            user_id, limit=size + 1, after=after, status=status, kind=kind
        )
        page = rows[:size]
        if len(rows) <= size:
            return page, None
        last = page[-1]
        return page, PageCursor(last.create_time, last.payment_id)

    async def cancel(self, user_id: str, payment_id: str) -> PaymentView:
        view = await self._repository.cancel(user_id, payment_id, self._clock())
        await self._cache.put(view)  # write-through: the newer version replaces the old
        lifecycle.step("canceled", view)
        return view

    async def balances(self, user_id: str, currency_code: str | None) -> Sequence[BalanceView]:
        if currency_code is not None and currency_code not in self._currencies:
            raise ValidationFailed(
                [FieldViolation("currency_code", "must be a supported ISO-4217 currency code")]
            )
        return await self._repository.balances(user_id, currency_code)
