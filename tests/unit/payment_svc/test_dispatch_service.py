"""Processing's dispatch use cases on an in-memory repository that enforces the same rules
as PostgreSQL's (it calls the same Payment aggregate): a batch of dispatches, the card
opened from the vault and sealed per gateway with its CVC, the cache written once for
the batch, unknown payments answered None, and each item's lifecycle line under its own
request id."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from payment_svc.domain.errors import NotFound, ValidationFailed
from payment_svc.domain.money import Money
from payment_svc.domain.payment import CardView, Dispatched, StatusChanged
from payment_svc.domain.status import PaymentKind, PaymentStatus
from payment_svc.service.ports import PaymentView
from payment_svc.service.processing import CardPlaintext, Processing
from payment_svc.service.processing_ports import DispatchItem, DispatchRecord, GatewayView
from payment_svc.vault import SealedCvc, SealedPan
from payrail_common.tracing import RequestIdFilter

NOW = datetime(2030, 1, 1, tzinfo=UTC)
GATEWAY = GatewayView(
    "gw-a", "json", "gateway.gw-a.requests", ("DEPOSIT",), ("USD",), 10, 30, b"k" * 32
)


def pending(payment_id: str, *, status: PaymentStatus = PaymentStatus.PENDING) -> PaymentView:
    return PaymentView(
        payment_id=payment_id,
        user_id="00000000-0000-4000-8000-0000000000aa",
        kind=PaymentKind.DEPOSIT,
        status=status,
        funding_source=None,
        amount=Money("USD", 1000),
        description="",
        card=CardView(None, "424242******4242", 12, 2031),
        merchant=None,
        failure_code="",
        failure_message="",
        version=1,
        create_time=NOW,
        update_time=NOW,
    )


class InMemoryPayments:
    """The repository's dispatch half, rules from the aggregate, state in a dict."""

    def __init__(self, *payments: PaymentView) -> None:
        self.payments = {p.payment_id: p for p in payments}
        self.deadlines: dict[str, datetime] = {}
        self.batches = 0

    async def begin_dispatches(
        self, items: Sequence[DispatchItem], now: datetime
    ) -> list[DispatchRecord | None]:
        self.batches += 1
        answers: list[DispatchRecord | None] = []
        for item in items:
            current = self.payments.get(item.payment_id)
            if current is None or item.gateway_id != GATEWAY.gateway_id:
                answers.append(None)
                continue
            change = current.begin_dispatch(item.gateway_id, now)
            if change is None:
                answers.append(DispatchRecord(current, GATEWAY, 0, None, None, dispatch=False))
                continue
            if change.changed:
                assert isinstance(change.events[0], StatusChanged)
                assert isinstance(change.events[1], Dispatched)
                self.payments[item.payment_id] = change.payment
                self.deadlines[item.payment_id] = now + timedelta(seconds=30)
            sealed = SealedPan("k1", b"n" * 12, item.payment_id.encode())
            answers.append(
                DispatchRecord(
                    change.payment,
                    GATEWAY,
                    change.payment.attempt,
                    self.deadlines[item.payment_id],
                    sealed,
                    dispatch=True,
                    changed=change.changed,
                )
            )
        return answers

    async def begin_dispatch(
        self, payment_id: str, gateway_id: str, now: datetime
    ) -> DispatchRecord:
        (record,) = await self.begin_dispatches([DispatchItem(payment_id, gateway_id)], now)
        if record is None:
            raise NotFound("payment")
        return record


class FakeVault:
    def decrypt_pan(self, sealed: SealedPan, payment_id: str) -> object:
        class Pan:
            def reveal(self) -> str:
                return "4242424242424242"

        return Pan()

    def open_cvc(self, sealed: SealedCvc, payment_id: str) -> object:
        class Cvc:
            def reveal(self) -> str:
                return sealed.ciphertext.decode()

        return Cvc()


class FakeCvcs:
    def __init__(self, cvcs: dict[str, str]) -> None:
        self.cvcs = {pid: SealedCvc("k1", b"n" * 12, cvc.encode()) for pid, cvc in cvcs.items()}
        self.calls = 0

    async def take(self, payment_id: str) -> SealedCvc | None:
        self.calls += 1
        return self.cvcs.pop(payment_id, None)

    async def take_many(self, payment_ids: Sequence[str]) -> list[SealedCvc | None]:
        self.calls += 1
        return [self.cvcs.pop(pid, None) for pid in payment_ids]


class FakeCrypto:
    def __init__(self) -> None:
        self.sealed: list[tuple[str, str]] = []

    def verify(self, *args: object) -> None:
        raise AssertionError("not used")

    def decode_result(self, *args: object) -> object:
        raise AssertionError("not used")

    def seal_card(self, public_key: bytes, card: CardPlaintext, payment_id: str) -> bytes:
        self.sealed.append((payment_id, card.cvc))
        return f"sealed:{payment_id}".encode()


