"""The notice queue on a fake producer: never blocks, retries while Kafka fails, bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from gateway_svc.adapters.kafka_notifier import KafkaNotifier, NotifierOptions
from payrail.notifications.v1 import notifications_pb2 as npb
from payrail_common.faults import Backoff
from payrail_common.supervision import Supervision

FAST = Backoff(base_s=0.001, max_s=0.01)


class FakeProducer:
    """Fails the first ``failures`` sends (as a broker outage would), then records them."""

    def __init__(self, outcome: dict[str, Any]) -> None:
        self.outcome = outcome

    async def start(self) -> None:
        self.outcome["starts"] += 1

    async def stop(self) -> None:
        self.outcome["stops"] += 1

    async def send_and_wait(self, topic: str, value: bytes, **kwargs: Any) -> None:
        if self.outcome["failures"] > 0:
            self.outcome["failures"] -= 1
            raise KafkaConnectionError()
        self.outcome["sent"].append((topic, npb.Notification.FromString(value), kwargs))


def notifier(outcome: dict[str, Any], **options: Any) -> KafkaNotifier:
    loop = KafkaNotifier(
        bootstrap_servers="unused:9092",
        options=NotifierOptions(**options),
        producer_factory=lambda: FakeProducer(outcome),
    )
    loop.registry = Supervision()
    return loop


async def wait_for(predicate: Any, polls_max: int = 500) -> None:
    for _ in range(polls_max):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.mark.asyncio
async def test_a_notice_is_published_after_kafka_comes_back() -> None:
    outcome: dict[str, Any] = {"failures": 2, "sent": [], "starts": 0, "stops": 0}
    loop = notifier(outcome, retry_backoff=FAST)
    loop.start()
    try:
        loop.registration_attempted("user-1")  # returns at once, whatever Kafka does
        await wait_for(lambda: outcome["sent"])
    finally:
        await loop.stop()
    ((topic, notice, kwargs),) = outcome["sent"]
    assert topic == "notifications"
    assert kwargs["key"] == b"user-1"
    assert notice.user_id == "user-1"
    assert notice.kind == npb.NOTIFICATION_KIND_REGISTRATION_ATTEMPT
    assert notice.notification_id
    assert outcome["starts"] == 3  # a fresh producer after each failure


@pytest.mark.asyncio
async def test_a_full_queue_drops_instead_of_blocking() -> None:
    outcome: dict[str, Any] = {"failures": 0, "sent": [], "starts": 0, "stops": 0}
    loop = notifier(outcome, queue_max=2)  # not started: nothing drains the queue
    for n in range(5):
        loop.registration_attempted(f"user-{n}")
    assert loop.pending() == 2


@pytest.mark.asyncio
async def test_a_notice_is_dropped_after_its_attempts() -> None:
    outcome: dict[str, Any] = {"failures": 10**6, "sent": [], "starts": 0, "stops": 0}
    loop = notifier(outcome, attempts_max=3, retry_backoff=FAST)
    loop.start()
    try:
        loop.registration_attempted("user-1")
        loop.registration_attempted("user-2")
        await wait_for(lambda: outcome["starts"] >= 6)  # both tried three times, then next
    finally:
        await loop.stop()
    assert outcome["sent"] == []
