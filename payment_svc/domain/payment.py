"""The Payment aggregate: one payment, every way it may change, and what each change means.

A :class:`Payment` is an immutable value. Each transition is a method that checks its
rule against the current state and returns a :class:`Change`: the payment as it is
afterwards and the domain events the change produced, or raises the domain error that
explains why it may not happen. Nothing here does I/O: adapters load payments, call
these methods, and save the result — the new state, its events turned into outbox rows
and, for a final status, the journal entry :mod:`payment_svc.domain.ledger` derives from
it — in one transaction per unit of work. The SQL keeps only the constraints that guard
these rules (CHECKs, unique keys, row locks).

Idempotency lives here too: asking a payment for a change it already made (a redelivered
dispatch, the same gateway outcome twice) answers with no events instead of an error, so
a redelivered message has no second effect.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from payment_svc.domain.cards import CardBrand
from payment_svc.domain.errors import InvalidTransition, NotFound, ResultConflict
from payment_svc.domain.money import Money
from payment_svc.domain.status import (
    INITIAL_VERSION,
    TERMINAL,
    FundingSource,
    PaymentKind,
    PaymentStatus,
    can_transition,
    next_version,
)
from payment_svc.domain.validation import Merchant
from payrail_common.failure_codes import (
    CANCELED_BY_USER,
    DECLINED,
    EXPIRED,
    GATEWAY_TIMEOUT,
    VERIFICATION_EXPIRED,
)


@dataclass(frozen=True)
class CardView:
    """What is ever shown of a vaulted card."""

    brand: CardBrand | None
    masked_number: str
    exp_month: int
    exp_year: int


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Created:
    """A new payment, PENDING (announced on Kafka)."""


@dataclass(frozen=True)
class StatusChanged:
    """The payment moved from ``previous`` to its current status (announced on Kafka)."""

    previous: PaymentStatus


@dataclass(frozen=True)
class VerificationRequired:
    """Risk asked the owner to confirm; a challenge is to be issued."""

    reason: str


@dataclass(frozen=True)
class ChallengeReissued:
    """A redelivered risk decision: a fresh code replaces the undelivered one."""


@dataclass(frozen=True)
class Verified:
    """The owner answered the challenge with the right code (announced on Kafka)."""


@dataclass(frozen=True)
class Dispatched:
    """Handed to ``gateway_id``: ``attempt`` 1, or more after re-dispatches."""

    gateway_id: str
    attempt: int


DomainEvent = (
    Created | StatusChanged | VerificationRequired | ChallengeReissued | Verified | Dispatched
)


@dataclass(frozen=True)
class Change:
    """A payment after a transition and the events the transition produced; no events
    means nothing changed (the change had been made before, or did not apply)."""

    payment: Payment
    events: tuple[DomainEvent, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.events)


# ---------------------------------------------------------------- the aggregate


@dataclass(frozen=True)
class Payment:
    """A payment as stored and as its owner sees it."""

    payment_id: str
    user_id: str
    kind: PaymentKind
    status: PaymentStatus
    funding_source: FundingSource | None
    amount: Money
    description: str
    card: CardView | None
    merchant: Merchant | None
    failure_code: str
    failure_message: str
    version: int
    create_time: datetime
    update_time: datetime
    # Why risk asked for step-up verification ("" when it did not), and whether the
    # owner passed it.
    verification_reason: str = ""
    verified: bool = False
    # The gateway it was dispatched to ("" before dispatch), the gateway's own reference
    # for the charge ("" until the gateway reported), and the dispatch attempt (0 before
    # dispatch; re-dispatches after a callback timeout count up).
    gateway_id: str = ""
    gateway_reference: str = ""
    attempt: int = 0

    # ------------------------------------------------------------ creating

    @classmethod
    def create(
        cls,
        *,
        payment_id: str,
        user_id: str,
        kind: PaymentKind,
        funding_source: FundingSource | None,
        amount: Money,
        description: str,
        card: CardView | None,
        merchant: Merchant | None,
        now: datetime,
    ) -> Change:
        """A new payment: PENDING, version 1 (the request was validated before)."""
        payment = cls(
            payment_id=payment_id,
            user_id=user_id,
            kind=kind,
            status=PaymentStatus.PENDING,
            funding_source=funding_source,
            amount=amount,
            description=description,
            card=card,
            merchant=merchant,
            failure_code="",
            failure_message="",
            version=INITIAL_VERSION,
            create_time=now,
            update_time=now,
        )
        return Change(payment, (Created(),))

    # ------------------------------------------------------------ reading

    @property
    def is_final(self) -> bool:
        return self.status in TERMINAL

    @property
    def holds_wallet_funds(self) -> bool:
        """Withdrawals and wallet-funded purchases reserve the amount in the wallet."""
        return self.kind is PaymentKind.WITHDRAWAL or self.funding_source is FundingSource.WALLET

    @property
    def approved_for_dispatch(self) -> bool:
        """Risk approved it (still PENDING) or its owner verified it at step-up."""
        return self.status is PaymentStatus.PENDING or (
            self.status is PaymentStatus.REQUIRES_VERIFICATION and self.verified
        )

    @property
    def awaiting_verification(self) -> bool:
        return self.status is PaymentStatus.REQUIRES_VERIFICATION and not self.verified

    # ------------------------------------------------------------ transitions

    def _move(
        self,
        target: PaymentStatus,
        now: datetime,
        *,
        failure_code: str = "",
        failure_message: str = "",
        **fields: object,
    ) -> Change:
        """The state machine's move (InvalidTransition when not allowed), version + 1."""
        moved = replace(
            self,
            status=target,
            version=next_version(self.status, target, self.version),
            failure_code=failure_code,
            failure_message=failure_message,
            update_time=now,
            **fields,  # type: ignore[arg-type]
        )
        return Change(moved, (StatusChanged(self.status),))

    def require_verification(self, reason: str, now: datetime) -> Change:
        """Risk's REVIEW: hold a PENDING payment for its owner. A payment already waiting
        for its owner gets a fresh challenge (the decision was redelivered); any other
        state is left alone (the payment moved on meanwhile)."""
        if self.status is PaymentStatus.PENDING:
            change = self._move(
                PaymentStatus.REQUIRES_VERIFICATION, now, verification_reason=reason
            )
            return Change(change.payment, (*change.events, VerificationRequired(reason)))
        if self.awaiting_verification:
            return Change(self, (ChallengeReissued(),))
        return Change(self)

    def deny(self, failure_code: str, failure_message: str, now: datetime) -> Change:
        """Risk's DENY, for a payment still PENDING (a later state stands)."""
        if self.status is not PaymentStatus.PENDING:
            return Change(self)
        return self._move(
            PaymentStatus.DENIED, now, failure_code=failure_code, failure_message=failure_message
        )

    def verify(self, now: datetime) -> Change:
        """The owner's right code: approved for dispatch (no status change, version + 1)."""
        if not self.awaiting_verification:
            raise InvalidTransition(self.status.value, "verified")
        verified = replace(self, verified=True, version=self.version + 1, update_time=now)
        return Change(verified, (Verified(),))

    def deny_at_verification(
        self, failure_code: str, failure_message: str, now: datetime
    ) -> Change:
        """A decline, too many wrong codes or an expired challenge."""
        if not self.awaiting_verification:
            raise InvalidTransition(self.status.value, PaymentStatus.DENIED.value)
        return self._move(
            PaymentStatus.DENIED, now, failure_code=failure_code, failure_message=failure_message
        )

    def begin_dispatch(self, gateway_id: str, now: datetime) -> Change | None:
        """Hand the payment to ``gateway_id``: PROCESSING, attempt 1. A payment already
        PROCESSING at that gateway answers its current dispatch again (a redelivered
        event: nothing changes, the same attempt is re-sent). None: nothing to dispatch
        (denied, canceled, expired, or awaiting its owner)."""
        if self.approved_for_dispatch:
            change = self._move(PaymentStatus.PROCESSING, now, gateway_id=gateway_id, attempt=1)
            return Change(change.payment, (*change.events, Dispatched(gateway_id, 1)))
        if self.status is PaymentStatus.PROCESSING and self.gateway_id == gateway_id:
            return Change(self)
        return None

    def redispatch(self, now: datetime) -> Change:
        """The gateway did not answer in time: send it again, attempt + 1 (status and
        version stay: nothing a client or consumer orders by has changed)."""
        if self.status is not PaymentStatus.PROCESSING or not self.gateway_id:
            raise InvalidTransition(self.status.value, PaymentStatus.PROCESSING.value)
        again = replace(self, attempt=self.attempt + 1)
        return Change(again, (Dispatched(self.gateway_id, again.attempt),))

    def time_out(self, now: datetime) -> Change:
        """The gateway never answered, attempts spent: FAILED."""
        return self._move(
            PaymentStatus.FAILED,
            now,
            failure_code=GATEWAY_TIMEOUT,
            failure_message="the gateway did not answer in time",
        )

    def apply_result(
        self,
        gateway_id: str,
        *,
        approved: bool,
        failure_code: str,
        failure_message: str,
        gateway_reference: str,
        now: datetime,
    ) -> Change:
        """A gateway's outcome: COMPLETED or FAILED. Only the gateway the payment was
        dispatched to may report (others get NotFound, as for a payment they never saw);
        the same outcome again is an idempotent no-change; a different one for a final
        payment, or a result for a payment not PROCESSING, is a ResultConflict."""
        if self.gateway_id != gateway_id:
            raise NotFound("payment")
        target = PaymentStatus.COMPLETED if approved else PaymentStatus.FAILED
        if self.is_final:
            if self.status is target:
                return Change(self)
            raise ResultConflict(self.status.value)
        if self.status is not PaymentStatus.PROCESSING:
            raise ResultConflict(self.status.value)
        return self._move(
            target,
            now,
            failure_code="" if approved else (failure_code or DECLINED),
            failure_message="" if approved else failure_message,
            gateway_reference=gateway_reference,
        )

    def fail(self, failure_code: str, failure_message: str, now: datetime) -> Change:
        """Nothing can process it (no route, an unreadable card): FAILED, when the state
        machine allows; a payment already past that point is left alone."""
        if not can_transition(self.status, PaymentStatus.FAILED):
            return Change(self)
        return self._move(
            PaymentStatus.FAILED, now, failure_code=failure_code, failure_message=failure_message
        )

    def cancel(self, now: datetime) -> Change:
        """Its owner's cancellation, before dispatch only (InvalidTransition after)."""
        return self._move(
            PaymentStatus.CANCELED,
            now,
            failure_code=CANCELED_BY_USER,
            failure_message="canceled by its owner before dispatch",
        )

    def expire(self, now: datetime) -> Change:
        """The janitor's verdict on a payment that waited too long: an unanswered
        challenge is DENIED (verification_expired); anything else EXPIRED."""
        if self.awaiting_verification:
            return self._move(
                PaymentStatus.DENIED,
                now,
                failure_code=VERIFICATION_EXPIRED,
                failure_message="the owner did not answer the verification in time",
            )
        return self._move(
            PaymentStatus.EXPIRED,
            now,
            failure_code=EXPIRED,
            failure_message=f"the payment waited too long in {self.status.value}",
        )


__all__ = [
    "CardView",
    "ChallengeReissued",
    "Change",
    "Created",
    "Dispatched",
    "DomainEvent",
    "Payment",
    "StatusChanged",
    "VerificationRequired",
    "Verified",
]
