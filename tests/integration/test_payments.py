"""Payment submission and reads through the gateway, against the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis.asyncio import Redis

from gateway_svc import bootstrap as gateway_bootstrap
from payment_svc import bootstrap as payment_bootstrap
from payment_svc.vault import CardVault, SealedCvc
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.keys import read_secret_file
from payrail_common.reasons import Reason
from tests.conftest import JwtKeys, StackEnv, free_port
from tests.helpers import User, register_and_login
from tests.integration.conftest import Platform, gateway_settings, payment_settings
from tests.rich_errors import assert_catalogued, rich_error

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

VISA = "4242 4242 4242 4242"


def stub(channel: grpc.aio.Channel) -> payments_pb2_grpc.PaymentServiceStub:
    return payments_pb2_grpc.PaymentServiceStub(channel)


def deposit(
    key: str | None = None, amount_minor: int = 1000, **card: Any
) -> pb.CreatePaymentRequest:
    fields: dict[str, Any] = {
        "number": VISA,
        "exp_month": 12,
        "exp_year": 2030,
        "cvc": "123",
        "holder_name": "Ada Lovelace",
    }
    fields.update(card)
    return pb.CreatePaymentRequest(
        idempotency_key=str(uuid.uuid4()) if key is None else key,
        kind=pb.PAYMENT_KIND_DEPOSIT,
        amount=pb.Money(currency_code="USD", amount_minor=amount_minor),
        card=pb.CardInput(**fields),
        description="top-up",
    )


def withdrawal(amount_minor: int, key: str | None = None) -> pb.CreatePaymentRequest:
    request = deposit(key, amount_minor)
    request.kind = pb.PAYMENT_KIND_WITHDRAWAL
    return request


def purchase(**merchant: Any) -> pb.CreatePaymentRequest:
    request = deposit()
    request.kind = pb.PAYMENT_KIND_PURCHASE
    fields: dict[str, Any] = {
        "merchant_id": "m-1",
        "name": "Cafe",
        "category_code": "5812",
        "country_code": "KR",
        "city": "Seoul",
        "latitude": 37.5665,
        "longitude": 126.978,
    }
    fields.update(merchant)
    request.merchant.CopyFrom(pb.Merchant(**fields))
    return request


async def rpc_error(awaitable: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value


def details(error: grpc.aio.AioRpcError) -> tuple[dict[str, str], str]:
    """(field violations, ErrorInfo reason) of a rich error."""
    status = rpc_status.from_call(error)
    assert status is not None
    fields: dict[str, str] = {}
    reason = ""
    for detail in status.details:
        bad, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
        if detail.Unpack(bad):
            fields.update({v.field: v.description for v in bad.field_violations})
        elif detail.Unpack(info):
            reason = info.reason
    return fields, reason


@pytest_asyncio.fixture(loop_scope="session")
async def user(channel: grpc.aio.Channel) -> User:
    return await register_and_login(channel)


@pytest_asyncio.fixture(loop_scope="session")
async def db(stack: StackEnv) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.pg_dsn)
    yield conn
    await conn.close()


async def writes_of(db: asyncpg.Connection, user: User) -> tuple[int, int, int]:
    """(payments, idempotency keys, outbox rows) belonging to the user."""
    uid = uuid.UUID(user.user_id)
    payments = await db.fetchval("SELECT count(*) FROM payments.payments WHERE user_id=$1", uid)
    keys = await db.fetchval("SELECT count(*) FROM payments.idempotency_keys WHERE user_id=$1", uid)
    outbox = await db.fetchval(
        "SELECT count(*) FROM payments.outbox o JOIN payments.payments p"
        " ON p.id::text = o.message_key WHERE p.user_id = $1",
        uid,
    )
    return payments, keys, outbox


async def fund_wallet(db: asyncpg.Connection, user: User, amount_minor: int) -> None:
    """Credit the wallet as a settled deposit would (a balanced journal entry)."""
    uid = uuid.UUID(user.user_id)
    async with db.transaction():
        pid = uuid.uuid4()
        await db.execute(
            "INSERT INTO payments.payments (id, user_id, kind, status, currency_code,"
            " amount_minor) VALUES ($1, $2, 'DEPOSIT', 'COMPLETED', 'USD', $3)",
            pid,
            uid,
            amount_minor,
        )
        for owner, purpose in ((uid, "WALLET"), (None, "EXTERNAL")):
            await db.execute(
                "INSERT INTO payments.ledger_accounts (owner_user_id, purpose, currency_code)"
                " VALUES ($1, $2, 'USD') ON CONFLICT DO NOTHING",
                owner,
                purpose,
            )
        entry = await db.fetchval(
            "INSERT INTO payments.journal_entries (payment_id, description)"
            " VALUES ($1, 'test funding') RETURNING id",
            pid,
        )
        wallet = await db.fetchval(
            "SELECT id FROM payments.ledger_accounts"
            " WHERE owner_user_id = $1 AND currency_code = 'USD'",
            uid,
        )
        external = await db.fetchval(
            "SELECT id FROM payments.ledger_accounts"
            " WHERE purpose = 'EXTERNAL' AND currency_code = 'USD'"
        )
        for account, amount in ((wallet, amount_minor), (external, -amount_minor)):
            await db.execute(
                "INSERT INTO payments.postings (entry_id, account_id, amount_minor)"
                " VALUES ($1, $2, $3)",
                entry,
                account,
                amount,
            )
            await db.execute(
                "UPDATE payments.ledger_accounts SET balance_minor = balance_minor + $2"
                " WHERE id = $1",
                account,
                amount,
            )


# ------------------------------------------------------------------ create


async def test_deposit_is_recorded_pending_with_a_masked_card(
    channel: grpc.aio.Channel, user: User, db: asyncpg.Connection
) -> None:
    reply = await stub(channel).CreatePayment(deposit(), metadata=user.metadata, timeout=5)
    payment = reply.payment
    assert uuid.UUID(payment.payment_id)
    assert payment.status == pb.PAYMENT_STATUS_PENDING
    assert payment.kind == pb.PAYMENT_KIND_DEPOSIT
    assert (payment.amount.currency_code, payment.amount.amount_minor) == ("USD", 1000)
    assert payment.card.masked_number == "424242******4242"
    assert payment.card.brand == pb.CARD_BRAND_VISA
    assert payment.version == 1
    row = await db.fetchrow(
        "SELECT p.status, c.key_id, c.ciphertext, o.event_type FROM payments.payments p"
        " JOIN payments.cards c ON c.payment_id = p.id"
        " JOIN payments.outbox o ON o.message_key = p.id::text WHERE p.id = $1",
        uuid.UUID(payment.payment_id),
    )
    assert row["status"] == "PENDING"
    assert row["event_type"] == "payment.created"
    assert b"4242424242424242" not in bytes(row["ciphertext"])


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (deposit(number="4242 4242 4242 4241"), {"card.number"}),
        (deposit(cvc="12"), {"card.cvc"}),
        (deposit(number="3782 822463 10005", cvc="123"), {"card.cvc"}),
        (deposit(exp_month=1, exp_year=2020), {"card.exp_year"}),
        (deposit(amount_minor=0), {"amount.amount_minor"}),
        (deposit(amount_minor=10**12), {"amount.amount_minor"}),
        (deposit(key=""), {"idempotency_key"}),
        (deposit(key="k" * 256), {"idempotency_key"}),
        (
            purchase(latitude=91.0, country_code="ZZ"),
            {"merchant.latitude", "merchant.country_code"},
        ),
        (
            pb.CreatePaymentRequest(
                idempotency_key="x",
                kind=pb.PAYMENT_KIND_DEPOSIT,
                amount=pb.Money(currency_code="XXX", amount_minor=5),
            ),
            {"amount.currency_code", "card"},
        ),
        (
            pb.CreatePaymentRequest(
                idempotency_key="x", amount=pb.Money(currency_code="USD", amount_minor=5)
            ),
            {"kind"},
        ),
    ],
    ids=[
        "luhn",
        "cvc-short",
        "amex-cvc",
        "expired",
        "zero",
        "over-limit",
        "no-key",
        "long-key",
        "merchant",
        "currency-and-card",
        "no-kind",
    ],
)
async def test_invalid_requests_name_each_field_and_write_nothing(
    channel: grpc.aio.Channel,
    user: User,
    db: asyncpg.Connection,
    request_: pb.CreatePaymentRequest,
    fields: set[str],
) -> None:
    before = await writes_of(db, user)
    error = await rpc_error(
        stub(channel).CreatePayment(request_, metadata=user.metadata, timeout=5)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations, _ = details(error)
    assert fields <= set(violations), violations
    assert_catalogued(rich_error(error), Reason.VALIDATION_FAILED)
    assert "4242" not in (error.details() or "") + "".join(violations.values())
    assert await writes_of(db, user) == before


async def test_luhn_failure_names_card_number(channel: grpc.aio.Channel, user: User) -> None:
    error = await rpc_error(
        stub(channel).CreatePayment(deposit(number="4242424242424241"), metadata=user.metadata)
    )
    violations, _ = details(error)
    assert set(violations) == {"card.number"}


# ------------------------------------------------------------------ idempotency


async def test_the_cvc_is_held_only_sealed_in_redis(
    channel: grpc.aio.Channel, user: User, stack: StackEnv, jwt_keys: JwtKeys
) -> None:
    reply = await stub(channel).CreatePayment(deposit(cvc="719"), metadata=user.metadata, timeout=5)
    payment_id = reply.payment.payment_id
    redis = Redis.from_url(stack.redis_url)
    try:
        raw = await redis.get(f"cvc:{payment_id}")
        ttl_s = await redis.ttl(f"cvc:{payment_id}")
    finally:
        await redis.aclose()
    assert raw is not None
    assert 0 < ttl_s <= 900
    sealed = json.loads(raw)
    assert "719" not in sealed.values()
    vault = CardVault(
        {jwt_keys.kid: read_secret_file(jwt_keys.vault_key_path)},
        active_key_id=jwt_keys.kid,
        fingerprint_key=read_secret_file(jwt_keys.fingerprint_key_path),
    )
    cvc = SealedCvc(sealed["k"], bytes.fromhex(sealed["n"]), bytes.fromhex(sealed["c"]))
    assert vault.open_cvc(cvc, payment_id).reveal() == "719"


async def test_same_key_same_request_replays_the_original(
    channel: grpc.aio.Channel, user: User, db: asyncpg.Connection
) -> None:
    request = deposit()
    first = await stub(channel).CreatePayment(request, metadata=user.metadata, timeout=5)
    # A retry re-enters the CVC differently: still the same request.
    request.card.cvc = "999"
    call = stub(channel).CreatePayment(request, metadata=user.metadata, timeout=5)
    again = await call
    assert again.payment.payment_id == first.payment.payment_id
    assert ("x-payrail-idempotent-replay", "true") in tuple(await call.initial_metadata())
    assert await writes_of(db, user) == (1, 1, 1)


async def test_same_key_other_parameters_is_refused(
    channel: grpc.aio.Channel, user: User, db: asyncpg.Connection
) -> None:
    key = str(uuid.uuid4())
    await stub(channel).CreatePayment(deposit(key), metadata=user.metadata, timeout=5)
    error = await rpc_error(
        stub(channel).CreatePayment(deposit(key, amount_minor=2000), metadata=user.metadata)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(error)[1] == "IDEMPOTENCY_KEY_REUSED"
    assert await writes_of(db, user) == (1, 1, 1)


async def test_keys_are_scoped_to_the_user(channel: grpc.aio.Channel, user: User) -> None:
    other = await register_and_login(channel)
    key = str(uuid.uuid4())
    mine = await stub(channel).CreatePayment(deposit(key), metadata=user.metadata, timeout=5)
    theirs = await stub(channel).CreatePayment(deposit(key), metadata=other.metadata, timeout=5)
    assert mine.payment.payment_id != theirs.payment.payment_id


async def test_twenty_concurrent_requests_with_one_key_create_one_payment(
    channel: grpc.aio.Channel, user: User, db: asyncpg.Connection
) -> None:
    request = deposit()
    replies = await asyncio.gather(
        *(
            stub(channel).CreatePayment(request, metadata=user.metadata, timeout=10)
            for _ in range(20)
        )
    )
    assert len({r.payment.payment_id for r in replies}) == 1
    assert await writes_of(db, user) == (1, 1, 1)


# ------------------------------------------------------------------ wallet funds


async def test_withdrawal_without_funds_is_refused_and_holds_nothing(
    channel: grpc.aio.Channel, user: User, db: asyncpg.Connection
) -> None:
    error = await rpc_error(
        stub(channel).CreatePayment(withdrawal(500), metadata=user.metadata, timeout=5)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(error)[1] == "INSUFFICIENT_FUNDS"
    assert await writes_of(db, user) == (0, 0, 0)
    balances = await stub(channel).GetBalance(pb.GetBalanceRequest(), metadata=user.metadata)
    assert all(b.held_minor == 0 for b in balances.balances)


async def test_withdrawal_holds_funds_and_cancel_releases_them(
    channel: grpc.aio.Channel, user: User, db: asyncpg.Connection
) -> None:
    await fund_wallet(db, user, 5000)
    payments = stub(channel)
    created = await payments.CreatePayment(withdrawal(3000), metadata=user.metadata, timeout=5)
    balance = (await payments.GetBalance(pb.GetBalanceRequest(), metadata=user.metadata)).balances
    assert [(b.currency_code, b.available_minor, b.held_minor) for b in balance] == [
        ("USD", 2000, 3000)
    ]
    # The rest is not enough for a second withdrawal of the same size.
    error = await rpc_error(payments.CreatePayment(withdrawal(3000), metadata=user.metadata))
    assert details(error)[1] == "INSUFFICIENT_FUNDS"

    canceled = await payments.CancelPayment(
        pb.CancelPaymentRequest(payment_id=created.payment.payment_id), metadata=user.metadata
    )
    assert canceled.payment.status == pb.PAYMENT_STATUS_CANCELED
    assert canceled.payment.version == 2
    balance = (await payments.GetBalance(pb.GetBalanceRequest(), metadata=user.metadata)).balances
    assert [(b.available_minor, b.held_minor) for b in balance] == [(5000, 0)]
    events = await db.fetch(
        "SELECT topic, event_type FROM payments.outbox WHERE message_key = $1 ORDER BY id",
        created.payment.payment_id,
    )
    assert [(e["topic"], e["event_type"]) for e in events] == [
        ("payments.events", "payment.created"),
        ("payments.events", "payment.status_changed"),
    ]


async def test_concurrent_withdrawals_never_overdraw(
    channel: grpc.aio.Channel, user: User, db: asyncpg.Connection
) -> None:
    await fund_wallet(db, user, 1000)
    results = await asyncio.gather(
        *(
            stub(channel).CreatePayment(withdrawal(300), metadata=user.metadata, timeout=10)
            for _ in range(10)
        ),
        return_exceptions=True,
    )
    accepted = [r for r in results if not isinstance(r, BaseException)]
    assert len(accepted) == 3
    balance = await stub(channel).GetBalance(pb.GetBalanceRequest(), metadata=user.metadata)
    assert [(b.available_minor, b.held_minor) for b in balance.balances] == [(100, 900)]


# ------------------------------------------------------------------ reads


async def test_another_users_payment_is_not_found(channel: grpc.aio.Channel, user: User) -> None:
    created = await stub(channel).CreatePayment(deposit(), metadata=user.metadata, timeout=5)
    mine = await stub(channel).GetPayment(
        pb.GetPaymentRequest(payment_id=created.payment.payment_id), metadata=user.metadata
    )
    assert mine.payment == created.payment
    other = await register_and_login(channel)
    for payment_id in (created.payment.payment_id, str(uuid.uuid4()), "not-a-uuid"):
        for call in (
            stub(channel).GetPayment(
                pb.GetPaymentRequest(payment_id=payment_id), metadata=other.metadata
            ),
            stub(channel).CancelPayment(
                pb.CancelPaymentRequest(payment_id=payment_id), metadata=other.metadata
            ),
        ):
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.NOT_FOUND
            assert error.details() == "payment not found"
            assert_catalogued(rich_error(error), Reason.NOT_FOUND)


async def test_cancel_after_dispatch_is_refused(
    channel: grpc.aio.Channel, user: User, db: asyncpg.Connection
) -> None:
    created = await stub(channel).CreatePayment(deposit(), metadata=user.metadata, timeout=5)
    # Dispatch belongs to the processing pipeline; here the row is moved by hand.
    await db.execute(
        "UPDATE payments.payments SET status='PROCESSING', version=2 WHERE id=$1",
        uuid.UUID(created.payment.payment_id),
    )
    error = await rpc_error(
        stub(channel).CancelPayment(
            pb.CancelPaymentRequest(payment_id=created.payment.payment_id), metadata=user.metadata
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(error)[1] == "PAYMENT_STATUS_CONFLICT"


async def test_cancel_replaces_the_cached_payment(channel: grpc.aio.Channel, user: User) -> None:
    created = await stub(channel).CreatePayment(deposit(), metadata=user.metadata, timeout=5)
    request = pb.GetPaymentRequest(payment_id=created.payment.payment_id)
    for _ in range(2):  # the second read is served from Redis
        cached = await stub(channel).GetPayment(request, metadata=user.metadata)
        assert cached.payment.status == pb.PAYMENT_STATUS_PENDING
    await stub(channel).CancelPayment(
        pb.CancelPaymentRequest(payment_id=created.payment.payment_id), metadata=user.metadata
    )
    after = await stub(channel).GetPayment(request, metadata=user.metadata)
    assert after.payment.status == pb.PAYMENT_STATUS_CANCELED


async def test_pagination_across_250_payments(channel: grpc.aio.Channel, user: User) -> None:
    payments = stub(channel)
    created = []
    for start in range(0, 250, 25):
        batch = await asyncio.gather(
            *(
                payments.CreatePayment(
                    deposit(amount_minor=100 + i), metadata=user.metadata, timeout=10
                )
                for i in range(start, start + 25)
            )
        )
        created += [r.payment.payment_id for r in batch]
    seen: list[pb.Payment] = []
    token = ""
    pages = 0
    while True:
        page = await payments.ListPayments(
            pb.ListPaymentsRequest(page_size=100, page_token=token), metadata=user.metadata
        )
        pages += 1
        seen += page.payments
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert sorted(p.payment_id for p in seen) == sorted(created)
    keys = [(p.create_time.ToDatetime(), p.payment_id) for p in seen]
    assert keys == sorted(keys, reverse=True)  # newest first, stable across pages

    default = await payments.ListPayments(pb.ListPaymentsRequest(), metadata=user.metadata)
    assert len(default.payments) == 20
    capped = await payments.ListPayments(
        pb.ListPaymentsRequest(page_size=1000), metadata=user.metadata
    )
    assert len(capped.payments) == 100
    filtered = await payments.ListPayments(
        pb.ListPaymentsRequest(kind=pb.PAYMENT_KIND_WITHDRAWAL), metadata=user.metadata
    )
    assert list(filtered.payments) == []
    pending = await payments.ListPayments(
        pb.ListPaymentsRequest(page_size=5, status=pb.PAYMENT_STATUS_PENDING),
        metadata=user.metadata,
    )
    assert all(p.status == pb.PAYMENT_STATUS_PENDING for p in pending.payments)
    mismatched = await rpc_error(
        payments.ListPayments(
            pb.ListPaymentsRequest(page_token=pending.next_page_token), metadata=user.metadata
        )
    )
    assert mismatched.code() == grpc.StatusCode.INVALID_ARGUMENT
    garbage = await rpc_error(
        payments.ListPayments(pb.ListPaymentsRequest(page_token="%%%"), metadata=user.metadata)
    )
    assert set(details(garbage)[0]) == {"page_token"}


async def test_balance_filters_and_validates_currency(
    channel: grpc.aio.Channel, user: User, db: asyncpg.Connection
) -> None:
    await fund_wallet(db, user, 700)
    usd = await stub(channel).GetBalance(
        pb.GetBalanceRequest(currency_code="USD"), metadata=user.metadata
    )
    assert [(b.currency_code, b.available_minor) for b in usd.balances] == [("USD", 700)]
    eur = await stub(channel).GetBalance(
        pb.GetBalanceRequest(currency_code="EUR"), metadata=user.metadata
    )
    assert list(eur.balances) == []
    error = await rpc_error(
        stub(channel).GetBalance(pb.GetBalanceRequest(currency_code="usd!"), metadata=user.metadata)
    )
    assert set(details(error)[0]) == {"currency_code"}


async def test_redis_outage_degrades_to_postgres(stack: StackEnv, jwt_keys: JwtKeys) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    payment = await payment_bootstrap.build(
        replace(payment_settings(stack, jwt_keys), redis_url=dead_redis)
    )
    await payment.start()
    gateway = await gateway_bootstrap.build(gateway_settings(stack, jwt_keys, payment.port))
    await gateway.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
            user = await register_and_login(ch)  # the gateway's own Redis is fine
            created = await stub(ch).CreatePayment(deposit(), metadata=user.metadata, timeout=5)
            for _ in range(2):
                read = await stub(ch).GetPayment(
                    pb.GetPaymentRequest(payment_id=created.payment.payment_id),
                    metadata=user.metadata,
                    timeout=5,
                )
                assert read.payment.payment_id == created.payment.payment_id
    finally:
        await gateway.stop(0)
        await payment.stop(0)


async def test_unknown_platform_fixture_is_shared(platform: Platform) -> None:
    gateway, payment = platform
    assert gateway.port != payment.port
