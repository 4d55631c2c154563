"""The Go sandbox gateway (sdk/go + sandbox_gateways/go) in the whole loop, with real
processes: payments in CAD route to `sandbox-go` (format `protobuf`, priority 30, above
the JSON sandbox's 10), which consumes its topic with the Go SDK's worker, opens the
sealed card with its X25519 key and reports signed, batched protobuf results that
payrail applies. Nothing is mocked: the test stack's Kafka, PostgreSQL and Redis,
payrail's services as processes, and the sandbox as `sandbox_gateways/go/run`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.conftest import ROOT, StackEnv, free_port
from tests.e2e.conftest import DISPATCH_ATTEMPTS_MAX, GATEWAY_TIMEOUT_S, Running, wait_serving
from tests.e2e.test_processing import (
    APPROVE,
    DECLINE,
    NO_FUNDS,
    SILENT,
    assert_ledger_invariants,
    request,
    settle,
    submit,
)
from tests.helpers import User, register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

GATEWAY_ID = "sandbox-go"
WIRE_FORMAT = "protobuf"
CURRENCY = "CAD"
TOPIC = f"gateway.{GATEWAY_ID}.requests"
# A fresh machine downloads the Go modules and compiles grpc and franz-go once.
BUILD_TIMEOUT_S = 600
STOP_TIMEOUT_S = 10


def _run(args: list[str], env: dict[str, str], timeout_s: float = 60) -> None:
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def sandbox_go(
    services: list[Running], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """sandbox-go: keys, registered for CAD, its topic, built, started against this
    module's services; stopped with SIGTERM at the end, which must exit 0."""
    env = dict(services[0].env or os.environ)
    keys = Path(env["PAYRAIL_SANDBOX_KEYS_DIR"])
    _run([sys.executable, "-m", "sandbox_gateways.keys", "--dir", str(keys), GATEWAY_ID], env)
    _run(
        [
            sys.executable,
            "-m",
            "payment_svc.gateways",
            "add",
            GATEWAY_ID,
            "--format",
            WIRE_FORMAT,
            "--priority",
            "30",
            "--currencies",
            CURRENCY,
            # The janitor's short timeout of this suite, as for the Python sandboxes.
            "--timeout-s",
            str(GATEWAY_TIMEOUT_S),
            "--public-key-file",
            str(keys / f"{GATEWAY_ID}.x25519.pub"),
            "--secret-file",
            str(keys / f"{GATEWAY_ID}.secret"),
        ],
        env,
    )
    # A test stack started before the topic was listed in deploy/local/topics.txt has
    # no such topic (the broker does not create topics on demand).
    topics = tmp_path_factory.mktemp("go-topics") / "topics.txt"
    topics.write_text(f"{TOPIC} 3\n")
    _run(
        [
            sys.executable,
            "deploy/local/kafka_topics.py",
            "--bootstrap",
            env["PAYRAIL_KAFKA_BOOTSTRAP"],
            "--file",
            str(topics),
        ],
        env,
    )
    _run(["sandbox_gateways/go/build"], env, timeout_s=BUILD_TIMEOUT_S)
    port = free_port()
    env["PAYRAIL_SANDBOX_GO_PORT"] = str(port)
    log_path = tmp_path_factory.mktemp("go-logs") / "sandbox_go.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            ["sandbox_gateways/go/run"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = Running("sandbox_go", port, process, log_path, env=env)
    try:
        wait_serving(running)
        yield running
    finally:
        returncode = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                returncode = process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        # A graceful stop: SIGTERM ends the sandbox within seconds, with exit code 0.
        assert returncode == 0, log_path.read_text(errors="replace")[-3000:]


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running], sandbox_go: Running) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


def log_records(svc: Running) -> list[dict[str, Any]]:
    """The sandbox's log: one JSON object per line."""
    records = []
    for line in svc.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


async def cad_balance(channel: grpc.aio.Channel, user: User) -> tuple[int, int]:
    reply = await payments_pb2_grpc.PaymentServiceStub(channel).GetBalance(
        pb.GetBalanceRequest(currency_code=CURRENCY), metadata=user.metadata, timeout=5
    )
    return (
        (reply.balances[0].available_minor, reply.balances[0].held_minor)
        if reply.balances
        else (0, 0)
    )


async def callback_events(dsn: str, payment_ids: list[str]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT event_id, gateway_id, payment_id::text AS payment_id, xmin::text AS tx"
            " FROM payments.callback_events WHERE payment_id = ANY($1::uuid[])",
            [uuid.UUID(p) for p in payment_ids],
        )
    finally:
        await conn.close()


def cad(kind: pb.PaymentKind, card: str, amount_minor: int) -> pb.CreatePaymentRequest:
    return request(kind, card, amount_minor, currency_code=CURRENCY)


