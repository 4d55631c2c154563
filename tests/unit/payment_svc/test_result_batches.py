"""ReportResults' use case on in-memory fakes: one signature for the whole call, results
applied in order with an outcome each, and per result its own request id on its lifecycle
line, its alert, and one cache write per payment."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from payment_svc.api.callbacks import outcomes_to_pb
from payment_svc.domain.errors import CallbackRejected, ResultConflict, ValidationFailed
from payment_svc.domain.money import Money
from payment_svc.domain.status import PaymentKind, PaymentStatus
from payment_svc.service.ports import PaymentView
from payment_svc.service.processing import Processing
from payment_svc.service.results import (
    BatchResult,
    Disposition,
    ResultBatches,
    ResultOutcome,
    with_request_ids,
)
from payrail.callbacks.v1 import callbacks_pb2
from payrail_common import tracing

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
GATEWAY = "sandbox-json"
HEADER = "t=1,v1=good"
P1, P2, P3 = (f"00000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3))


def processing_payment(payment_id: str, gateway_id: str = GATEWAY) -> PaymentView:
    return PaymentView(
        payment_id=payment_id,
        user_id="00000000-0000-0000-0000-0000000000aa",
        kind=PaymentKind.DEPOSIT,
        status=PaymentStatus.PROCESSING,
        funding_source=None,
        amount=Money("USD", 1000),
        description="",
        card=None,
        merchant=None,
        failure_code="",
        failure_message="",
        version=2,
        create_time=NOW,
        update_time=NOW,
        gateway_id=gateway_id,
        attempt=1,
    )


def result(
    event_id: str, payment_id: str, *, approved: bool = True, request_id: str | None = None
) -> BatchResult:
    return BatchResult(
        event_id=event_id,
        payment_id=payment_id,
        approved=approved,
        failure_code="" if approved else "card_declined",
        failure_message="",
        gateway_reference=f"ref-{event_id}" if approved else "",
        request_id=request_id,
    )


class FakeAuth:
    async def gateway_callback_auth(self, gateway_id: str) -> tuple[str, Sequence[bytes]] | None:
        return ("json", [b"s" * 32]) if gateway_id == GATEWAY else None

    # What Processing's repository also is (unused here).
    async def list_gateways(self) -> list[object]:
        return []


class Refused(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FakeCrypto:
    """Accepts the header "t=1,v1=good"; a payload is a key into ``batches``."""

    def __init__(self, batches: dict[bytes, list[BatchResult]]) -> None:
        self.batches = batches
        self.verified: list[bytes] = []

    def verify(self, payload: bytes, header: str, secrets: Sequence[bytes], now: int) -> None:
        if header != HEADER or not secrets:
            raise Refused("mismatch")
        self.verified.append(payload)

    def decode_results(self, wire_format: str, payload: bytes) -> Sequence[BatchResult]:
        if payload not in self.batches:
            raise ValueError("malformed")
        return self.batches[payload]


class FakeResults:
    """The adapter in memory: the aggregate's rules, event ids once per gateway,
    conflicts and unknown payments record nothing; in order."""

    def __init__(self, payments: Sequence[PaymentView]) -> None:
        self.payments = {p.payment_id: p for p in payments}
        self.events: set[tuple[str, str]] = set()
        self.calls: list[tuple[str, list[BatchResult]]] = []

    async def apply_results(
        self, gateway_id: str, results: Sequence[BatchResult], now: datetime
    ) -> list[ResultOutcome]:
        self.calls.append((gateway_id, list(results)))
        outcomes = []
        for r in results:
            current = self.payments.get(r.payment_id)
            if current is None or current.gateway_id != gateway_id:
                outcomes.append(ResultOutcome(r, Disposition.NOT_FOUND, None))
                continue
            if (gateway_id, r.event_id) in self.events:
                outcomes.append(ResultOutcome(r, Disposition.DUPLICATE, current))
                continue
            try:
                change = current.apply_result(
                    gateway_id,
                    approved=r.approved,
                    failure_code=r.failure_code,
                    failure_message=r.failure_message,
                    gateway_reference=r.gateway_reference,
                    now=now,
                )
            except ResultConflict as conflict:
                outcomes.append(ResultOutcome(r, Disposition.CONFLICT, current, conflict.current))
                continue
            self.events.add((gateway_id, r.event_id))
            if not change.changed:
                outcomes.append(ResultOutcome(r, Disposition.DUPLICATE, current))
                continue
            self.payments[r.payment_id] = change.payment
            outcomes.append(ResultOutcome(r, Disposition.APPLIED, change.payment))
        return outcomes


class FakeCache:
    def __init__(self) -> None:
        self.puts: list[PaymentView] = []
        self.round_trips = 0

    async def get(self, payment_id: str) -> PaymentView | None:
        return None

    async def put(self, view: PaymentView) -> None:
        self.puts.append(view)
        self.round_trips += 1

    async def put_many(self, views: Sequence[PaymentView]) -> None:
        self.puts.extend(views)
        self.round_trips += 1

    async def forget(self, payment_id: str) -> None:
        pass


class Seen(logging.Handler):
    """Every record with the request id bound when it was logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str | None, logging.LogRecord]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.getMessage(), tracing.current(), record))


