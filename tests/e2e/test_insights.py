"""Loyalty and benefits with real processes: completed purchases flow through Kafka into
the insights process's consumer groups, and the user reads the result through
gateway_svc. Also: redelivery counts nothing twice, the catalog is admin-only, and
payments complete while the loyalty group is stopped, which then catches up."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import asyncpg
import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from payrail.auth.v1 import auth_pb2, auth_pb2_grpc
from payrail.events.v1 import events_pb2
from payrail.insights.v1 import insights_pb2 as ipb
from payrail.insights.v1 import insights_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.conftest import ROOT, StackEnv
from tests.e2e.conftest import Running
from tests.helpers import User, register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

VISA, MASTERCARD, AMEX = "4242424242424242", "5555555555554444", "378282246310005"
# A category of these tests' own, so the catalog entries they put cannot change what
# other categories earn; MASTERCARD "*" is the seeded default.
CATEGORY = "5814"
T = TypeVar("T")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


def insights_process(services: list[Running]) -> Running:
    return next(s for s in services if s.name == "insights")


def env_of(services: list[Running]) -> dict[str, str]:
    env = insights_process(services).env
    assert env is not None
    return env


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float = 30
) -> T:
    """Poll until done(result); return the last result either way (the caller asserts)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if done(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.25)


async def purchase(
    edge: grpc.aio.Channel,
    user: User,
    *,
    card: str | None,
    merchant_id: str,
    category_code: str = CATEGORY,
    amount_minor: int = 5000,
) -> pb.Payment:
    """A USD purchase at a Boston merchant (the same point of sale every time, so the
    risk rules see no travel), followed until it is final; asserts it COMPLETED."""
    message = pb.CreatePaymentRequest(
        idempotency_key=str(uuid.uuid4()),
        kind=pb.PAYMENT_KIND_PURCHASE,
        amount=pb.Money(currency_code="USD", amount_minor=amount_minor),
        merchant=pb.Merchant(
            merchant_id=merchant_id,
            name=f"Shop {merchant_id}",
            category_code=category_code,
            country_code="US",
            city="Boston",
            latitude=42.36,
            longitude=-71.06,
        ),
    )
    if card is None:
        message.funding_source = pb.FUNDING_SOURCE_WALLET
    else:
        cvc = "1234" if card == AMEX else "123"  # American Express has four digits
        message.card.CopyFrom(pb.CardInput(number=card, exp_month=12, exp_year=2031, cvc=cvc))
    stub = payments_pb2_grpc.PaymentServiceStub(edge)
    created = await stub.CreatePayment(message, metadata=user.metadata, timeout=5)

    async def get() -> pb.Payment:
        reply: pb.GetPaymentResponse = await stub.GetPayment(
            pb.GetPaymentRequest(payment_id=created.payment.payment_id),
            metadata=user.metadata,
            timeout=5,
        )
        return reply.payment

    payment = await eventually(get, lambda p: p.status == pb.PAYMENT_STATUS_COMPLETED)
    assert pb.PaymentStatus.Name(payment.status) == "PAYMENT_STATUS_COMPLETED", payment
    return payment


async def deposit(edge: grpc.aio.Channel, user: User, amount_minor: int) -> None:
    stub = payments_pb2_grpc.PaymentServiceStub(edge)
    created = await stub.CreatePayment(
        pb.CreatePaymentRequest(
            idempotency_key=str(uuid.uuid4()),
            kind=pb.PAYMENT_KIND_DEPOSIT,
            amount=pb.Money(currency_code="USD", amount_minor=amount_minor),
            card=pb.CardInput(number=VISA, exp_month=12, exp_year=2031, cvc="123"),
        ),
        metadata=user.metadata,
        timeout=5,
    )

    async def get() -> pb.Payment:
        reply: pb.GetPaymentResponse = await stub.GetPayment(
            pb.GetPaymentRequest(payment_id=created.payment.payment_id),
            metadata=user.metadata,
            timeout=5,
        )
        return reply.payment

    payment = await eventually(get, lambda p: p.status == pb.PAYMENT_STATUS_COMPLETED)
    assert pb.PaymentStatus.Name(payment.status) == "PAYMENT_STATUS_COMPLETED", payment


async def standings(
    edge: grpc.aio.Channel, user: User, **request: object
) -> ipb.ListLoyaltyStandingsResponse:
    reply: ipb.ListLoyaltyStandingsResponse = await insights_pb2_grpc.InsightsServiceStub(
        edge
    ).ListLoyaltyStandings(
        ipb.ListLoyaltyStandingsRequest(**request),  # type: ignore[arg-type]
        metadata=user.metadata,
        timeout=5,
    )
    return reply


