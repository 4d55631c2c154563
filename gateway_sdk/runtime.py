"""The network half of the SDK: consume your topic, report results, signed.

:class:`GatewayWorker` runs a gateway: it consumes ``gateway.<id>.requests`` in a
consumer group, decodes each request in the gateway's wire format, opens the sealed card
with the gateway's private key, calls your ``charge`` function and reports its result
through ``CallbackService/ReportResult`` with a correct signature. The offset is
committed only after the result was accepted (or ``charge`` chose not to answer), so a
crash re-delivers the request; results carry ``event_id = <request_id>/result``, so
payrail applies a re-delivered result once. Nothing but cancellation ends the worker:
while payrail or Kafka is unreachable it waits and retries with capped, jittered backoff
for as long as it takes (``waiting`` is True meanwhile), re-reading the batch without
charging any payment twice; a result payrail refuses as final is logged and dropped.

Tracing: a request carries payrail's request id in its ``x-request-id`` Kafka header. The
worker binds it while it handles the request (:func:`current_request_id`; add
:class:`RequestIdLogFilter` to your log handler to see it on your own log lines) and
sends it with the result as ``x-request-id`` gRPC metadata, so the payment's lines in
payrail's logs and in yours share one id.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar

import grpc
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway_sdk.formats.base import FormatError, GatewayRequest, GatewayResult, WireFormat
from gateway_sdk.sealing import CardData, SealingError, unseal_card
from gateway_sdk.signing import CallbackSecret, signature_metadata
from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc

log = logging.getLogger(__name__)

# payrail's request id: the Kafka header and the gRPC metadata key.
REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_REQUEST_ID: ContextVar[str | None] = ContextVar("gateway_sdk_request_id", default=None)


def current_request_id() -> str | None:
    """payrail's request id for the request being handled, if it sent one."""
    return _REQUEST_ID.get()


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

# payrail (or the network) is unreachable, slow or busy: wait and report again, for as
# long as it takes.
_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)
# An error payrail did not explain: retried a bounded number of times.
_UNEXPLAINED = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})


async def _sleep_backoff(attempt: int, max_s: float, *, base_s: float = 0.2) -> None:
    """Capped exponential backoff with full jitter before try ``attempt + 1``."""
    ceiling = min(max_s, base_s * 2 ** min(attempt - 1, 20))
    await asyncio.sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not security


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


def connect(target: str) -> grpc.aio.Channel:
    """A channel to payrail's CallbackService that notices payrail is back within a
    couple of seconds after an outage (gRPC's default reconnect backoff grows to two
    minutes), with channel-level retries off: :class:`CallbackClient` retries itself."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2_000),
        ],
    )


class CallbackClient:
    """Reports results to payrail's CallbackService, signed with the gateway's secrets."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        gateway_id: str,
        wire_format: WireFormat,
        secrets: Sequence[CallbackSecret],
        timeout_s: float = 5.0,
        attempts_max: int = 5,
        backoff_max_s: float = 5.0,
    ) -> None:
        self._stub = callbacks_pb2_grpc.CallbackServiceStub(channel)
        self._gateway_id = gateway_id
        self._format = wire_format
        self._secrets = tuple(secrets)
        self._timeout_s = timeout_s
        self._attempts_max = attempts_max
        self._backoff_max_s = backoff_max_s

    async def report(self, result: GatewayResult) -> callbacks_pb2.ReportResultResponse:
        payload = self._format.encode_result(result)
        request = callbacks_pb2.ReportResultRequest(gateway_id=self._gateway_id, payload=payload)
        for attempt in range(1, self._attempts_max + 1):
            # A fresh timestamp per try: a retry after a pause must not arrive stale.
            metadata = signature_metadata(payload, self._secrets, timestamp=int(time.time()))
            request_id = _REQUEST_ID.get()
            if request_id is not None:
                metadata = (*metadata, (REQUEST_ID_KEY, request_id))
            try:
                reply: callbacks_pb2.ReportResultResponse = await self._stub.ReportResult(
                    request, metadata=metadata, timeout=self._timeout_s
                )
                return reply
            except grpc.aio.AioRpcError as error:
                if error.code() not in _RETRYABLE or attempt == self._attempts_max:
                    raise
                await _sleep_backoff(attempt, self._backoff_max_s)
        raise AssertionError("unreachable")


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
    ) -> None:
        self._consumer = consumer
        self._format = wire_format
        self._key = private_key
        self._callbacks = callbacks
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
        answered are never charged again, only their result is reported again."""
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=1000, max_records=50)
            except KafkaError as exc:
                await self._backoff("fetch failed", exc)
                continue
            for tp, records in batches.items():
                outcomes = await asyncio.gather(
                    *(self.handle(r.value, r.headers) for r in records), return_exceptions=True
                )
                failed = [o for o in outcomes if isinstance(o, BaseException)]
                if failed:
                    # Not committed: read the batch again after a pause.
                    self._consumer.seek(tp, records[0].offset)
                    await self._backoff("batch not fully handled; retrying", failed[0])
                    break  # fetch again: the seek applies to the next getmany
                try:
                    await self._consumer.commit({tp: records[-1].offset + 1})
                except (CommitFailedError, IllegalStateError):
                    # A rebalance took the partition: its new owner reads the batch again
                    # and gets the same answers (results are de-duplicated by event id).
                    log.warning("partition revoked before commit", extra={"partition": tp})
                except KafkaError as exc:
                    await self._backoff("commit failed", exc)
            else:
                if self._failures:
                    log.info("worker recovered", extra={"failures": self._failures})
                self._failures = 0

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
            reply = await self._callbacks.report(result)
            self._unknown_tries.pop(request.request_id, None)
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
    "connect",
    "current_request_id",
    "result_for",
]
