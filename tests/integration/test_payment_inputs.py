"""Inputs an attacker or a careless client sends: enum numbers the contract does not
define, and idempotency keys holding card numbers (stored only as keyed digests)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
import pytest_asyncio

from payment_svc.adapters.idempotency_keys import hash_clear_keys
from payment_svc.domain.cards import PanSecret
from payment_svc.domain.validation import request_fingerprint
from payment_svc.proto_mapping import command_from_pb
from payment_svc.vault import CardVault
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.keys import read_secret_file
from tests.conftest import JwtKeys, StackEnv
from tests.helpers import User, register_and_login
from tests.integration.test_payments import deposit, details, purchase, rpc_error, writes_of

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PAN_KEY = "order-4111113986882099"


def stub(channel: grpc.aio.Channel) -> payments_pb2_grpc.PaymentServiceStub:
    return payments_pb2_grpc.PaymentServiceStub(channel)


@pytest_asyncio.fixture(loop_scope="session")
async def user(channel: grpc.aio.Channel) -> User:
    return await register_and_login(channel)


@pytest_asyncio.fixture(loop_scope="session")
async def db(stack: StackEnv) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.pg_dsn)
    yield conn
    await conn.close()


def list_request(numbers: dict[str, int]) -> pb.ListPaymentsRequest:
    """Filters set to raw enum numbers (the stubs type the fields narrowly)."""
    request = pb.ListPaymentsRequest()
    for name, number in numbers.items():
        setattr(request, name, number)
    return request


def vault_of(keys: JwtKeys) -> CardVault:
    return CardVault(
        {keys.kid: read_secret_file(keys.vault_key_path)},
        active_key_id=keys.kid,
        fingerprint_key=read_secret_file(keys.fingerprint_key_path),
    )


@pytest.mark.parametrize(
    ("request_fields", "fields"),
    [
        ({"status": 99}, {"status"}),
        ({"kind": 99}, {"kind"}),
        ({"status": -5, "kind": 99}, {"status", "kind"}),
    ],
)
async def test_list_filters_out_of_range_are_invalid_argument_by_name(
    channel: grpc.aio.Channel, user: User, request_fields: dict[str, int], fields: set[str]
) -> None:
    await stub(channel).CreatePayment(deposit(), metadata=user.metadata, timeout=5)
    error = await rpc_error(
        stub(channel).ListPayments(list_request(request_fields), metadata=user.metadata, timeout=5)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations, reason = details(error)
    assert set(violations) == fields
    assert all("not a known value" in text for text in violations.values())
    assert reason == "VALIDATION_FAILED"


@pytest.mark.parametrize("number", [99, -5])
async def test_purchase_with_an_unknown_funding_source_is_refused_and_writes_nothing(
    channel: grpc.aio.Channel, user: User, db: asyncpg.Connection, number: int
) -> None:
    request = purchase()
    request.funding_source = number  # type: ignore[assignment]
    error = await rpc_error(stub(channel).CreatePayment(request, metadata=user.metadata))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(details(error)[0]) == {"funding_source"}
    assert await writes_of(db, user) == (0, 0, 0)


async def test_an_unknown_kind_is_refused_by_name(channel: grpc.aio.Channel, user: User) -> None:
    request = deposit()
    request.kind = 99  # type: ignore[assignment]
    error = await rpc_error(stub(channel).CreatePayment(request, metadata=user.metadata))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error)[0] == {
        "kind": "is not a known value; use one of DEPOSIT, WITHDRAWAL or PURCHASE"
    }


async def test_a_card_number_in_the_key_is_never_stored_and_the_key_still_works(
    channel: grpc.aio.Channel, user: User, db: asyncpg.Connection
) -> None:
    first = await stub(channel).CreatePayment(deposit(PAN_KEY), metadata=user.metadata, timeout=5)
    call = stub(channel).CreatePayment(deposit(PAN_KEY), metadata=user.metadata, timeout=5)
    again = await call
    assert again.payment.payment_id == first.payment.payment_id
    assert ("x-payrail-idempotent-replay", "true") in tuple(await call.initial_metadata())
    other = await rpc_error(
        stub(channel).CreatePayment(deposit(PAN_KEY, amount_minor=2000), metadata=user.metadata)
    )
    assert details(other)[1] == "IDEMPOTENCY_KEY_REUSED"

    rows = await db.fetch(
        "SELECT idempotency_key, request_hash FROM payments.idempotency_keys WHERE user_id = $1",
        uuid.UUID(user.user_id),
    )
    assert len(rows) == 1
    stored = rows[0]["idempotency_key"] + rows[0]["request_hash"]
    assert "4111113986882099" not in stored
    assert "order" not in stored
    assert rows[0]["idempotency_key"].startswith("hmac-v1:")
    assert rows[0]["request_hash"].startswith("hmac-v1:")
    # Nowhere else in the schema either (the text of every column of every row).
    leaked = await db.fetchval(
        "SELECT count(*) FROM payments.idempotency_keys k WHERE k::text LIKE '%4111113986882099%'"
    )
    assert leaked == 0


async def test_keys_stored_in_clear_before_are_hashed_in_place_and_still_replay(
    channel: grpc.aio.Channel,
    user: User,
    db: asyncpg.Connection,
    stack: StackEnv,
    jwt_keys: JwtKeys,
) -> None:
    key = f"legacy-{uuid.uuid4()}"
    request = deposit(key)
    first = await stub(channel).CreatePayment(request, metadata=user.metadata, timeout=5)
    # Put the row back as a payment_svc before hashing wrote it: key and the plain
    # request fingerprint in clear.
    vault = vault_of(jwt_keys)
    cmd = command_from_pb(user.user_id, request)
    assert cmd.card is not None
    fingerprint = vault.fingerprint(PanSecret.from_input(cmd.card.number.reveal()))
    await db.execute(
        "UPDATE payments.idempotency_keys SET idempotency_key = $2, request_hash = $3"
        " WHERE user_id = $1",
        uuid.UUID(user.user_id),
        key,
        request_fingerprint(cmd, card_fingerprint=fingerprint),
    )

    async with asyncpg.create_pool(stack.pg_dsn, min_size=1, max_size=2) as pool:
        assert await hash_clear_keys(pool, vault.idempotency_hasher(), batch_max=2) >= 1
        assert await hash_clear_keys(pool, vault.idempotency_hasher()) == 0
    clear = await db.fetchval(
        "SELECT count(*) FROM payments.idempotency_keys"
        " WHERE idempotency_key NOT LIKE 'hmac-v1:%' OR request_hash NOT LIKE 'hmac-v1:%'"
    )
    assert clear == 0

    call = stub(channel).CreatePayment(request, metadata=user.metadata, timeout=5)
    again = await call
    assert again.payment.payment_id == first.payment.payment_id
    assert ("x-payrail-idempotent-replay", "true") in tuple(await call.initial_metadata())
    assert await writes_of(db, user) == (1, 1, 1)