async def standing_at(edge: grpc.aio.Channel, user: User, merchant_id: str) -> ipb.MerchantStanding:
    reply = await standings(edge, user, merchant_id=merchant_id)
    return reply.standings[0] if reply.standings else ipb.MerchantStanding()


async def tips(edge: grpc.aio.Channel, user: User) -> list[ipb.BenefitTip]:
    reply = await insights_pb2_grpc.InsightsServiceStub(edge).ListBenefitTips(
        ipb.ListBenefitTipsRequest(page_size=100), metadata=user.metadata, timeout=5
    )
    return list(reply.tips)


async def caught_up(bootstrap: str, group: str, timeout_s: float = 30) -> None:
    """Wait until the group has committed everything on payments.events as of now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        partitions = [TopicPartition("payments.events", p) for p in range(6)]
        target = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while True:
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            behind = {
                tp.partition: target[tp] - committed[tp].offset
                for tp in partitions
                if target[tp] > 0 and (tp not in committed or committed[tp].offset < target[tp])
            }
            if not behind:
                return
            assert time.monotonic() < deadline, f"{group} still behind: {behind}"
            await asyncio.sleep(0.25)
    finally:
        await consumer.stop()
        await admin.close()


def metric(services: list[Running], name: str, **labels: str) -> float | None:
    """One sample of the insights process's /metrics, or None when absent."""
    port = env_of(services)["PAYRAIL_INSIGHTS_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if match and match.group(1) == name:
            got = ",".join(sorted(match.group(2).split(",")))
            if got == want:
                return float(match.group(3))
    return None


def run_cli(services: list[Running], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env_of(services),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def admin_user(edge: grpc.aio.Channel, services: list[Running]) -> User:
    """A new user made admin with the operator CLI, logged in again to get the role."""
    user = await register_and_login(edge)
    granted = run_cli(services, "gateway_svc.admin", "grant", user.email)
    assert granted.returncode == 0, granted.stderr
    tokens = await auth_pb2_grpc.AuthServiceStub(edge).Login(
        auth_pb2.LoginRequest(email=user.email, password=user.password), timeout=10
    )
    return User(user.email, user.password, user.user_id, tokens.access_token, tokens.refresh_token)


@pytest_asyncio.fixture(loop_scope="session")
async def catalog(edge: grpc.aio.Channel, services: list[Running]) -> None:
    """The benefits these tests rely on, put through the public, admin-only RPC."""
    admin = await admin_user(edge, services)
    stub = insights_pb2_grpc.BenefitCatalogServiceStub(edge)
    for brand, category, kind, rate in (
        (pb.CARD_BRAND_VISA, CATEGORY, ipb.REWARD_KIND_CASHBACK, 300),
        (pb.CARD_BRAND_MASTERCARD, "*", ipb.REWARD_KIND_CASHBACK, 100),
        (pb.CARD_BRAND_AMERICAN_EXPRESS, CATEGORY, ipb.REWARD_KIND_POINTS, 400),
    ):
        await stub.PutBenefit(
            ipb.PutBenefitRequest(
                benefit=ipb.Benefit(
                    brand=brand, category_code=category, reward_kind=kind, rate_bps=rate
                )
            ),
            metadata=admin.metadata,
            timeout=5,
        )


async def health(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(reply.status)


# ---------------------------------------------------------------- access


async def test_insights_process_reports_each_dependency(services: list[Running]) -> None:
    insights = insights_process(services)
    for dependency in ("postgres", "kafka"):
        assert await health(insights.port, f"payrail.dependency.{dependency}") == SERVING
    for service in (
        "payrail.insights.v1.InsightsService",
        "payrail.insights.v1.BenefitCatalogService",
    ):
        assert await health(insights.port, service) == SERVING
    gateway = next(s for s in services if s.name == "gateway")
    assert await health(gateway.port, "payrail.dependency.consumer_insights") == SERVING


async def test_insights_need_a_bearer_token_at_the_edge(edge: grpc.aio.Channel) -> None:
    calls = [
        insights_pb2_grpc.InsightsServiceStub(edge).ListLoyaltyStandings(
            ipb.ListLoyaltyStandingsRequest(), timeout=5
        ),
        insights_pb2_grpc.InsightsServiceStub(edge).ListBenefitTips(
            ipb.ListBenefitTipsRequest(), timeout=5
        ),
        insights_pb2_grpc.BenefitCatalogServiceStub(edge).ListBenefits(
            ipb.ListBenefitsRequest(), timeout=5
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_catalog_is_for_admins_only(edge: grpc.aio.Channel, services: list[Running]) -> None:
    stub = insights_pb2_grpc.BenefitCatalogServiceStub(edge)
    entry = ipb.Benefit(
        brand=pb.CARD_BRAND_DISCOVER,
        category_code="0742",
        reward_kind=ipb.REWARD_KIND_CASHBACK,
        rate_bps=250,
        description="vets",
    )
    customer = await register_and_login(edge)
    for call in (
        stub.ListBenefits(ipb.ListBenefitsRequest(), metadata=customer.metadata, timeout=5),
        stub.PutBenefit(ipb.PutBenefitRequest(benefit=entry), metadata=customer.metadata),
        stub.DeleteBenefit(
            ipb.DeleteBenefitRequest(brand=pb.CARD_BRAND_DISCOVER, category_code="0742"),
            metadata=customer.metadata,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    admin = await admin_user(edge, services)
    stored = await stub.PutBenefit(
        ipb.PutBenefitRequest(benefit=entry), metadata=admin.metadata, timeout=5
    )
    assert (stored.benefit.rate_bps, stored.benefit.description) == (250, "vets")
    listed = await stub.ListBenefits(ipb.ListBenefitsRequest(), metadata=admin.metadata)
    assert any(
        b.brand == pb.CARD_BRAND_DISCOVER and b.category_code == "0742" and b.rate_bps == 250
        for b in listed.benefits
    )
    bad = ipb.Benefit(brand=pb.CARD_BRAND_VISA, category_code="58", rate_bps=0)
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.PutBenefit(ipb.PutBenefitRequest(benefit=bad), metadata=admin.metadata)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    delete = ipb.DeleteBenefitRequest(brand=pb.CARD_BRAND_DISCOVER, category_code="0742")
    await stub.DeleteBenefit(delete, metadata=admin.metadata, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.DeleteBenefit(delete, metadata=admin.metadata, timeout=5)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND

    # Revoked: the next login carries the customer role again.
    assert run_cli(services, "gateway_svc.admin", "revoke", admin.email).returncode == 0
    again = await auth_pb2_grpc.AuthServiceStub(edge).Login(
        auth_pb2.LoginRequest(email=admin.email, password=admin.password), timeout=10
    )
    with pytest.raises(grpc.aio.AioRpcError) as revoked:
        await stub.ListBenefits(
            ipb.ListBenefitsRequest(),
            metadata=(("authorization", f"Bearer {again.access_token}"),),
            timeout=5,
        )
    assert revoked.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_operator_clis_manage_roles_and_the_catalog(services: list[Running]) -> None:
    seeded = run_cli(services, "consumer_svc.insights.catalog", "seed")
    assert seeded.returncode == 0, seeded.stderr
    again = run_cli(services, "consumer_svc.insights.catalog", "seed")
    assert again.stdout.strip() == "catalog: 0 default benefit(s) added"
    put = run_cli(services, "consumer_svc.insights.catalog", "put", "amex", "0743", "points", "125")
    assert put.returncode == 0, put.stderr
    assert "AMERICAN_EXPRESS  0743 POINTS     125 bps (1.25%)" in put.stdout
    listed = run_cli(services, "consumer_svc.insights.catalog", "list").stdout
    assert "VISA              5812 CASHBACK   300 bps (3%)" in listed
    assert "AMERICAN_EXPRESS  0743" in listed
    assert (
        run_cli(services, "consumer_svc.insights.catalog", "delete", "AMEX", "0743").returncode == 0
    )
    gone = run_cli(services, "consumer_svc.insights.catalog", "delete", "AMEX", "0743")
    assert gone.returncode == 1
    bad = run_cli(services, "consumer_svc.insights.catalog", "put", "VISA", "58", "cashback", "0")
    assert bad.returncode == 2
    assert "benefit.rate_bps" in bad.stderr
    assert "benefit.category_code" in bad.stderr
    unknown = run_cli(services, "gateway_svc.admin", "grant", "nobody-here@example.com")
    assert unknown.returncode == 1


# ---------------------------------------------------------------- loyalty


async def test_vip_after_the_fifth_visit_and_wallet_purchases_count(
    edge: grpc.aio.Channel,
) -> None:
    user = await register_and_login(edge)
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    await deposit(edge, user, 10_000)
    await purchase(edge, user, card=None, merchant_id=merchant)  # wallet-funded
    for _ in range(3):
        await purchase(edge, user, card=VISA, merchant_id=merchant)
    four = await eventually(lambda: standing_at(edge, user, merchant), lambda s: s.visits == 4)
    assert (four.visits, four.tier, four.next_tier, four.visits_to_next_tier) == (
        4,
        "MEMBER",
        "VIP",
        1,
    )
    assert four.merchant_name == f"Shop {merchant}"
    await purchase(edge, user, card=VISA, merchant_id=merchant)
    five = await eventually(lambda: standing_at(edge, user, merchant), lambda s: s.visits == 5)
    assert (five.visits, five.tier, five.next_tier, five.visits_to_next_tier) == (5, "VIP", "", 0)
    assert five.last_visit_time.seconds > 0


async def test_redelivered_events_do_not_count_twice(
    edge: grpc.aio.Channel, services: list[Running], stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    payment = await purchase(edge, user, card=VISA, merchant_id=merchant)
    one = await eventually(lambda: standing_at(edge, user, merchant), lambda s: s.visits == 1)
    assert one.visits == 1
    # The exact bytes payment_svc published for the completion, from its outbox.
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        payloads = await conn.fetch(
            "SELECT payload FROM payments.outbox WHERE message_key = $1"
            " AND topic = 'payments.events' ORDER BY id",
            payment.payment_id,
        )
    finally:
        await conn.close()
    events = [events_pb2.PaymentEvent.FromString(r["payload"]) for r in payloads]
    completed = [
        (raw["payload"], e)
        for raw, e in zip(payloads, events, strict=True)
        if e.WhichOneof("kind") == "status_changed"
        and e.status_changed.payment.status == pb.PAYMENT_STATUS_COMPLETED
    ]
    assert len(completed) == 1
    raw, event = completed[0]
    # A different event (new id) about the same completed payment.
    other = events_pb2.PaymentEvent()
    other.CopyFrom(event)
    other.event_id = str(uuid.uuid4())
    group = env_of(services)["PAYRAIL_LOYALTY_GROUP"]
    before = metric(services, "payrail_consumer_events_total", group=group, result="duplicate")
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for value in (raw, raw, other.SerializeToString()):
            await producer.send_and_wait("payments.events", value, key=payment.payment_id.encode())
    finally:
        await producer.stop()
    await caught_up(stack.kafka_bootstrap, group)
    after = await standing_at(edge, user, merchant)
    assert after.visits == 1
    dup = metric(services, "payrail_consumer_events_total", group=group, result="duplicate")
    dup_payment = metric(
        services, "payrail_consumer_events_total", group=group, result="duplicate_payment"
    )
    assert (dup or 0) - (before or 0) == 2
    assert (dup_payment or 0) >= 1
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        visits = await conn.fetchval(
            "SELECT count(*) FROM consumer.loyalty_visits WHERE payment_id = $1",
            payment.payment_id,
        )
    finally:
        await conn.close()
    assert visits == 1


async def test_standings_page_most_visits_first_and_only_the_callers(
    edge: grpc.aio.Channel,
) -> None:
    user = await register_and_login(edge)
    prefix = uuid.uuid4().hex[:6]
    a, b, c = (f"{prefix}-{x}" for x in "abc")
    for merchant, card in ((b, VISA), (a, MASTERCARD), (b, AMEX), (c, VISA)):
        await purchase(edge, user, card=card, merchant_id=merchant)
    await eventually(
        lambda: standings(edge, user), lambda r: sum(s.visits for s in r.standings) == 4
    )
    seen: list[tuple[str, int]] = []
    token = ""
    for _ in range(5):
        page = await standings(edge, user, page_size=1, page_token=token)
        assert len(page.standings) == 1
        seen.append((page.standings[0].merchant_id, page.standings[0].visits))
        token = page.next_page_token
        if not token:
            break
    assert seen == [(b, 2), (a, 1), (c, 1)]
    whole = await standings(edge, user)  # page_size 0 means 20
    assert [s.merchant_id for s in whole.standings] == [b, a, c]
    assert whole.next_page_token == ""

    stranger = await register_and_login(edge)
    assert list((await standings(edge, stranger)).standings) == []
    for bad in ({"page_size": 101}, {"page_size": -1}, {"page_token": "not-a-token"}):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await standings(edge, user, **bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A token is bound to the filter it was issued for.
    first = await standings(edge, user, page_size=1)
    with pytest.raises(grpc.aio.AioRpcError) as other_filter:
        await standings(edge, user, page_size=1, page_token=first.next_page_token, merchant_id=a)
    assert other_filter.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------- benefits


async def test_a_tip_when_a_better_card_was_used_before(
    edge: grpc.aio.Channel, services: list[Running], stack: StackEnv, catalog: None
) -> None:
    user = await register_and_login(edge)
    group = env_of(services)["PAYRAIL_BENEFITS_GROUP"]
    await purchase(edge, user, card=VISA, merchant_id="diner-1", amount_minor=5000)
    await caught_up(stack.kafka_bootstrap, group)
    assert await tips(edge, user) == []  # the only card it knows

    paid = await purchase(edge, user, card=MASTERCARD, merchant_id="diner-2", amount_minor=5000)
    found = await eventually(lambda: tips(edge, user), lambda t: len(t) == 1)
    assert len(found) == 1
    tip = found[0]
    assert tip.message == "The card ending 4242 would have earned 3% here (you earned 1%)"
    assert (tip.payment_id, tip.merchant_id, tip.category_code) == (
        paid.payment_id,
        "diner-2",
        CATEGORY,
    )
    assert (tip.used_card.brand, tip.used_card.last4, tip.used_rate_bps) == (
        pb.CARD_BRAND_MASTERCARD,
        "4444",
        100,
    )
    assert (tip.better_card.brand, tip.better_card.masked_number, tip.better_rate_bps) == (
        pb.CARD_BRAND_VISA,
        "424242******4242",
        300,
    )
    # 3% of 50.00 is 1.50, 1% is 0.50: one dollar more.
    assert (tip.extra_reward.currency_code, tip.extra_reward.amount_minor) == ("USD", 100)

    # Paying with the best card: no tip.
    await purchase(edge, user, card=VISA, merchant_id="diner-3", amount_minor=5000)
    await caught_up(stack.kafka_bootstrap, group)
    assert [t.payment_id for t in await tips(edge, user)] == [paid.payment_id]

    # Amex earns 4% in points here: once it is known, Visa is the weaker card.
    await purchase(edge, user, card=AMEX, merchant_id="diner-4", amount_minor=2000)
    visa = await purchase(edge, user, card=VISA, merchant_id="diner-5", amount_minor=2000)
    newest = await eventually(lambda: tips(edge, user), lambda t: len(t) == 2)
    assert [t.payment_id for t in newest] == [visa.payment_id, paid.payment_id]
    assert newest[0].message == (
        "The card ending 0005 would have earned 4% in points here (you earned 3%)"
    )
    assert newest[0].extra_reward.amount_minor == 20


# ---------------------------------------------------------------- stopping a group


async def test_payments_complete_while_loyalty_is_stopped_and_it_catches_up(
    edge: grpc.aio.Channel, services: list[Running], stack: StackEnv
) -> None:
    insights = insights_process(services)
    group = env_of(services)["PAYRAIL_LOYALTY_GROUP"]
    base_env = dict(env_of(services))
    insights.process.terminate()
    insights.process.wait(timeout=20)
    # Only benefits runs now: the operator switched loyalty off.
    insights.env = {
        **base_env,
        "PAYRAIL_INSIGHTS_GROUPS": "benefits",
        "PAYRAIL_INSIGHTS_LAG_INTERVAL_S": "1",
    }
    insights.restart()

    user = await register_and_login(edge)
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        await purchase(edge, user, card=VISA, merchant_id=merchant)
    await asyncio.sleep(2)
    assert (await standing_at(edge, user, merchant)).visits == 0
    # The stopped group's lag is still reported, and it is growing.
    lag = await eventually(
        lambda: asyncio.to_thread(metric, services, "payrail_consumer_lag_messages", group=group),
        lambda v: v is not None and v >= 2,
    )
    assert lag is not None
    assert lag >= 2

    # Switched on again, it works through what it missed.
    insights.process.terminate()
    insights.process.wait(timeout=20)
    insights.env = base_env
    insights.restart()

    async def standing_once_reachable() -> ipb.MerchantStanding:
        # The edge reconnects to the restarted process within its reconnect backoff.
        try:
            return await standing_at(edge, user, merchant)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            return ipb.MerchantStanding()

    caught = await eventually(standing_once_reachable, lambda s: s.visits == 2)
    assert caught.visits == 2
    assert caught.tier == "MEMBER"


async def test_payments_complete_and_insights_say_unavailable_while_it_is_down(
    edge: grpc.aio.Channel, services: list[Running]
) -> None:
    insights = insights_process(services)
    insights.process.kill()
    insights.process.wait(timeout=10)
    try:
        user = await register_and_login(edge)
        await purchase(edge, user, card=VISA, merchant_id="anywhere")
        # The edge stays in rotation; only its view of the insights process is down.
        gateway = next(s for s in services if s.name == "gateway")
        assert await health(gateway.port) == SERVING
        down = await eventually(
            lambda: health(gateway.port, "payrail.dependency.consumer_insights"),
            lambda status: status == NOT_SERVING,
        )
        assert down == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await standings(edge, user)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details() == "insights are temporarily unavailable; retry with backoff"
    finally:
        insights.restart()
