"""With real processes: registering with a taken e-mail answers like a new one, and the
account's owner receives the notice through consumer_svc's development sink."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from payrail.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.e2e.conftest import Running
from tests.helpers import register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


async def deliveries_for(
    services: list[Running], user_id: str, timeout_s: float = 20
) -> list[dict[str, Any]]:
    """The sink's deliveries to user_id, once there is at least one."""
    sink = Path((services[0].env or {})["PAYRAIL_NOTIFICATIONS_SINK_FILE"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(lambda: sink.read_text() if sink.exists() else "")
        found = [json.loads(line) for line in text.splitlines()]
        mine = [d for d in found if d.get("user_id") == user_id]
        if mine:
            return mine
        await asyncio.sleep(0.2)
    raise AssertionError(f"no notification for {user_id} in {sink}")


async def test_owner_is_told_of_a_registration_with_their_address(
    edge: grpc.aio.Channel, services: list[Running]
) -> None:
    owner = await register_and_login(edge)
    stub = auth_pb2_grpc.AuthServiceStub(edge)
    reply = await stub.Register(
        auth_pb2.RegisterRequest(
            email=owner.email.upper(),
            password="someone else's long passphrase",
            first_name="Mallory",
            last_name="Probe",
        ),
        timeout=10,
    )
    assert reply == auth_pb2.RegisterResponse()
    (delivery,) = await deliveries_for(services, owner.user_id)
    assert delivery["kind"] == "NOTIFICATION_KIND_REGISTRATION_ATTEMPT"
    assert "tried to register" in delivery["text"]
    assert "passphrase" not in json.dumps(delivery)
    # The owner's account is untouched.
    await stub.Login(auth_pb2.LoginRequest(email=owner.email, password=owner.password), timeout=10)
