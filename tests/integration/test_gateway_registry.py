"""``python -m payment_svc.gateways add`` registers a gateway and creates its request topic
on the real broker (the brokers create no topic on their own), idempotently; with Kafka
unreachable it says so plainly, after the registration."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import ROOT, StackEnv, free_port

pytestmark = [pytest.mark.integration]


def add_gateway(
    stack: StackEnv, keys: Path, gateway_id: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    public, secret = keys / "gw.pub", keys / "gw.secret"
    public.write_text(base64.b64encode(os.urandom(32)).decode())
    secret.write_text(base64.b64encode(os.urandom(32)).decode())
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "payment_svc.gateways",
            "--dsn",
            stack.pg_dsn,
            "add",
            gateway_id,
            "--format",
            "json",
            "--currencies",
            "CHF",
            "--public-key-file",
            str(public),
            "--secret-file",
            str(secret),
            *extra,
        ],
        cwd=ROOT,
        env={**os.environ, "PAYRAIL_KAFKA_BOOTSTRAP": stack.kafka_bootstrap},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def topic_partitions(stack: StackEnv, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return 0 if described["error_code"] else len(described["partitions"])


async def registered(stack: StackEnv, gateway_id: str) -> bool:
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        return bool(
            await conn.fetchval("SELECT count(*) FROM payments.gateways WHERE id = $1", gateway_id)
        )
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_add_creates_the_request_topic_once(stack: StackEnv, tmp_path: Path) -> None:
    gateway_id = f"test-gw-{uuid.uuid4().hex[:8]}"
    topic = f"gateway.{gateway_id}.requests"
    first = add_gateway(stack, tmp_path, gateway_id, "--partitions", "2")
    assert first.returncode == 0, first.stderr
    assert f"topic {topic}: created (2 partitions)" in first.stdout
    assert await topic_partitions(stack, topic) == 2
    again = add_gateway(stack, tmp_path, gateway_id)
    assert again.returncode == 0, again.stderr
    assert f"topic {topic}: exists" in again.stdout
    assert await registered(stack, gateway_id)


@pytest.mark.asyncio
async def test_an_unreachable_kafka_is_named_after_the_registration(
    stack: StackEnv, tmp_path: Path
) -> None:
    gateway_id = f"test-gw-{uuid.uuid4().hex[:8]}"
    nobody = f"127.0.0.1:{free_port()}"
    result = add_gateway(stack, tmp_path, gateway_id, "--kafka-bootstrap", nobody)
    assert result.returncode != 0
    assert f"gateway {gateway_id} is registered, but its topic" in result.stderr
    assert nobody in result.stderr
    assert "Traceback" not in result.stderr
    assert await registered(stack, gateway_id)