async def test_a_cad_card_payment_completes_with_the_go_gateways_reference(
    edge: grpc.aio.Channel, sandbox_go: Running, stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    message = cad(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 2500)
    # An expiry only the sealed card carries (the request shows brand and masked number).
    message.card.exp_month, message.card.exp_year = 7, 2033
    payment_id = await submit(edge, user, message)
    payment = await settle(edge, user, payment_id)
    assert payment.status == pb.PAYMENT_STATUS_COMPLETED, payment
    assert payment.version == 3  # PENDING -> PROCESSING -> COMPLETED
    assert payment.gateway_id == GATEWAY_ID
    # Reported once, by sandbox-go, with event id <request_id>/result and its reference
    # sbx_<request_id>.
    [event] = await callback_events(stack.pg_dsn, [payment_id])
    assert event["gateway_id"] == GATEWAY_ID
    assert event["event_id"].endswith("/result")
    assert payment.gateway_reference == "sbx_" + event["event_id"].removesuffix("/result")
    assert await cad_balance(edge, user) == (2500, 0)

    # The card the Go SDK opened is the card the payment was created with: its masked
    # number, and the expiry and CVC that travel only inside the sealed envelope.
    opened = [
        r
        for r in log_records(sandbox_go)
        if r.get("msg") == "card opened" and r.get("payment_id") == payment_id
    ]
    assert opened, "the sandbox logged no opened card for the payment"
    assert {(r["masked_number"], r["exp_month"], r["exp_year"], r["has_cvc"]) for r in opened} == {
        ("424242******4242", 7, 2033, True)
    }
    # The full number never reaches the sandbox's log.
    assert APPROVE not in sandbox_go.log_path.read_text(errors="replace")
    await assert_ledger_invariants(stack.pg_dsn)


@pytest.mark.parametrize(
    ("card", "code"), [(DECLINE, "card_declined"), (NO_FUNDS, "insufficient_funds")]
)
async def test_declining_cards_fail_with_their_codes(
    edge: grpc.aio.Channel, stack: StackEnv, card: str, code: str
) -> None:
    user = await register_and_login(edge)
    payment = await settle(
        edge, user, await submit(edge, user, cad(pb.PAYMENT_KIND_PURCHASE, card, 1000))
    )
    assert payment.status == pb.PAYMENT_STATUS_FAILED, payment
    assert payment.failure_code == code
    assert payment.gateway_id == GATEWAY_ID
    await assert_ledger_invariants(stack.pg_dsn)


async def test_the_never_answering_card_is_timed_out_by_the_janitor(
    edge: grpc.aio.Channel, stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    await settle(edge, user, await submit(edge, user, cad(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 5000)))
    payment_id = await submit(edge, user, cad(pb.PAYMENT_KIND_WITHDRAWAL, SILENT, 4000))
    assert await cad_balance(edge, user) == (1000, 4000)
    # sandbox-go never answers: dispatched, re-dispatched by the janitor after the
    # callback deadline, then failed once the attempts are spent (about 2 x 3 s here).
    payment = await settle(edge, user, payment_id, timeout_s=60)
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert payment.failure_code == "gateway_timeout"
    assert payment.gateway_id == GATEWAY_ID
    assert payment.attempt == DISPATCH_ATTEMPTS_MAX
    assert payment.gateway_reference == ""  # the gateway never reported
    assert await cad_balance(edge, user) == (5000, 0)
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        attempts = await conn.fetchval(
            "SELECT attempt FROM payments.dispatches WHERE payment_id = $1", uuid.UUID(payment_id)
        )
    finally:
        await conn.close()
    assert attempts == DISPATCH_ATTEMPTS_MAX
    assert await callback_events(stack.pg_dsn, [payment_id]) == []
    await assert_ledger_invariants(stack.pg_dsn)


async def test_a_burst_settles_through_batched_protobuf_callbacks(
    edge: grpc.aio.Channel, stack: StackEnv
) -> None:
    users = [await register_and_login(edge) for _ in range(4)]
    plan = [
        (
            users[i % len(users)],
            cad(pb.PAYMENT_KIND_DEPOSIT, DECLINE if i % 5 == 2 else APPROVE, 100 + i),
        )
        for i in range(20)
    ]
    payment_ids = await asyncio.gather(*(submit(edge, user, message) for user, message in plan))
    finals = await asyncio.gather(
        *(settle(edge, user, pid) for (user, _), pid in zip(plan, payment_ids, strict=True))
    )
    for (_, message), payment in zip(plan, finals, strict=True):
        declined = message.card.number == DECLINE
        assert payment.status == (
            pb.PAYMENT_STATUS_FAILED if declined else pb.PAYMENT_STATUS_COMPLETED
        ), payment
        assert payment.version == 3  # PENDING -> PROCESSING -> final, once
        assert payment.gateway_id == GATEWAY_ID
        if declined:
            assert payment.failure_code == "card_declined"
    for user in users:
        expected = sum(
            m.amount.amount_minor for u, m in plan if u is user and m.card.number == APPROVE
        )
        assert await cad_balance(edge, user) == (expected, 0)
    # One recorded result per payment, and several applied in one transaction: one
    # ReportResults call carried them.
    rows = await callback_events(stack.pg_dsn, payment_ids)
    assert sorted(r["payment_id"] for r in rows) == sorted(payment_ids)
    assert {r["gateway_id"] for r in rows} == {GATEWAY_ID}
    per_transaction = Counter(r["tx"] for r in rows)
    assert max(per_transaction.values()) >= 2, per_transaction
    await assert_ledger_invariants(stack.pg_dsn)


async def test_health_reports_payrail_reachable(sandbox_go: Running) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sandbox_go.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        overall = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        dependency = await stub.Check(
            health_pb2.HealthCheckRequest(service="payrail.dependency.payrail"), timeout=5
        )
    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert dependency.status == health_pb2.HealthCheckResponse.SERVING
