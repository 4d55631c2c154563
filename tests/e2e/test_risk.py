"""Risk gates dispatch, with real processes: impossible travel asks the owner for a
one-time code (delivered through the notifications topic to the development sink),
velocity denies, and nothing is approved while the risk consumer is down."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import asyncpg
import grpc
import pytest
import pytest_asyncio
from grpc_status import rpc_status

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.conftest import StackEnv
from tests.e2e.conftest import Running
from tests.e2e.test_processing import FINAL, assert_ledger_invariants, balance, submit
from tests.helpers import User, register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

SEOUL = ("KR", "Seoul", 37.5665, 126.9780)
NEW_YORK = ("US", "New York", 40.7128, -74.0060)
VELOCITY_MAX_PER_CARD = 3


@pytest.fixture(scope="module")
def service_env() -> dict[str, str]:
    # The real rules, with a per-card velocity limit small enough to reach in a test.
    return {
        "PAYRAIL_RISK_VELOCITY_MAX_PER_CARD": str(VELOCITY_MAX_PER_CARD),
        "PAYRAIL_RISK_VELOCITY_MAX_PER_USER": "50",
    }


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


def luhn_complete(partial: str) -> str:
    """partial plus the Luhn check digit that makes it valid."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:  # doubled, counting from the (missing) check digit
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return partial + str((10 - total % 10) % 10)


def fresh_card() -> str:
    """A Luhn-valid Visa number of its own, so velocity counts only this test's card."""
    while True:
        number = luhn_complete("4" + "".join(random.choices("0123456789", k=14)))
        if not number.endswith(("0002", "9995", "0119")):  # the sandbox's special cards
            return number


def purchase(
    card: str, place: tuple[str, str, float, float], amount: int = 2500
) -> pb.CreatePaymentRequest:
    country, city, lat, lon = place
    return pb.CreatePaymentRequest(
        idempotency_key=str(uuid.uuid4()),
        kind=pb.PAYMENT_KIND_PURCHASE,
        amount=pb.Money(currency_code="USD", amount_minor=amount),
        card=pb.CardInput(number=card, exp_month=12, exp_year=2031, cvc="123"),
        merchant=pb.Merchant(
            merchant_id=f"m-{city.lower().replace(' ', '-')}",
            name=f"Cafe {city}",
            category_code="5812",
            country_code=country,
            city=city,
            latitude=lat,
            longitude=lon,
        ),
    )


def deposit(card: str, amount: int = 1000) -> pb.CreatePaymentRequest:
    return pb.CreatePaymentRequest(
        idempotency_key=str(uuid.uuid4()),
        kind=pb.PAYMENT_KIND_DEPOSIT,
        amount=pb.Money(currency_code="USD", amount_minor=amount),
        card=pb.CardInput(number=card, exp_month=12, exp_year=2031, cvc="123"),
    )


async def wait_for(
    channel: grpc.aio.Channel,
    user: User,
    payment_id: str,
    statuses: Collection[int],
    timeout_s: float = 30,
) -> pb.Payment:
    stub = payments_pb2_grpc.PaymentServiceStub(channel)
    deadline = time.monotonic() + timeout_s
    while True:
        reply: pb.GetPaymentResponse = await stub.GetPayment(
            pb.GetPaymentRequest(payment_id=payment_id), metadata=user.metadata, timeout=5
        )
        if reply.payment.status in statuses or time.monotonic() > deadline:
            return reply.payment
        await asyncio.sleep(0.2)