@pytest.fixture
def seen() -> Iterator[Seen]:
    handler = Seen()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def batches(
    repository: FakeResults, crypto: FakeCrypto, cache: FakeCache | None = None
) -> ResultBatches:
    return ResultBatches(
        auth=FakeAuth(),
        repository=repository,
        crypto=crypto,
        cache=cache or FakeCache(),
        clock=lambda: NOW,
    )


@pytest.mark.asyncio
async def test_every_result_gets_its_outcome_in_order_and_one_bad_one_blocks_nothing(
    seen: Seen,
) -> None:
    repository = FakeResults(
        [
            processing_payment(P1),
            replace(processing_payment(P2), status=PaymentStatus.COMPLETED, version=3),
            processing_payment(P3, gateway_id="sandbox-soap"),
        ]
    )
    repository.events.add((GATEWAY, "e-old"))
    payload = b"batch"
    crypto = FakeCrypto(
        {
            payload: [
                result("e1", P1, request_id="req-1"),
                result("e2", P2, approved=False, request_id="req-2"),  # conflict
                result("e3", P3, request_id="req-3"),  # another gateway's payment
                result("e-old", P1, request_id="req-4"),  # replayed event
                result("e5", P1, request_id="req-5"),  # the same outcome again
            ]
        }
    )
    cache = FakeCache()
    with tracing.bind("call-id"):
        outcomes = await batches(repository, crypto, cache).report(
            GATEWAY, payload, HEADER, ["req-1", "req-2", "req-3", "req-4", "req-5"]
        )
    assert [(o.result.event_id, o.disposition) for o in outcomes] == [
        ("e1", Disposition.APPLIED),
        ("e2", Disposition.CONFLICT),
        ("e3", Disposition.NOT_FOUND),
        ("e-old", Disposition.DUPLICATE),
        ("e5", Disposition.DUPLICATE),
    ]
    assert outcomes[1].conflict_status == "COMPLETED"
    assert repository.payments[P1].status is PaymentStatus.COMPLETED
    # One cache write per payment, with its last state (the foreign payment: none).
    assert sorted((p.payment_id, p.status) for p in cache.puts) == [
        (P1, PaymentStatus.COMPLETED),
        (P2, PaymentStatus.COMPLETED),
    ]
    assert cache.round_trips == 1
    lines = [(msg, rid) for msg, rid, _ in seen.records]
    assert ("payment completed", "req-1") in lines
    assert [m for m, _ in lines].count("payment completed") == 1
    assert ("ALERT gateway result conflicts with final state", "req-2") in lines
    assert ("gateway result for a payment it was not given", "req-3") in lines
    completed = next(r for m, _, r in seen.records if m == "payment completed")
    assert completed.gateway_outcome == "APPROVED"  # type: ignore[attr-defined]
    # The call's own id is bound again afterwards.
    assert tracing.current() is None


