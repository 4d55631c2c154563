"""Batches of gateway results (``CallbackService/ReportResults``): one signature over the
whole payload, then every result applied in one transaction, each with its own outcome.

A batch does what reporting its results one by one, in order, would do — the same rules
(:mod:`payment_svc.adapters.results` applies them), the same replay protection per
``event_id`` — except that a result which cannot apply (an unknown payment, a conflicting
outcome) is reported in its outcome instead of failing the call, so it never blocks the
others. Signature, gateway and payload are checked for the call as a whole: a refusal
there changes nothing.

Each result carries its own request id (the gateway sends payrail's id of the request it
answers): its events and its log lines carry that id, not the id of the call.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from payment_svc.domain.errors import CallbackRejected, ValidationFailed
from payment_svc.service import lifecycle
from payment_svc.service.ports import PaymentCache, PaymentView
from payrail_common import tracing
from payrail_common.fields import FieldViolation, is_storable_text

log = logging.getLogger(__name__)

# The contract's bound (gateway_sdk.formats.base.BATCH_RESULTS_MAX): decoders refuse more.
BATCH_RESULTS_MAX = 500


class Disposition(enum.Enum):
    """What one result of a batch did (``ResultDisposition`` in the contract)."""

    APPLIED = "APPLIED"  # the payment is now COMPLETED or FAILED
    DUPLICATE = "DUPLICATE"  # the event id was applied before, or the same outcome again
    NOT_FOUND = "NOT_FOUND"  # no such payment, or not dispatched to this gateway
    CONFLICT = "CONFLICT"  # the outcome conflicts with the payment's state


@dataclass(frozen=True)
class BatchResult:
    """One decoded result of a batch and the request id its effects are traced under."""

    event_id: str
    payment_id: str
    approved: bool
    failure_code: str
    failure_message: str
    gateway_reference: str
    # payrail's request id the gateway sent for this result; None: the call's own.
    request_id: str | None = None


@dataclass(frozen=True)
class ResultOutcome:
    """What one result did, and the payment as it stands after it (None: NOT_FOUND)."""

    result: BatchResult
    disposition: Disposition
    payment: PaymentView | None
    # For CONFLICT: the status the outcome conflicts with; "" otherwise.
    conflict_status: str = ""


class ResultsRepository(Protocol):
    async def apply_results(
        self, gateway_id: str, results: Sequence[BatchResult], now: datetime
    ) -> list[ResultOutcome]:
        """Apply ``results`` in order in one transaction; one outcome per result, in
        order. A result that cannot apply changes nothing and records nothing."""


class BatchCrypto(Protocol):
    """What the batch use case needs of the gateway SDK (signature and batch decoding)."""

    def verify(self, payload: bytes, header: str, secrets: Sequence[bytes], now: int) -> None:
        """Raise ValueError (any subclass) with a reason when the signature is not valid."""

    def decode_results(self, wire_format: str, payload: bytes) -> Sequence[BatchResult]:
        """Raise ValueError when the payload is not a batch of results in that format."""


class CallbackAuth(Protocol):
    async def gateway_callback_auth(self, gateway_id: str) -> tuple[str, Sequence[bytes]] | None:
        """(wire format, active callback secrets) of an enabled gateway; None otherwise."""


async def authenticate(
    auth: CallbackAuth,
    crypto: BatchCrypto,
    gateway_id: str,
    payload: bytes,
    header: str,
    now: datetime,
) -> str:
    """The gateway's wire format once ``header`` proves ``payload`` came from it;
    :class:`CallbackRejected` otherwise (the caller learns nothing more)."""
    if not is_storable_text(gateway_id):
        raise CallbackRejected("unknown_gateway")  # NUL and the like never reach SQL
    found = await auth.gateway_callback_auth(gateway_id)
    if found is None:
        raise CallbackRejected("unknown_gateway")
    wire_format, secrets = found
    try:
        crypto.verify(payload, header, secrets, int(now.timestamp()))
    except ValueError as exc:
        raise CallbackRejected(getattr(exc, "reason", "invalid_signature")) from None
    return wire_format


def with_request_ids(
    results: Sequence[BatchResult], request_ids: Sequence[str]
) -> list[BatchResult]:
    """Each result with its request id: ``request_ids`` is empty or one per result ("" for
    none); a malformed id is dropped (the result is traced under the call's id)."""
    if not request_ids:
        return list(results)
    if len(request_ids) != len(results):
        raise ValidationFailed(
            [FieldViolation("request_ids", "must be empty or hold one entry per result")]
        )
    return [
        BatchResult(
            event_id=r.event_id,
            payment_id=r.payment_id,
            approved=r.approved,
            failure_code=r.failure_code,
            failure_message=r.failure_message,
            gateway_reference=r.gateway_reference,
            request_id=tracing.accept(request_id),
        )
        for r, request_id in zip(results, request_ids, strict=True)
    ]


class ResultBatches:
    """The ``ReportResults`` use case."""

    def __init__(
        self,
        *,
        auth: CallbackAuth,
        repository: ResultsRepository,
        crypto: BatchCrypto,
        cache: PaymentCache,
        clock: Callable[[], datetime],
    ) -> None:
        self._auth = auth
        self._repository = repository
        self._crypto = crypto
        self._cache = cache
        self._clock = clock

    async def report(
        self, gateway_id: str, payload: bytes, header: str, request_ids: Sequence[str] = ()
    ) -> list[ResultOutcome]:
        """Verify, decode and apply one signed batch; one outcome per result, in order."""
        now = self._clock()
        wire_format = await authenticate(self._auth, self._crypto, gateway_id, payload, header, now)
        try:
            decoded = self._crypto.decode_results(wire_format, payload)
        except ValueError:
            # Signed by the gateway, yet not a batch: refused as a whole, like one result.
            raise CallbackRejected("undecodable_payload") from None
        if not 1 <= len(decoded) <= BATCH_RESULTS_MAX:
            raise CallbackRejected("undecodable_payload")
        results = with_request_ids(decoded, request_ids)
        outcomes = await self._repository.apply_results(gateway_id, results, now)
        if len(outcomes) != len(results):
            raise RuntimeError("the repository must answer once per result")
        await self._after_commit(gateway_id, outcomes)
        return outcomes

    async def _after_commit(self, gateway_id: str, outcomes: Sequence[ResultOutcome]) -> None:
        """Per result, under its own request id: the lifecycle line of an applied result,
        the alert of a conflicting one; and the cache, once per payment (its last state),
        in one round trip."""
        latest: dict[str, PaymentView] = {}
        for outcome in outcomes:
            result, payment = outcome.result, outcome.payment
            if payment is not None:
                latest[payment.payment_id] = payment
            with tracing.bind(result.request_id or tracing.current()):
                if outcome.disposition is Disposition.APPLIED and payment is not None:
                    lifecycle.step(
                        payment.status.value.lower(),
                        payment,
                        gateway_outcome="APPROVED" if result.approved else "DECLINED",
                    )
                elif outcome.disposition is Disposition.CONFLICT:
                    # A gateway contradicting a final state is an operational alert.
                    log.error(
                        "ALERT gateway result conflicts with final state",
                        extra={
                            "gateway_id": gateway_id,
                            "payment_id": result.payment_id,
                            "status": outcome.conflict_status,
                            "approved": result.approved,
                        },
                    )
                elif outcome.disposition is Disposition.NOT_FOUND:
                    log.warning(
                        "gateway result for a payment it was not given",
                        extra={"gateway_id": gateway_id, "event_id": result.event_id},
                    )
        await self._cache.put_many(list(latest.values()))


__all__ = [
    "BATCH_RESULTS_MAX",
    "BatchCrypto",
    "BatchResult",
    "CallbackAuth",
    "Disposition",
    "ResultBatches",
    "ResultOutcome",
    "ResultsRepository",
    "authenticate",
    "with_request_ids",
]
