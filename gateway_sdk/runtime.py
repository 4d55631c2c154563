"""The network half of the SDK: consume your topic, report results, signed.

:class:`GatewayWorker` runs a gateway: it consumes ``gateway.<id>.requests`` in a
consumer group, decodes each request in the gateway's wire format, opens the sealed card
with the gateway's private key, calls your ``charge`` function and reports its result
with a correct signature: the results that are ready within ``linger_ms`` of each other
(at most ``batch_max``) go together in one ``CallbackService/ReportResults`` call, which
payrail applies in one transaction (``batch_max=1``: one ``ReportResult`` call each). The
offset is committed only after every result of the records was accepted (or ``charge``
chose not to answer), so a crash re-delivers the requests; results carry ``event_id =
<request_id>/result``, so payrail applies a re-delivered result once, whatever batch it
arrives in. Nothing but cancellation ends the worker:
while payrail or Kafka is unreachable it waits and retries with capped, jittered backoff
for as long as it takes (``waiting`` is True meanwhile), re-reading the batch without
charging any payment twice; a result payrail refuses as final (an unknown payment, a
conflicting outcome) is logged and dropped, on its own: the other results of its batch
are unaffected. A batch payrail fails to apply as a whole for a reason it does not
explain (``INTERNAL``), or a payrail that does not serve batches yet, gets the results
reported one by one instead.

Tracing: a request carries payrail's request id in its ``x-request-id`` Kafka header. The
worker binds it while it handles the request (:func:`current_request_id`; add
:class:`RequestIdLogFilter` to your log handler to see it on your own log lines) and
sends it with the result as ``x-request-id`` gRPC metadata, so the payment's lines in
payrail's logs and in yours share one id. A batch carries each result's id in
``ReportResultsRequest.request_ids`` (and the first one as the call's metadata), and
each result's "result reported" line is logged under its own id.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

import grpc
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway_sdk.formats.base import FormatError, GatewayRequest, GatewayResult, WireFormat
from gateway_sdk.reporting import (
    _REQUEST_ID,
    _RETRYABLE,
    _STATUS_OF,
    _UNEXPLAINED,
    REQUEST_ID_KEY,
    CallbackClient,
    ResultBatcher,
    _sleep_backoff,
    connect,
    current_request_id,
)
from gateway_sdk.sealing import CardData, SealingError, unseal_card

log = logging.getLogger(__name__)

_REQUEST_ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def _request_id_from(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    for key, value in headers or ():
        if key == REQUEST_ID_KEY:
            try:
                text = bytes(value).decode("ascii")
            except UnicodeDecodeError:
                return None
            return text if _REQUEST_ID_SHAPE.fullmatch(text) else None
    return None


class RequestIdLogFilter(logging.Filter):
    """Adds ``request_id`` to records logged while the worker handles a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _REQUEST_ID.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


# What a gateway implements: decide on one request. None means "never answer" (the
# payment then times out at payrail and is re-dispatched or failed by its janitor).
Charge = Callable[[GatewayRequest, CardData | None], Awaitable[GatewayResult | None]]


def _transient(error: BaseException) -> bool:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in _RETRYABLE or error.code() in _UNEXPLAINED
    return isinstance(error, KafkaError | OSError | TimeoutError)


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"grpc {error.code().name}"
    return type(error).__name__


def result_for(
    request: GatewayRequest,
    *,
    approved: bool,
    failure_code: str = "",
    failure_message: str = "",
    gateway_reference: str = "",
) -> GatewayResult:
    """The result of one request, with the event id payrail de-duplicates on."""
    return GatewayResult(
        event_id=f"{request.request_id}/result",
        payment_id=request.payment_id,
        outcome="APPROVED" if approved else "DECLINED",
        failure_code="" if approved else failure_code,
        failure_message="" if approved else failure_message,
        gateway_reference=gateway_reference,
        occur_time=int(time.time()),
    )


