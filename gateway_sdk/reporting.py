"""Reporting results to payrail: the signed calls and the batcher that groups them.

:class:`CallbackClient` makes ``CallbackService/ReportResult`` (one result) and
``ReportResults`` (many, in one signed payload that payrail applies in one transaction)
calls, signed with the gateway's secrets and retried while payrail is briefly
unreachable. :class:`ResultBatcher` gathers the results that are ready within a few
milliseconds of each other into one ``ReportResults`` call and hands each caller its own
result's reply. :mod:`gateway_sdk.runtime`'s worker uses both; a gateway with a loop of
its own can too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

import grpc

from gateway_sdk.formats.base import BATCH_RESULTS_MAX, FormatError, GatewayResult, WireFormat
from gateway_sdk.signing import CallbackSecret, signature_metadata
from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc

log = logging.getLogger(__name__)

# payrail's request id: the Kafka header and the gRPC metadata key.
REQUEST_ID_KEY = "x-request-id"
# payrail's request id of the request being handled (set by the worker): sent with the
# results reported meanwhile.
_REQUEST_ID: ContextVar[str | None] = ContextVar("gateway_sdk_request_id", default=None)


def current_request_id() -> str | None:
    """payrail's request id for the request being handled, if it sent one."""
    return _REQUEST_ID.get()


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

    async def report_many(
        self, results: Sequence[GatewayResult], *, request_ids: Sequence[str | None] = ()
    ) -> list[callbacks_pb2.ReportedResult]:
        """Report ``results`` with ``ReportResults``: what payrail did with each, in order.

        ``request_ids`` (empty, or one per result; None where there is none) is payrail's
        request id of the request each result answers; the first one goes as the call's
        ``x-request-id``. More results than one call may carry (500, or more bytes than
        the format's bound) go in several calls, one after the other. Each call is
        retried like :meth:`report`; an error of a call is raised as it is (the results
        of earlier calls stand: they are applied at most once, so reporting them again
        is harmless).
        """
        if request_ids and len(request_ids) != len(results):
            raise ValueError("request_ids must be empty or hold one id per result")
        ids = list(request_ids) or [None] * len(results)
        replies: list[callbacks_pb2.ReportedResult] = []
        for start in range(0, len(results), BATCH_RESULTS_MAX):
            end = start + BATCH_RESULTS_MAX
            replies += await self._report_fitting(list(results[start:end]), ids[start:end])
        return replies

    async def _report_fitting(
        self, results: list[GatewayResult], request_ids: list[str | None]
    ) -> list[callbacks_pb2.ReportedResult]:
        """One call, or two halves when the format cannot encode them within its bound."""
        try:
            payload = self._format.encode_results(results)
        except FormatError as error:
            if error.reason != "oversized" or len(results) == 1:
                raise
            half = len(results) // 2
            return [
                *await self._report_fitting(results[:half], request_ids[:half]),
                *await self._report_fitting(results[half:], request_ids[half:]),
            ]
        request = callbacks_pb2.ReportResultsRequest(
            gateway_id=self._gateway_id,
            payload=payload,
            request_ids=[r or "" for r in request_ids] if any(request_ids) else [],
        )
        first_id = next((r for r in request_ids if r), None)
        for attempt in range(1, self._attempts_max + 1):
            metadata = signature_metadata(payload, self._secrets, timestamp=int(time.time()))
            if first_id is not None:
                metadata = (*metadata, (REQUEST_ID_KEY, first_id))
            try:
                reply: callbacks_pb2.ReportResultsResponse = await self._stub.ReportResults(
                    request, metadata=metadata, timeout=self._timeout_s
                )
            except grpc.aio.AioRpcError as error:
                if error.code() not in _RETRYABLE or attempt == self._attempts_max:
                    raise
                await _sleep_backoff(attempt, self._backoff_max_s)
                continue
            if len(reply.results) != len(results):
                raise RuntimeError("payrail answered a batch with another number of results")
            return list(reply.results)
        raise AssertionError("unreachable")


# What a batch reply says of one result, by name (ReportedResult.disposition).
APPLIED: Final = callbacks_pb2.RESULT_DISPOSITION_APPLIED
DUPLICATE: Final = callbacks_pb2.RESULT_DISPOSITION_DUPLICATE
NOT_FOUND: Final = callbacks_pb2.RESULT_DISPOSITION_NOT_FOUND
CONFLICT: Final = callbacks_pb2.RESULT_DISPOSITION_CONFLICT
# What ReportResult answers for a result a batch reports NOT_FOUND or CONFLICT.
_STATUS_OF: Final = {
    NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
}
_DISPOSITION_OF: Final = {status: disposition for disposition, status in _STATUS_OF.items()}


