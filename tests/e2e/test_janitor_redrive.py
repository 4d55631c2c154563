"""The janitor re-drives a PENDING payment whose creation event the processor never saw,
long before it would expire, and says so in its log and its metric."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from payrail.payments.v1 import payments_pb2 as pb
from tests.conftest import StackEnv
from tests.e2e.conftest import RELAXED_RISK, Running
from tests.e2e.stranding import inbox_has, strand_payment
from tests.e2e.test_processing import APPROVE, request, settle
from tests.helpers import register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

REDRIVE_AFTER_S = 4


@pytest.fixture(scope="module")
def service_env() -> dict[str, str]:
    return {
        **RELAXED_RISK,
        "PAYRAIL_JANITOR_REDRIVE_AFTER_S": str(REDRIVE_AFTER_S),
        # Other modules may have left PENDING payments behind: page through them quickly.
        "PAYRAIL_JANITOR_BATCH_MAX": "1000",
    }


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


def redriven_total(consumer: Running) -> float:
    assert consumer.env is not None
    port = consumer.env["PAYRAIL_CONSUMER_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    for line in text.splitlines():
        if line.startswith('payrail_janitor_payments_total{action="redriven"} '):
            return float(line.split()[-1])
    raise AssertionError("payrail_janitor_payments_total{action=redriven} is not exported")


def redrive_lines(consumer: Running, payment_id: str) -> list[dict[str, object]]:
    found = []
    for line in consumer.log_path.read_text(errors="replace").splitlines():
        if "re-drove stranded payment" in line and payment_id in line:
            found.append(json.loads(line))
    return found


async def test_a_stranded_pending_payment_is_redriven_by_the_janitor_and_settles(
    edge: grpc.aio.Channel, stack: StackEnv, services: list[Running]
) -> None:
    consumer = next(s for s in services if s.name == "consumer")
    assert consumer.env is not None
    user = await register_and_login(edge)
    started = time.monotonic()
    stranded = await strand_payment(
        edge, stack, consumer, user, request(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 900)
    )
    # The processor group is past the event: only the janitor can get it processed.
    assert not await inbox_has(stack, consumer.env["PAYRAIL_PROCESSOR_GROUP"], stranded.event_id)
    assert redriven_total(consumer) == 0

    payment = await settle(edge, user, stranded.payment_id, timeout_s=60)
    waited_s = time.monotonic() - started
    assert payment.status == pb.PAYMENT_STATUS_COMPLETED
    assert await inbox_has(stack, consumer.env["PAYRAIL_PROCESSOR_GROUP"], stranded.event_id)
    # Re-driven after PAYRAIL_JANITOR_REDRIVE_AFTER_S, far from the 30-minute expiry.
    assert waited_s >= REDRIVE_AFTER_S - 1
    assert waited_s < 60

    lines = redrive_lines(consumer, stranded.payment_id)
    assert len(lines) == 1, lines
    assert lines[0]["event_id"] == stranded.event_id
    assert redriven_total(consumer) >= 1
    # Done: it is not re-driven again in later passes.
    await asyncio.sleep(REDRIVE_AFTER_S + 2)
    assert len(redrive_lines(consumer, stranded.payment_id)) == 1
