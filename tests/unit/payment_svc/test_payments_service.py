"""The payment use cases on in-memory fakes of their ports (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from payment_svc.domain.admission import BacklogPolicy, admit
from payment_svc.domain.cards import CardInput, Secret
from payment_svc.domain.errors import (
    IdempotencyKeyReused,
    InsufficientFunds,
    NotFound,
    ProcessingBacklog,
    ValidationFailed,
)
from payment_svc.domain.money import CURRENCIES, AmountLimits, Money
from payment_svc.domain.status import PaymentKind, PaymentStatus
from payment_svc.domain.validation import CreatePaymentCommand
from payment_svc.service.payments import Payments
from payment_svc.service.ports import (
    BalanceView,
    ExistingKey,
    NewPayment,
    PageCursor,
    PaymentView,
)
from payment_svc.vault import CardVault, SealedCvc

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
USER = "00000000-0000-0000-0000-0000000000aa"


class FakeRepository:
    def __init__(self, wallet_minor: int = 0) -> None:
        self.payments: dict[str, PaymentView] = {}
        self.keys: dict[tuple[str, str], ExistingKey] = {}
        self.created: list[NewPayment] = []
        self.wallet_minor = wallet_minor
        self.held_minor = 0

    async def create(self, new: NewPayment) -> PaymentView | ExistingKey:
        key = (new.payment.user_id, new.idempotency_key)
        if key in self.keys:
            return self.keys[key]
        if new.hold_minor > self.wallet_minor - self.held_minor:
            raise InsufficientFunds(new.payment.amount.currency_code)
        self.held_minor += new.hold_minor
        self.keys[key] = ExistingKey(new.payment.payment_id, new.request_hash)
        self.payments[new.payment.payment_id] = new.payment
        self.created.append(new)
        return new.payment

    async def key_exists(self, user_id: str, idempotency_key: str) -> bool:
        return (user_id, idempotency_key) in self.keys

    async def get(self, user_id: str, payment_id: str) -> PaymentView | None:
        view = self.payments.get(payment_id)
        return view if view is not None and view.user_id == user_id else None

    async def list(
        self,
        user_id: str,
        *,
        limit: int,
        after: PageCursor | None,
        status: PaymentStatus | None,
        kind: PaymentKind | None,
    ) -> Sequence[PaymentView]:
        rows = sorted(
            (p for p in self.payments.values() if p.user_id == user_id),
            key=lambda p: (p.create_time, p.payment_id),
            reverse=True,
        )
        if after is not None:
            rows = [
                p
                for p in rows
                if (p.create_time, p.payment_id) < (after.create_time, after.payment_id)
            ]
        return rows[:limit]

    async def cancel(self, user_id: str, payment_id: str, now: datetime) -> PaymentView:
        view = await self.get(user_id, payment_id)
        if view is None:
            raise NotFound("payment")
        self.payments[payment_id] = replace(
            view, status=PaymentStatus.CANCELED, version=view.version + 1
        )
        return self.payments[payment_id]

    async def balances(self, user_id: str, currency_code: str | None) -> Sequence[BalanceView]:
        return [BalanceView("USD", self.wallet_minor - self.held_minor, self.held_minor)]


class FakeCache:
    def __init__(self) -> None:
        self.entries: dict[str, PaymentView] = {}

    async def get(self, payment_id: str) -> PaymentView | None:
        return self.entries.get(payment_id)

    async def put(self, view: PaymentView) -> None:
        current = self.entries.get(view.payment_id)
        if current is None or current.version < view.version:
            self.entries[view.payment_id] = view

    async def forget(self, payment_id: str) -> None:
        self.entries.pop(payment_id, None)

    async def put_many(self, views: Sequence[PaymentView]) -> None:
        for view in views:
            await self.put(view)


class FakeCvcs:
    def __init__(self) -> None:
        self.sealed: dict[str, SealedCvc] = {}

    async def put(self, payment_id: str, sealed: SealedCvc) -> None:
        self.sealed[payment_id] = sealed


VAULT = CardVault(
    {"k1": bytes(range(1, 33))}, active_key_id="k1", fingerprint_key=bytes(range(2, 34))
)


class FakeAdmission:
    """The backlog gate with a reading the test sets."""

    def __init__(self, policy: BacklogPolicy) -> None:
        self.policy = policy
        self.unsettled: int | None = None

    def admit(self) -> None:
        admit(self.policy, self.unsettled)


def make(
    repository: FakeRepository | None = None, admission: FakeAdmission | None = None
) -> tuple[Payments, FakeRepository, FakeCache, FakeCvcs]:
    repo, cache, cvcs = repository or FakeRepository(), FakeCache(), FakeCvcs()
    payments = Payments(
        repository=repo,
        cache=cache,
        cvcs=cvcs,
        vault=VAULT,
        currencies=CURRENCIES,
        limits=AmountLimits(),
        admission=admission,
        clock=lambda: NOW,
    )
    return payments, repo, cache, cvcs


def command(
    key: str = "k-1",
    amount_minor: int = 1000,
    kind: PaymentKind = PaymentKind.DEPOSIT,
    cvc: str = "123",
) -> CreatePaymentCommand:
    return CreatePaymentCommand(
        user_id=USER,
        idempotency_key=key,
        kind=kind,
        amount=Money("USD", amount_minor),
        card=CardInput(Secret("4242 4242 4242 4242"), 12, 2030, Secret(cvc)),
    )


@pytest.mark.asyncio
async def test_create_vaults_the_card_and_seals_the_cvc() -> None:
    payments, repo, _, cvcs = make()
    created = await payments.create(command())
    assert not created.replayed
    assert created.payment.status is PaymentStatus.PENDING
    assert created.payment.card is not None
    assert created.payment.card.masked_number == "424242******4242"
    new = repo.created[0]
    assert new.sealed_pan is not None
    pid = created.payment.payment_id
    assert VAULT.decrypt_pan(new.sealed_pan, pid).reveal() == "4242424242424242"
    assert VAULT.open_cvc(cvcs.sealed[pid], pid).reveal() == "123"
    assert "123" not in new.request_hash


@pytest.mark.asyncio
async def test_replay_and_reuse() -> None:
    payments, repo, _, _ = make()
    first = await payments.create(command())
    again = await payments.create(command(cvc="999"))  # the CVC is not part of the request
    assert again.replayed
    assert again.payment.payment_id == first.payment.payment_id
    with pytest.raises(IdempotencyKeyReused):
        await payments.create(command(amount_minor=2000))
    assert len(repo.created) == 1


@pytest.mark.asyncio
async def test_invalid_command_never_reaches_the_repository() -> None:
    payments, repo, _, cvcs = make()
    with pytest.raises(ValidationFailed):
        await payments.create(command(amount_minor=-5))
    assert repo.created == []
    assert cvcs.sealed == {}


@pytest.mark.asyncio
async def test_withdrawal_holds_its_amount() -> None:
    payments, repo, _, _ = make(FakeRepository(wallet_minor=1500))
    await payments.create(command(kind=PaymentKind.WITHDRAWAL, amount_minor=1000))
    assert repo.created[0].hold_minor == 1000
    with pytest.raises(InsufficientFunds):
        await payments.create(command("k-2", kind=PaymentKind.WITHDRAWAL, amount_minor=1000))
    assert (await payments.create(command("k-3"))).payment.kind is PaymentKind.DEPOSIT
    assert repo.created[-1].hold_minor == 0


@pytest.mark.asyncio
async def test_cached_copy_is_ownership_checked_and_replaced_on_cancel() -> None:
    payments, _, cache, _ = make()
    pid = (await payments.create(command())).payment.payment_id
    await payments.get(USER, pid)
    assert pid in cache.entries
    with pytest.raises(NotFound):
        await payments.get("someone-else", pid)
    await payments.cancel(USER, pid)
    assert cache.entries[pid].status is PaymentStatus.CANCELED


@pytest.mark.asyncio
async def test_list_pages_with_a_cursor() -> None:
    payments, repo, _, _ = make()
    for i in range(5):
        view = (await payments.create(command(f"k-{i}"))).payment
        repo.payments[view.payment_id] = replace(view, create_time=NOW + timedelta(seconds=i))
    page, cursor = await payments.list(USER, page_size=2, after=None, status=None, kind=None)
    assert len(page) == 2
    assert cursor is not None
    seen = list(page)
    while cursor is not None:
        page, cursor = await payments.list(USER, page_size=2, after=cursor, status=None, kind=None)
        seen += page
    assert len({p.payment_id for p in seen}) == 5


@pytest.mark.asyncio
async def test_balance_currency_must_be_supported() -> None:
    payments, _, _, _ = make()
    with pytest.raises(ValidationFailed):
        await payments.balances(USER, "XXX")
    assert (await payments.balances(USER, None))[0].currency_code == "USD"


@pytest.mark.asyncio
async def test_a_backlog_refuses_new_payments_until_it_drains() -> None:
    gate = FakeAdmission(BacklogPolicy(unsettled_max=100, check_interval_s=0.5))
    payments, repo, _, cvcs = make(admission=gate)
    gate.unsettled = 99
    await payments.create(command("k-1"))
    gate.unsettled = 100
    with pytest.raises(ProcessingBacklog) as refused:
        await payments.create(command("k-2"))
    assert (refused.value.unsettled, refused.value.unsettled_max) == (100, 100)
    assert refused.value.retriable
    assert refused.value.retry_after_s == 0.5
    assert len(repo.created) == 1
    assert len(cvcs.sealed) == 1  # nothing of the refused one was kept
    # Bad input still hears about its fields, backlog or not.
    with pytest.raises(ValidationFailed):
        await payments.create(command("k-3", amount_minor=-5))
    # A retry of the accepted one is answered during the backlog: it is no new work.
    replay = await payments.create(command("k-1"))
    assert replay.replayed
    with pytest.raises(IdempotencyKeyReused):
        await payments.create(command("k-1", amount_minor=2000))
    gate.unsettled = 10
    await payments.create(command("k-2"))
    assert len(repo.created) == 2


def test_backlog_rule_edges() -> None:
    policy = BacklogPolicy(unsettled_max=3)
    admit(policy, None)  # no reading yet: admitted
    admit(policy, 2)
    with pytest.raises(ProcessingBacklog, match="3 accepted payments are still being processed"):
        admit(policy, 3)
    admit(BacklogPolicy(unsettled_max=0), 10**9)  # the rule switched off
    with pytest.raises(ValueError, match="unsettled_max"):
        BacklogPolicy(unsettled_max=-1)
    with pytest.raises(ValueError, match="check_interval_s"):
        BacklogPolicy(check_interval_s=0)