@dataclass
class _Waiting:
    """A result waiting in the batcher, and where its reply goes."""

    result: GatewayResult
    request_id: str | None
    reply: asyncio.Future[callbacks_pb2.ReportedResult]


class ResultBatcher:
    """Gathers the results that are ready within ``linger_ms`` of the first one (at most
    ``batch_max``) into one ``ReportResults`` call, and hands each submitter its own
    result's reply. An error of the whole call is each submitter's error — except an
    unexplained one (``INTERNAL``, ``UNKNOWN``: something in the batch failed payrail)
    and ``UNIMPLEMENTED`` (a payrail without batches; then for good), after which the
    batch's results are reported one by one with ``ReportResult``, so one bad result
    never holds the others back."""

    def __init__(
        self, callbacks: CallbackClient, *, linger_ms: float = 5.0, batch_max: int = 100
    ) -> None:
        if not 1 <= batch_max <= BATCH_RESULTS_MAX:
            raise ValueError(f"batch_max must be between 1 and {BATCH_RESULTS_MAX}")
        if not 0 <= linger_ms <= 1000:
            raise ValueError("linger_ms must be between 0 and 1000")
        self._callbacks = callbacks
        self._linger_s = linger_ms / 1000
        self._batch_max = batch_max
        self._batching = batch_max > 1
        self._waiting: list[_Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(
        self, result: GatewayResult, request_id: str | None = None
    ) -> callbacks_pb2.ReportedResult:
        """What payrail did with ``result`` (raises the call's error when it failed)."""
        if not self._batching:
            return await self._one(_Waiting(result, request_id, _future()))
        waiting = _Waiting(result, request_id, _future())
        self._waiting.append(waiting)
        if len(self._waiting) >= self._batch_max:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._flush)
        return await waiting.reply

    def close(self) -> None:
        """Stop: what waits or is being sent is cancelled (its records are read again)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiting in self._waiting:
            waiting.reply.cancel()
        self._waiting = []
        for task in self._sending:
            task.cancel()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = [w for w in self._waiting if not w.reply.done()]
        self._waiting = []
        if batch:
            task = asyncio.create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Waiting]) -> None:
        try:
            await self._send_now(batch)
        finally:
            # Cancelled (close): no submitter may wait for a reply that never comes.
            for waiting in batch:
                if not waiting.reply.done():
                    waiting.reply.cancel()

    async def _send_now(self, batch: list[_Waiting]) -> None:
        try:
            if len(batch) == 1:
                replies = [await self._one(batch[0])]
            else:
                replies = await self._callbacks.report_many(
                    [w.result for w in batch], request_ids=[w.request_id for w in batch]
                )
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                log.warning("payrail serves no batches; reporting results one by one")
                self._batching = False
            elif error.code() not in _UNEXPLAINED or len(batch) == 1:
                _fail(batch, error)
                return
            await asyncio.gather(*(self._one_into(w) for w in batch))
            return
        except Exception as error:  # encoding, a reply of the wrong shape: each one's error
            _fail(batch, error)
            return
        for waiting, reply in zip(batch, replies, strict=True):
            if not waiting.reply.done():
                waiting.reply.set_result(reply)

    async def _one_into(self, waiting: _Waiting) -> None:
        try:
            reply = await self._one(waiting)
        except Exception as error:
            _fail([waiting], error)
            return
        if not waiting.reply.done():
            waiting.reply.set_result(reply)

    async def _one(self, waiting: _Waiting) -> callbacks_pb2.ReportedResult:
        """``ReportResult`` for one result, answered as a batch would answer for it."""
        result = waiting.result
        token = _REQUEST_ID.set(waiting.request_id)
        try:
            reply = await self._callbacks.report(result)
        except grpc.aio.AioRpcError as error:
            refused = _DISPOSITION_OF.get(error.code())
            if refused is None:
                raise
            return callbacks_pb2.ReportedResult(
                event_id=result.event_id, payment_id=result.payment_id, disposition=refused
            )
        finally:
            _REQUEST_ID.reset(token)
        return callbacks_pb2.ReportedResult(
            event_id=result.event_id,
            payment_id=result.payment_id,
            disposition=DUPLICATE if reply.duplicate else APPLIED,
            duplicate=reply.duplicate,
        )


def _future() -> asyncio.Future[callbacks_pb2.ReportedResult]:
    return asyncio.get_running_loop().create_future()


def _fail(batch: Sequence[_Waiting], error: BaseException) -> None:
    for waiting in batch:
        if not waiting.reply.done():
            waiting.reply.set_exception(error)


__all__ = [
    "APPLIED",
    "CONFLICT",
    "DUPLICATE",
    "NOT_FOUND",
    "REQUEST_ID_KEY",
    "CallbackClient",
    "ResultBatcher",
    "connect",
    "current_request_id",
]