class GatewayWorker:
    """Consumes a gateway's request topic and reports each outcome."""

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        wire_format: WireFormat,
        private_key: X25519PrivateKey,
        callbacks: CallbackClient,
        charge: Charge,
        answered_max: int = 10_000,
        backoff_max_s: float = 10.0,
        unknown_tries_max: int = 5,
        linger_ms: float = 5.0,
        batch_max: int = 100,
    ) -> None:
        """``linger_ms``: how long a ready result waits for others to share its
        ``ReportResults`` call; ``batch_max``: at most this many per call (1: every result
        alone, with ``ReportResult``)."""
        self._consumer = consumer
        self._format = wire_format
        self._key = private_key
        self._callbacks = callbacks
        self._batcher = ResultBatcher(callbacks, linger_ms=linger_ms, batch_max=batch_max)
        self._charge = charge
        # Recently answered payments and their results. A re-delivered request or a
        # re-dispatch (same payment id, a later attempt) is never charged again: the
        # stored result is reported again instead, in case the first report was lost.
        self._answered: OrderedDict[str, GatewayResult] = OrderedDict()
        self._answered_max = answered_max
        self._backoff_max_s = backoff_max_s
        self._failures = 0
        # Results payrail keeps refusing with an unexplained error (UNKNOWN, INTERNAL):
        # retried a few times, then left to payrail's janitor (it re-dispatches).
        self._unknown_tries: dict[str, int] = {}
        self._unknown_tries_max = unknown_tries_max

    @property
    def waiting(self) -> bool:
        """True while the worker waits for payrail or Kafka to come back (health)."""
        return self._failures > 0

    async def run(self) -> None:
        """Consume until cancelled. Nothing ends this loop but cancellation: a batch that
        could not be fully handled (payrail unreachable, a broker gone, your ``charge``
        raising) is read again after a capped, jittered backoff — payments already
        answered are never charged again, only their result is reported again. The
        records of every partition fetched are handled at once, so their results can
        share a ``ReportResults`` call."""
        try:
            while True:
                try:
                    batches = await self._consumer.getmany(timeout_ms=1000, max_records=50)
                except KafkaError as exc:
                    await self._backoff("fetch failed", exc)
                    continue
                failed = await self._handle_fetched(batches)
                if failed is not None:
                    await self._backoff(*failed)
                    continue
                if self._failures:
                    log.info("worker recovered", extra={"failures": self._failures})
                self._failures = 0
        finally:
            self._batcher.close()

    async def _handle_fetched(
        self, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> tuple[str, BaseException] | None:
        """Handle every fetched record; commit the partitions whose records were all
        handled, rewind the others to be read again. (what, error) when one failed."""
        tps = list(batches)
        outcomes = await asyncio.gather(
            *(self.handle(r.value, r.headers) for tp in tps for r in batches[tp]),
            return_exceptions=True,
        )
        done: dict[TopicPartition, int] = {}
        first_error: BaseException | None = None
        start = 0
        for tp in tps:
            records = batches[tp]
            mine = outcomes[start : start + len(records)]
            start += len(records)
            error = next((o for o in mine if isinstance(o, BaseException)), None)
            if error is None:
                done[tp] = records[-1].offset + 1
                continue
            # Not committed: read this partition's records again after a pause.
            self._consumer.seek(tp, records[0].offset)
            first_error = first_error or error
        if done:
            try:
                await self._consumer.commit(done)
            except (CommitFailedError, IllegalStateError):
                # A rebalance took a partition: its new owner reads the records again and
                # gets the same answers (results are de-duplicated by event id).
                log.warning("partition revoked before commit", extra={"partitions": len(done)})
            except KafkaError as exc:
                return ("commit failed", exc)
        if first_error is not None:
            return ("batch not fully handled; retrying", first_error)
        return None

    async def _backoff(self, what: str, error: BaseException) -> None:
        self._failures += 1
        level = logging.ERROR if not _transient(error) else logging.WARNING
        if self._failures == 1 or self._failures % 10 == 0:
            log.log(
                level,
                what,
                exc_info=error if level == logging.ERROR else None,
                extra={"error": _describe(error), "failures": self._failures},
            )
        await _sleep_backoff(self._failures, self._backoff_max_s)

    async def handle(self, raw: bytes, headers: Iterable[tuple[str, bytes]] | None = None) -> None:
        """Handle one request (``headers``: the Kafka record's, for payrail's request id)."""
        token = _REQUEST_ID.set(_request_id_from(headers))
        try:
            await self._handle(raw)
        finally:
            _REQUEST_ID.reset(token)

    async def _handle(self, raw: bytes) -> None:
        try:
            request = self._format.decode_request(raw)
        except FormatError as exc:
            log.error("undecodable request dropped", extra={"reason": exc.reason})
            return
        previous = self._answered.get(request.payment_id)
        if previous is not None:
            await self._report(request, previous)
            return
        card: CardData | None = None
        if request.sealed_card is not None:
            try:
                card = unseal_card(self._key, request.sealed_card, payment_id=request.payment_id)
            except SealingError:
                log.error("card could not be unsealed", extra={"payment_id": request.payment_id})
                declined = result_for(
                    request,
                    approved=False,
                    failure_code="card_unreadable",
                    failure_message="the card could not be opened by the gateway",
                )
                self._remember(request.payment_id, declined)
                await self._report(request, declined)
                return
        result = await self._charge(request, card)
        if result is None:
            return  # the provider never answers this one
        self._remember(request.payment_id, result)
        await self._report(request, result)

    async def _report(self, request: GatewayRequest, result: GatewayResult) -> None:
        try:
            # Alone or in a batch, whichever the batcher makes of it; this task keeps
            # its request id bound, so the lines below carry it either way.
            reply = await self._batcher.submit(result, _REQUEST_ID.get())
            self._unknown_tries.pop(request.request_id, None)
            refused = _STATUS_OF.get(reply.disposition)
            if refused is not None:
                # payrail holds another final outcome, or never gave us this payment.
                log.error(
                    "result not accepted",
                    extra={"payment_id": request.payment_id, "code": refused.name},
                )
                return
            log.info(
                "result reported",
                extra={
                    "payment_id": request.payment_id,
                    "attempt": request.attempt,
                    "outcome": result.outcome,
                    "failure_code": result.failure_code,
                    "duplicate": reply.duplicate,
                },
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _RETRYABLE:
                raise  # the batch is read again later
            if error.code() in _UNEXPLAINED:
                tries = self._unknown_tries.get(request.request_id, 0) + 1
                if tries < self._unknown_tries_max:
                    self._unknown_tries[request.request_id] = tries
                    raise
                self._unknown_tries.pop(request.request_id, None)
            # FAILED_PRECONDITION: payrail already holds another final outcome.
            log.error(
                "result not accepted",
                extra={"payment_id": request.payment_id, "code": error.code().name},
            )

    def _remember(self, payment_id: str, result: GatewayResult) -> None:
        self._answered[payment_id] = result
        while len(self._answered) > self._answered_max:
            self._answered.popitem(last=False)


__all__ = [
    "REQUEST_ID_KEY",
    "CallbackClient",
    "Charge",
    "GatewayWorker",
    "RequestIdLogFilter",
    "ResultBatcher",
    "connect",
    "current_request_id",
    "result_for",
]