async def code_for(
    services: list[Running], payment_id: str, timeout_s: float = 20
) -> dict[str, str]:
    """The newest delivery for the payment in the development notification sink."""
    env = services[0].env or {}
    sink = Path(env["PAYRAIL_NOTIFICATIONS_SINK_FILE"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(lambda: sink.read_text() if sink.exists() else "")
        found: list[dict[str, str]] = [
            json.loads(line)
            for line in text.splitlines()
            if json.loads(line).get("payment_id") == payment_id
        ]
        if found:
            return found[-1]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no notification for {payment_id} in {sink}")


async def verify(
    channel: grpc.aio.Channel, user: User, payment_id: str, code: str = "", decline: bool = False
) -> pb.Payment:
    reply: pb.VerifyPaymentResponse = await payments_pb2_grpc.PaymentServiceStub(
        channel
    ).VerifyPayment(
        pb.VerifyPaymentRequest(payment_id=payment_id, code=code, decline=decline),
        metadata=user.metadata,
        timeout=5,
    )
    return reply.payment


async def flagged_purchase(
    edge: grpc.aio.Channel, user: User, *, minutes_apart: float | None = None, stack: StackEnv
) -> str:
    """Seoul, then New York: returns the New York payment, held for verification."""
    card = fresh_card()
    first = await submit(edge, user, purchase(card, SEOUL))
    done = await wait_for(edge, user, first, FINAL)
    assert done.status == pb.PAYMENT_STATUS_COMPLETED, done
    if minutes_apart is not None:
        await pretend_time_passed(stack, user.user_id, minutes_apart)
    second = await submit(edge, user, purchase(card, NEW_YORK))
    held = await wait_for(edge, user, second, {pb.PAYMENT_STATUS_REQUIRES_VERIFICATION, *FINAL})
    assert held.status == pb.PAYMENT_STATUS_REQUIRES_VERIFICATION, held
    return second


async def pretend_time_passed(stack: StackEnv, user_id: str, minutes: float) -> None:
    """Move the user's last known location back in time (PostgreSQL, then the cache)."""
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        await conn.execute(
            "UPDATE consumer.risk_locations SET seen_time = seen_time - $2 * interval '1 minute'"
            " WHERE subject = $1 OR subject LIKE 'card:%' AND payment_id IN"
            " (SELECT payment_id FROM consumer.risk_observations WHERE user_id = $3)",
            f"user:{user_id}",
            minutes,
            uuid.UUID(user_id),
        )
    finally:
        await conn.close()
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(stack.redis_url)
    try:
        keys = [key async for key in client.scan_iter(match="risk:loc:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def error_details(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], list[str]]:
    """(ErrorInfo reason, its metadata, BadRequest fields) of a rich error."""
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(error)
    reason, metadata, fields = "", {}, []
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Unpack(bad):
            fields = [v.field for v in bad.field_violations]
    return reason, metadata, fields


async def test_seoul_then_new_york_ten_minutes_later_needs_the_owners_code(
    edge: grpc.aio.Channel, services: list[Running], stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    payment_id = await flagged_purchase(edge, user, minutes_apart=10, stack=stack)
    held = await wait_for(edge, user, payment_id, {pb.PAYMENT_STATUS_REQUIRES_VERIFICATION})
    assert held.verification_reason.startswith("impossible_travel: 11,0")
    assert "Seoul, KR 10 min earlier" in held.verification_reason
    delivery = await code_for(services, payment_id)
    assert delivery["user_id"] == user.user_id
    assert delivery["kind"] == "NOTIFICATION_KIND_VERIFICATION_CODE"
    assert len(delivery["code"]) == 6
    assert delivery["code"].isdigit()
    assert delivery["code"] in delivery["text"]
    # The code is never stored: PostgreSQL holds only a 32-byte keyed hash.
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        stored = await conn.fetchval(
            "SELECT code_hash FROM payments.verifications WHERE payment_id = $1",
            uuid.UUID(payment_id),
        )
    finally:
        await conn.close()
    assert len(stored) == 32
    assert delivery["code"].encode() not in stored

    answered = await verify(edge, user, payment_id, delivery["code"])
    assert answered.verified
    done = await wait_for(edge, user, payment_id, FINAL)
    assert done.status == pb.PAYMENT_STATUS_COMPLETED, done
    assert done.verified
    # Single use: the same code again is refused, and changes nothing.
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await verify(edge, user, payment_id, delivery["code"])
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(again.value)[0] == "PAYMENT_NOT_AWAITING_VERIFICATION"
    await assert_ledger_invariants(stack.pg_dsn)


async def test_a_plausible_trip_is_not_questioned(edge: grpc.aio.Channel, stack: StackEnv) -> None:
    user = await register_and_login(edge)
    card = fresh_card()
    first = await submit(edge, user, purchase(card, SEOUL))
    assert (await wait_for(edge, user, first, FINAL)).status == pb.PAYMENT_STATUS_COMPLETED
    await pretend_time_passed(stack, user.user_id, 15 * 60)  # a 15-hour flight
    second = await submit(edge, user, purchase(card, NEW_YORK))
    assert (await wait_for(edge, user, second, FINAL)).status == pb.PAYMENT_STATUS_COMPLETED


async def test_five_wrong_codes_deny_the_payment(
    edge: grpc.aio.Channel, services: list[Running], stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    payment_id = await flagged_purchase(edge, user, stack=stack)
    right = (await code_for(services, payment_id))["code"]
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    remaining = []
    for _ in range(4):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await verify(edge, user, payment_id, wrong)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        reason, metadata, fields = error_details(caught.value)
        assert (reason, fields) == ("VERIFICATION_CODE_INVALID", ["code"])
        remaining.append(int(metadata["attempts_remaining"]))
    assert remaining == [4, 3, 2, 1]
    with pytest.raises(grpc.aio.AioRpcError) as fifth:
        await verify(edge, user, payment_id, wrong)
    assert fifth.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(fifth.value)[0] == "VERIFICATION_ATTEMPTS_EXHAUSTED"
    denied = await wait_for(edge, user, payment_id, FINAL)
    assert (denied.status, denied.failure_code) == (
        pb.PAYMENT_STATUS_DENIED,
        "verification_failed",
    )
    # Even the right code is useless now.
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await verify(edge, user, payment_id, right)
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_malformed_codes_and_strangers_change_nothing(
    edge: grpc.aio.Channel, services: list[Running], stack: StackEnv
) -> None:
    owner = await register_and_login(edge)
    payment_id = await flagged_purchase(edge, owner, stack=stack)
    right = (await code_for(services, payment_id))["code"]
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await verify(edge, owner, payment_id, "12ab")
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(malformed.value)[2] == ["code"]
    stranger = await register_and_login(edge)
    for attempt in (right, "000000"):
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await verify(edge, stranger, payment_id, attempt)
        assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as declined_by_stranger:
        await verify(edge, stranger, payment_id, decline=True)
    assert declined_by_stranger.value.code() == grpc.StatusCode.NOT_FOUND
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        failed = await conn.fetchval(
            "SELECT failed_attempts FROM payments.verifications WHERE payment_id = $1",
            uuid.UUID(payment_id),
        )
    finally:
        await conn.close()
    assert failed == 0
    # The owner's right code still works.
    assert (await verify(edge, owner, payment_id, right)).verified
    assert (await wait_for(edge, owner, payment_id, FINAL)).status == pb.PAYMENT_STATUS_COMPLETED


async def test_the_owner_can_decline(edge: grpc.aio.Channel, stack: StackEnv) -> None:
    user = await register_and_login(edge)
    payment_id = await flagged_purchase(edge, user, stack=stack)
    declined = await verify(edge, user, payment_id, decline=True)
    assert (declined.status, declined.failure_code) == (
        pb.PAYMENT_STATUS_DENIED,
        "declined_by_owner",
    )


async def test_an_unanswered_challenge_expires_into_denied(
    edge: grpc.aio.Channel, services: list[Running], stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    # Two held payments: the janitor denies one, the owner's late answer the other.
    by_janitor = await flagged_purchase(edge, user, stack=stack)
    by_answer = await flagged_purchase(edge, user, stack=stack)
    code = (await code_for(services, by_answer))["code"]
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        # Eleven minutes pass (the default challenge lives ten).
        await conn.execute(
            "UPDATE payments.verifications SET expire_time = expire_time - interval '11 min',"
            " issue_time = issue_time - interval '11 min' WHERE payment_id = ANY($1)",
            [uuid.UUID(by_janitor), uuid.UUID(by_answer)],
        )
        await conn.execute(
            "UPDATE payments.payments SET update_time = update_time - interval '11 min'"
            " WHERE id = $1",
            uuid.UUID(by_janitor),
        )
    finally:
        await conn.close()
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await verify(edge, user, by_answer, code)
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(late.value)[0] == "VERIFICATION_EXPIRED"
    for payment_id in (by_answer, by_janitor):
        denied = await wait_for(edge, user, payment_id, FINAL, timeout_s=15)
        assert (denied.status, denied.failure_code) == (
            pb.PAYMENT_STATUS_DENIED,
            "verification_expired",
        ), denied


async def test_velocity_denies_the_payment_past_the_limit_and_explains(
    edge: grpc.aio.Channel,
) -> None:
    user = await register_and_login(edge)
    card = fresh_card()
    # One after another, each decided before the next is sent: the one past the limit is
    # the last. (Sent at once, which of them is refused depends on the order in which
    # the processor sees them: see the burst test below.)
    for _ in range(VELOCITY_MAX_PER_CARD):
        done = await wait_for(edge, user, await submit(edge, user, deposit(card)), FINAL)
        assert done.status == pb.PAYMENT_STATUS_COMPLETED, done
    denied = await wait_for(edge, user, await submit(edge, user, deposit(card)), FINAL)
    assert (denied.status, denied.failure_code) == (pb.PAYMENT_STATUS_DENIED, "velocity")
    assert denied.failure_message == (
        f"velocity: {VELOCITY_MAX_PER_CARD + 1} payments with this card by this user"
        " within 10 min"
        f" (at most {VELOCITY_MAX_PER_CARD} allowed)"
    )
    # Nothing moved for the denied one: only the completed deposits are in the wallet.
    assert await balance(edge, user) == (1000 * VELOCITY_MAX_PER_CARD, 0)
    # Another card of the same user is unaffected.
    other = await submit(edge, user, deposit(fresh_card()))
    assert (await wait_for(edge, user, other, FINAL)).status == pb.PAYMENT_STATUS_COMPLETED


async def test_a_burst_on_one_card_gets_exactly_the_limit_through(
    edge: grpc.aio.Channel,
) -> None:
    """Sent at once, the payments land on different partitions and are decided
    concurrently; still no more than the limit may be approved."""
    user = await register_and_login(edge)
    card = fresh_card()
    burst = VELOCITY_MAX_PER_CARD + 3
    ids = await asyncio.gather(*(submit(edge, user, deposit(card)) for _ in range(burst)))
    finals = [await wait_for(edge, user, pid, FINAL) for pid in ids]
    outcomes = sorted((p.status, p.failure_code) for p in finals)
    assert outcomes == sorted(
        [(pb.PAYMENT_STATUS_COMPLETED, "")] * VELOCITY_MAX_PER_CARD
        + [(pb.PAYMENT_STATUS_DENIED, "velocity")] * (burst - VELOCITY_MAX_PER_CARD)
    ), finals
    assert await balance(edge, user) == (1000 * VELOCITY_MAX_PER_CARD, 0)


async def test_while_risk_is_down_payments_wait_in_pending(
    edge: grpc.aio.Channel, services: list[Running]
) -> None:
    consumer = next(s for s in services if s.name == "consumer")
    consumer.process.send_signal(signal.SIGTERM)
    consumer.process.wait(timeout=30)
    try:
        user = await register_and_login(edge)
        payment_id = await submit(edge, user, deposit(fresh_card()))
        await asyncio.sleep(3)
        waiting = await wait_for(edge, user, payment_id, set(), timeout_s=0)
        assert waiting.status == pb.PAYMENT_STATUS_PENDING  # never approved blindly
    finally:
        await asyncio.to_thread(consumer.restart)
    done = await wait_for(edge, user, payment_id, FINAL, timeout_s=60)
    assert done.status == pb.PAYMENT_STATUS_COMPLETED