class FakeCache:
    def __init__(self) -> None:
        self.writes: list[list[str]] = []

    async def get(self, payment_id: str) -> PaymentView | None:
        return None

    async def put(self, view: PaymentView) -> None:
        self.writes.append([view.payment_id])

    async def put_many(self, views: Sequence[PaymentView]) -> None:
        self.writes.append([v.payment_id for v in views])

    async def forget(self, payment_id: str) -> None:
        return None


P1, P2, P3, MISSING = (f"00000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3, 9))


def processing(repo: InMemoryPayments, cvcs: FakeCvcs) -> tuple[Processing, FakeCrypto, FakeCache]:
    crypto, cache = FakeCrypto(), FakeCache()
    made = Processing(
        repository=repo,  # type: ignore[arg-type]
        vault=FakeVault(),  # type: ignore[arg-type]
        cvcs=cvcs,
        crypto=crypto,  # type: ignore[arg-type]
        cache=cache,
        clock=lambda: NOW,
    )
    return made, crypto, cache


@pytest.mark.asyncio
async def test_a_batch_of_dispatches_seals_each_card_with_its_cvc(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repo = InMemoryPayments(pending(P1), pending(P2), pending(P3, status=PaymentStatus.CANCELED))
    cvcs = FakeCvcs({P1: "123", P2: "456"})
    made, crypto, cache = processing(repo, cvcs)
    caplog.handler.addFilter(RequestIdFilter())  # what every service's log handler has
    with caplog.at_level(logging.INFO, logger="payrail.lifecycle"):
        dispatches = await made.begin_dispatches(
            [
                DispatchItem(P1, "gw-a", "req-1"),
                DispatchItem(P2, "gw-a", "req-2"),
                DispatchItem(P3, "gw-a", "req-3"),
                DispatchItem(MISSING, "gw-a", "req-4"),
                DispatchItem(P1, "gw-b", "req-5"),
            ]
        )
    first, second, canceled, missing, elsewhere = dispatches
    assert first is not None
    assert second is not None
    assert first.record.dispatch
    assert first.record.payment.status is PaymentStatus.PROCESSING
    assert (first.record.payment.gateway_id, first.record.attempt) == ("gw-a", 1)
    assert first.sealed_card == f"sealed:{P1}".encode()
    assert crypto.sealed == [(P1, "123"), (P2, "456")]
    assert canceled is not None
    assert not canceled.record.dispatch
    assert canceled.sealed_card == b""
    assert missing is None
    assert elsewhere is None  # no such gateway
    assert repo.batches == 1
    assert cvcs.calls == 1  # every CVC of the batch in one call
    assert len(cache.writes) == 1  # the cache written once for the batch
    lines = [(r.getMessage(), getattr(r, "request_id", None)) for r in caplog.records]
    assert lines == [("payment dispatched", "req-1"), ("payment dispatched", "req-2")]


@pytest.mark.asyncio
async def test_a_redelivered_dispatch_sends_the_same_attempt_and_logs_nothing_new(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repo = InMemoryPayments(pending(P1))
    made, _, _ = processing(repo, FakeCvcs({}))
    await made.begin_dispatches([DispatchItem(P1, "gw-a")])
    with caplog.at_level(logging.INFO, logger="payrail.lifecycle"):
        (again,) = await made.begin_dispatches([DispatchItem(P1, "gw-a")])
    assert again is not None
    assert again.record.dispatch
    assert again.record.attempt == 1
    assert repo.payments[P1].version == 2  # not moved twice
    assert caplog.records == []
    # A verified payment awaiting its owner may go; an unverified one may not.
    held = replace(pending(P2), status=PaymentStatus.REQUIRES_VERIFICATION)
    repo.payments[P2] = held
    (waiting,) = await made.begin_dispatches([DispatchItem(P2, "gw-a")])
    assert waiting is not None
    assert not waiting.record.dispatch
    repo.payments[P2] = replace(held, verified=True)
    (verified,) = await made.begin_dispatches([DispatchItem(P2, "gw-a")])
    assert verified is not None
    assert verified.record.dispatch


@pytest.mark.asyncio
async def test_a_batch_is_bounded() -> None:
    made, _, _ = processing(InMemoryPayments(), FakeCvcs({}))
    with pytest.raises(ValidationFailed):
        await made.begin_dispatches([])
    with pytest.raises(ValidationFailed):
        await made.begin_dispatches([DispatchItem(P1, "gw-a")] * 501)