@pytest.mark.asyncio
async def test_results_without_request_ids_are_traced_under_the_call(seen: Seen) -> None:
    repository = FakeResults([processing_payment(P1), processing_payment(P2)])
    crypto = FakeCrypto({b"b": [result("e1", P1), result("e2", P2, approved=False)]})
    with tracing.bind("call-id"):
        outcomes = await batches(repository, crypto).report(GATEWAY, b"b", HEADER)
    assert [o.disposition for o in outcomes] == [Disposition.APPLIED] * 2
    lifecycle = [(m, rid) for m, rid, _ in seen.records if m.startswith("payment ")]
    assert lifecycle == [("payment completed", "call-id"), ("payment failed", "call-id")]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("gateway_id", "header", "payload", "detail"),
    [
        (GATEWAY, "t=1,v1=forged", b"b", "mismatch"),
        ("nope", HEADER, b"b", "unknown_gateway"),
        ("sandbox-json\x00", HEADER, b"b", "unknown_gateway"),
        (GATEWAY, HEADER, b"not a batch", "undecodable_payload"),
        (GATEWAY, HEADER, b"empty", "undecodable_payload"),
    ],
)
async def test_a_refused_call_changes_nothing(
    gateway_id: str, header: str, payload: bytes, detail: str
) -> None:
    repository = FakeResults([processing_payment(P1)])
    crypto = FakeCrypto({b"b": [result("e1", P1)], b"empty": []})
    cache = FakeCache()
    with pytest.raises(CallbackRejected) as refused:
        await batches(repository, crypto, cache).report(gateway_id, payload, header)
    assert refused.value.detail == detail
    assert repository.calls == []
    assert cache.puts == []


@pytest.mark.asyncio
async def test_request_ids_are_empty_or_one_per_result() -> None:
    repository = FakeResults([processing_payment(P1), processing_payment(P2)])
    crypto = FakeCrypto({b"b": [result("e1", P1), result("e2", P2)]})
    with pytest.raises(ValidationFailed) as invalid:
        await batches(repository, crypto).report(GATEWAY, b"b", HEADER, ["only-one"])
    assert [v.field for v in invalid.value.violations] == ["request_ids"]
    assert repository.calls == []
    await batches(repository, crypto).report(GATEWAY, b"b", HEADER, ["ok-1", "bad id!"])
    (_, applied) = repository.calls[0]
    # A malformed id is dropped: that result is traced under the call's id.
    assert [r.request_id for r in applied] == ["ok-1", None]


def test_with_request_ids_keeps_everything_else() -> None:
    original = [result("e1", P1, approved=False)]
    (tagged,) = with_request_ids(original, ["r-1"])
    assert tagged == replace(original[0], request_id="r-1")
    assert with_request_ids(original, []) == original


@pytest.mark.asyncio
async def test_a_repository_that_skips_a_result_is_a_fault() -> None:
    class Short(FakeResults):
        async def apply_results(
            self, gateway_id: str, results: Sequence[BatchResult], now: datetime
        ) -> list[ResultOutcome]:
            return (await super().apply_results(gateway_id, results, now))[:-1]

    crypto = FakeCrypto({b"b": [result("e1", P1), result("e2", P1)]})
    with pytest.raises(RuntimeError):
        await batches(Short([processing_payment(P1)]), crypto).report(GATEWAY, b"b", HEADER)


@pytest.mark.asyncio
async def test_processing_serves_batches_only_when_wired() -> None:
    repository = FakeResults([processing_payment(P1)])
    crypto = FakeCrypto({b"b": [result("e1", P1)]})
    common = {
        "repository": FakeAuth(),
        "vault": object(),
        "cvcs": object(),
        "crypto": crypto,
        "cache": FakeCache(),
        "clock": lambda: NOW,
    }
    bare = Processing(**common)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await bare.report_results(GATEWAY, b"b", HEADER)
    wired = Processing(**common, results=repository)  # type: ignore[arg-type]
    (outcome,) = await wired.report_results(GATEWAY, b"b", HEADER)
    assert outcome.disposition is Disposition.APPLIED


def test_outcomes_map_to_the_contract() -> None:
    payment = processing_payment(P1)
    reply = outcomes_to_pb(
        [
            ResultOutcome(result("e1", P1), Disposition.APPLIED, payment),
            ResultOutcome(result("e2", P1), Disposition.DUPLICATE, payment),
            ResultOutcome(result("e3", "x"), Disposition.NOT_FOUND, None),
            ResultOutcome(result("e4", P1), Disposition.CONFLICT, payment, "COMPLETED"),
        ]
    )
    assert [
        (r.event_id, r.payment_id, r.disposition, r.duplicate, r.payment_status)
        for r in reply.results
    ] == [
        ("e1", P1, callbacks_pb2.RESULT_DISPOSITION_APPLIED, False, ""),
        ("e2", P1, callbacks_pb2.RESULT_DISPOSITION_DUPLICATE, True, ""),
        ("e3", "x", callbacks_pb2.RESULT_DISPOSITION_NOT_FOUND, False, ""),
        ("e4", P1, callbacks_pb2.RESULT_DISPOSITION_CONFLICT, False, "COMPLETED"),
    ]
