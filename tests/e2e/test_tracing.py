"""A payment can be traced: the gateway and its reference on ``Payment``, one log line
per lifecycle step, and one request id from the client's call through gRPC metadata and
Kafka headers into the log lines of every process the payment crossed."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from tests.e2e.conftest import Running
from tests.helpers import register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

APPROVE, DECLINE = "4242424242424242", "4000000000000002"
# An id the servers made: a UUID in its dashed form.
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


def deposit(card: str) -> pb.CreatePaymentRequest:
    return pb.CreatePaymentRequest(
        idempotency_key=str(uuid.uuid4()),
        kind=pb.PAYMENT_KIND_DEPOSIT,
        amount=pb.Money(currency_code="USD", amount_minor=1500),
        card=pb.CardInput(number=card, exp_month=12, exp_year=2031, cvc="123"),
    )


async def final(
    stub: payments_pb2_grpc.PaymentServiceStub, metadata: Any, payment_id: str
) -> pb.Payment:
    deadline = time.monotonic() + 30
    while True:
        reply: pb.GetPaymentResponse = await stub.GetPayment(
            pb.GetPaymentRequest(payment_id=payment_id), metadata=metadata, timeout=5
        )
        if reply.payment.status in (pb.PAYMENT_STATUS_COMPLETED, pb.PAYMENT_STATUS_FAILED):
            return reply.payment
        assert time.monotonic() < deadline, f"still {reply.payment.status}"
        await asyncio.sleep(0.2)


def log_lines(services: list[Running]) -> list[tuple[str, dict[str, Any]]]:
    """Every JSON line every service wrote, as (service, record)."""
    found = []
    for svc in services:
        for line in svc.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a plain line from a library
            if isinstance(record, dict):
                found.append((svc.name, record))
    return found


async def lines_for(
    services: list[Running], request_id: str, *, until: set[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The lines carrying ``request_id``, once every message in ``until`` is among them
    (the last processes write theirs a moment after the payment became final)."""
    deadline = time.monotonic() + 15
    while True:
        mine = [(s, r) for s, r in log_lines(services) if r.get("request_id") == request_id]
        if until <= {r["msg"] for _, r in mine} or time.monotonic() > deadline:
            return mine
        await asyncio.sleep(0.3)


async def test_one_request_id_follows_a_payment_through_every_process(
    edge: grpc.aio.Channel, services: list[Running]
) -> None:
    user = await register_and_login(edge)
    stub = payments_pb2_grpc.PaymentServiceStub(edge)
    request_id = f"e2e-trace-{uuid.uuid4().hex}"
    call = stub.CreatePayment(
        deposit(APPROVE), metadata=(*user.metadata, ("x-request-id", request_id)), timeout=5
    )
    created = await call
    # The edge answers with the id it used: the client's own, as it was well-formed.
    assert ("x-request-id", request_id) in tuple(await call.initial_metadata())
    payment_id = created.payment.payment_id
    assert created.payment.gateway_id == ""
    assert created.payment.attempt == 0

    payment = await final(stub, user.metadata, payment_id)
    assert payment.status == pb.PAYMENT_STATUS_COMPLETED
    assert payment.gateway_id == "sandbox-json"
    assert payment.attempt == 1
    # The sandbox's own reference for the charge, as it reported it.
    assert re.fullmatch(rf"sbx_{payment_id}:1", payment.gateway_reference)

    steps = {
        "payment created",
        "payment risk decided",
        "payment dispatched",
        "payment completed",
        "result reported",
    }
    mine = await lines_for(services, request_id, until=steps)
    by_service = {s for s, _ in mine}
    # Edge -> payment_svc (gRPC metadata) -> outbox -> Kafka -> processor -> BeginDispatch
    # (gRPC) -> gateway request (Kafka) -> sandbox -> callback (gRPC) -> payment_svc.
    assert {"payment", "consumer", "sandbox_json"} <= by_service, by_service
    for step in (
        "payment created",
        "payment risk decided",
        "payment dispatched",
        "payment completed",
    ):
        lines = [r for s, r in mine if r["msg"] == step and r.get("payment_id") == payment_id]
        assert len(lines) == 1, (step, lines)
        assert lines[0]["user_id"] == user.user_id
    decided = next(r for s, r in mine if r["msg"] == "payment risk decided")
    assert decided["decision"] == "APPROVE"
    dispatched = next(r for _, r in mine if r["msg"] == "payment dispatched")
    assert dispatched["gateway_id"] == "sandbox-json"
    assert dispatched["attempt"] == 1
    completed = next(r for _, r in mine if r["msg"] == "payment completed")
    assert completed["gateway_outcome"] == "APPROVED"
    assert completed["gateway_reference"] == payment.gateway_reference
    reported = next(r for s, r in mine if r["msg"] == "result reported")
    assert reported["payment_id"] == payment_id
    assert reported["outcome"] == "APPROVED"
    # Never card data, whole or in part, next to the id.
    text = json.dumps([r for _, r in mine])
    assert APPROVE not in text
    assert "424242" not in text


async def test_a_declined_payment_logs_its_outcome_once(
    edge: grpc.aio.Channel, services: list[Running]
) -> None:
    user = await register_and_login(edge)
    stub = payments_pb2_grpc.PaymentServiceStub(edge)
    request_id = f"e2e-decline-{uuid.uuid4().hex}"
    created = await stub.CreatePayment(
        deposit(DECLINE), metadata=(*user.metadata, ("x-request-id", request_id)), timeout=5
    )
    payment = await final(stub, user.metadata, created.payment.payment_id)
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert payment.gateway_id == "sandbox-json"
    assert payment.attempt == 1
    mine = await lines_for(services, request_id, until={"payment failed"})
    failed = [r for _, r in mine if r["msg"] == "payment failed"]
    assert len(failed) == 1
    assert failed[0]["outcome"] == payment.failure_code == "card_declined"
    assert failed[0]["gateway_outcome"] == "DECLINED"


async def test_a_malformed_request_id_is_replaced_and_errors_carry_one_too(
    edge: grpc.aio.Channel,
) -> None:
    user = await register_and_login(edge)
    stub = payments_pb2_grpc.PaymentServiceStub(edge)
    call = stub.GetBalance(
        pb.GetBalanceRequest(),
        metadata=(*user.metadata, ("x-request-id", "not a valid id; " + "x" * 80)),
        timeout=5,
    )
    await call
    headers = dict(await call.initial_metadata())
    assert re.fullmatch(UUID, headers["x-request-id"])

    failing = stub.GetPayment(
        pb.GetPaymentRequest(payment_id=str(uuid.uuid4())), metadata=user.metadata, timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await failing
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    # A client reporting a failure can quote the id the servers logged it under.
    assert re.fullmatch(UUID, dict(await failing.initial_metadata())["x-request-id"])
