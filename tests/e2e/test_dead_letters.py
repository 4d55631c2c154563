"""Dead letters are not a dead end: a payment whose creation event was dead-lettered is
listed by ``python -m consumer_svc.dlq``, re-driven, and settles."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from payrail.payments.v1 import payments_pb2 as pb
from tests.conftest import ROOT, StackEnv
from tests.e2e.conftest import RELAXED_RISK, Running
from tests.e2e.stranding import inbox_has, strand_payment
from tests.e2e.test_processing import APPROVE, request, settle
from tests.helpers import register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(scope="module")
def service_env() -> dict[str, str]:
    # The janitor would re-drive the stranded payment itself after a minute; here the
    # operator does it, so the janitor waits far longer than the test.
    return {**RELAXED_RISK, "PAYRAIL_JANITOR_REDRIVE_AFTER_S": "900"}


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


def dlq(stack: StackEnv, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator's CLI, as a process, configured by the environment like the services."""
    env = {
        **os.environ,
        "PAYRAIL_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "PAYRAIL_PG_DSN": stack.pg_dsn,
    }
    return subprocess.run(
        [sys.executable, "-m", "consumer_svc.dlq", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def park(stack: StackEnv, record: Any, error: str) -> None:
    """Dead-letter ``record`` exactly as ConsumerLoop does: same key and value, its
    headers plus error, source-offset and source-partition."""
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            f"{record.topic}.dlq",
            record.value,
            key=record.key,
            headers=[
                *(record.headers or ()),
                ("error", error.encode()),
                ("source-offset", str(record.offset).encode()),
                ("source-partition", str(record.partition).encode()),
            ],
        )
    finally:
        await producer.stop()


async def test_a_dead_lettered_payment_is_listed_redriven_once_and_settles(
    edge: grpc.aio.Channel, stack: StackEnv, services: list[Running]
) -> None:
    consumer = next(s for s in services if s.name == "consumer")
    assert consumer.env is not None
    group = consumer.env["PAYRAIL_PROCESSOR_GROUP"]
    user = await register_and_login(edge)
    stranded = await strand_payment(
        edge, stack, consumer, user, request(pb.PAYMENT_KIND_DEPOSIT, APPROVE, 700)
    )
    error = f"payment_svc answered UNAVAILABLE (test {uuid.uuid4().hex[:8]})"
    await park(stack, stranded.record, error)
    # Nothing processes it by itself.
    await asyncio.sleep(3)
    assert (await settle(edge, user, stranded.payment_id, timeout_s=0)).status == (
        pb.PAYMENT_STATUS_PENDING
    )

    listed = dlq(stack, "list", "--topic", "payments.events.dlq", "--limit", "0", "--json")
    assert listed.returncode == 0, listed.stderr
    ours = [item for item in json.loads(listed.stdout) if item["error"] == error]
    assert len(ours) == 1
    letter = ours[0]
    assert letter["key"] == stranded.payment_id
    assert letter["source_topic"] == "payments.events"
    assert (letter["source_partition"], letter["source_offset"]) == (
        stranded.record.partition,
        stranded.record.offset,
    )
    assert (
        letter["summary"] == f"created payment={stranded.payment_id} event={stranded.event_id} v1"
    )
    assert letter["redriven"] is None
    human = dlq(stack, "list", "--error-contains", error)
    assert human.returncode == 0, human.stderr
    assert [line.split()[0] for line in human.stdout.splitlines()] == [letter["id"]]
    assert "not re-driven" in human.stdout
    assert "4242424242424242" not in listed.stdout + human.stdout

    redriven = dlq(stack, "redrive", letter["id"], "--reason", "payment_svc is back")
    assert redriven.returncode == 0, redriven.stderr
    assert f"re-drove {letter['id']} -> payments.events" in redriven.stdout

    payment = await settle(edge, user, stranded.payment_id, timeout_s=30)
    assert payment.status == pb.PAYMENT_STATUS_COMPLETED
    assert await inbox_has(stack, group, stranded.event_id)

    # Recorded: list shows it, --all does not send it twice, an id needs --again.
    after = dlq(stack, "list", "--topic", "payments.events.dlq", "--limit", "0", "--json")
    [item] = [i for i in json.loads(after.stdout) if i["id"] == letter["id"]]
    assert item["redriven"]["reason"] == "payment_svc is back"
    assert item["redriven"]["count"] == 1
    twice = dlq(
        stack, "redrive", "--all", "--topic", "payments.events.dlq", "--error-contains", error
    )
    assert twice.returncode == 0, twice.stderr
    assert "nothing to re-drive" in twice.stderr
    refused = dlq(stack, "redrive", letter["id"])
    assert refused.returncode == 1
    assert "already re-driven" in refused.stderr
    # Sent once more on purpose: the processor's inbox makes it a no-op.
    again = dlq(stack, "redrive", letter["id"], "--again", "--reason", "checking")
    assert again.returncode == 0, again.stderr
    await asyncio.sleep(2)
    final = await settle(edge, user, stranded.payment_id, timeout_s=0)
    assert (final.status, final.version) == (payment.status, payment.version)
