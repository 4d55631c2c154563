"""Register reveals nothing about which e-mails have accounts, and is throttled.

A taken e-mail and a new one get the same answer after the same work; the owner of the
taken address is told on the notifications topic (the real Kafka); a burst of Register
calls from one peer or for one e-mail is RESOURCE_EXHAUSTED with RetryInfo.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import replace

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis.asyncio import Redis

from gateway_svc import bootstrap as gateway_bootstrap
from payrail.auth.v1 import auth_pb2 as apb
from payrail.auth.v1 import auth_pb2_grpc
from payrail.notifications.v1 import notifications_pb2 as npb
from tests.conftest import ROOT, JwtKeys, StackEnv
from tests.helpers import PASSWORD, register_and_login, unique_email
from tests.integration.conftest import gateway_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PEER_KEY = "register:peer:127.0.0.1"


def request(email: str, password: str = PASSWORD) -> apb.RegisterRequest:
    return apb.RegisterRequest(email=email, password=password, first_name="Eve", last_name="Ray")


async def timed_register(
    stub: auth_pb2_grpc.AuthServiceStub, email: str
) -> tuple[apb.RegisterResponse, tuple[tuple[str, str | bytes], ...], float]:
    started = time.perf_counter()
    call = stub.Register(request(email), timeout=10)
    reply = await call
    elapsed = time.perf_counter() - started
    trailing = tuple(
        (m.key, m.value) for m in (await call.trailing_metadata() or ()) if m.key != "date"
    )
    return reply, trailing, elapsed


def topic_partitions(topic: str = "notifications") -> int:
    """The topic's partition count as the stack creates it (deploy/local/topics.txt)."""
    for line in (ROOT / "deploy/local/topics.txt").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == topic:
            return int(fields[1])
    raise AssertionError(f"{topic} is not in deploy/local/topics.txt")


def retry_info(error: grpc.aio.AioRpcError) -> error_details_pb2.RetryInfo:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details), "no RetryInfo"
    return retry


async def test_taken_and_new_email_get_the_same_answer(channel: grpc.aio.Channel) -> None:
    owner = await register_and_login(channel)
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    taken = [await timed_register(stub, owner.email.upper()) for _ in range(3)]
    new = [await timed_register(stub, unique_email("fresh")) for _ in range(3)]
    replies = {r.SerializeToString() for r, _, _ in taken + new}
    # Same status (OK), same bytes: no user id for a new account, none for a taken one.
    assert replies == {apb.RegisterResponse().SerializeToString()}
    assert {m for _, m, _ in taken} == {m for _, m, _ in new}
    # Both paths hash the password once: no cheap "this address is taken".
    taken_s = statistics.median(t for _, _, t in taken)
    new_s = statistics.median(t for _, _, t in new)
    assert 1 / 3 < taken_s / new_s < 3, (taken_s, new_s)
    # The owner's password still works; the new accounts log in at once.
    await stub.Login(apb.LoginRequest(email=owner.email, password=PASSWORD), timeout=10)


async def test_owner_of_a_taken_email_is_notified(
    channel: grpc.aio.Channel, stack: StackEnv
) -> None:
    owner = await register_and_login(channel)
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition("notifications", p) for p in range(topic_partitions())]
        # Read from the ends as they are before the Register.
        ends = await asyncio.wait_for(consumer.end_offsets(partitions), timeout=20)
        consumer.assign(partitions)
        for tp, offset in ends.items():
            consumer.seek(tp, offset)
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        await stub.Register(request(owner.email, "another long passphrase 42"), timeout=10)
        await stub.Register(request(unique_email("nobody")), timeout=10)
        found: list[npb.Notification] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not found:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    notice = npb.Notification.FromString(record.value)
                    if notice.user_id == owner.user_id:
                        found.append(notice)
        assert found, "no notification for the owner of the taken e-mail"
        notice = found[0]
        assert notice.kind == npb.NOTIFICATION_KIND_REGISTRATION_ATTEMPT
        assert notice.notification_id
        assert notice.HasField("create_time")
        assert "register" in notice.text
        assert "another long passphrase" not in notice.text
        await asyncio.sleep(1)  # nothing else for this owner: one notice per attempt
        for records in (await consumer.getmany(timeout_ms=500)).values():
            assert all(
                npb.Notification.FromString(r.value).user_id != owner.user_id for r in records
            )
    finally:
        await consumer.stop()


async def test_register_is_throttled_per_email(channel: grpc.aio.Channel) -> None:
    # The platform's per-e-mail budget is the default (5 per window); taken or not, every
    # attempt counts, so the throttle itself tells nothing either.
    email = unique_email("burst")
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    for _ in range(5):
        assert await stub.Register(request(email), timeout=10) == apb.RegisterResponse()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Register(request(email.upper()), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < retry_info(info.value).retry_delay.seconds <= 900
    # Another address from the same peer is unaffected.
    await stub.Register(request(unique_email()), timeout=10)


async def test_register_is_throttled_per_peer(stack: StackEnv, jwt_keys: JwtKeys) -> None:
    redis = Redis.from_url(stack.redis_url)
    await redis.delete(PEER_KEY)
    settings = replace(
        gateway_settings(stack, jwt_keys, 1), register_max_per_peer=11, metrics_port=0
    )
    gateway = await gateway_bootstrap.build(settings)
    await gateway.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
            stub = auth_pb2_grpc.AuthServiceStub(ch)
            for _ in range(11):  # eleven different e-mails: only the peer is common
                await stub.Register(request(unique_email("peer")), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Register(request(unique_email("peer")), timeout=10)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert 0 < retry_info(info.value).retry_delay.seconds <= 900
    finally:
        await gateway.stop(0)
        await redis.delete(PEER_KEY)
        await redis.aclose()
