"""The development notification sink a batch at a time, on an in-memory inbox: one inbox
read, one append of every new line, one inbox write; poison and duplicates (in the inbox
or twice in the batch) are answered per item, and each delivery is logged under its own
record's request id."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from consumer_svc.consuming import Item, PoisonMessage
from consumer_svc.notifications import NotificationSink
from payrail.notifications.v1 import notifications_pb2 as npb
from payrail_common import tracing


@dataclass
class FakeInboxPool:
    """The two statements the sink sends, answered from a set: a read of the batch's ids
    and a write of the delivered ones."""

    inbox: set[tuple[str, str]] = field(default_factory=set)
    statements: list[str] = field(default_factory=list)

    async def fetch(self, query: str, group: str, ids: list[str]) -> list[dict[str, Any]]:
        assert query.startswith("SELECT event_id FROM consumer.inbox")
        self.statements.append("read")
        return [{"event_id": i} for i in ids if (group, i) in self.inbox]

    async def execute(self, query: str, group: str, topic: str, ids: list[str]) -> None:
        assert query.startswith("INSERT INTO consumer.inbox")
        assert topic == "notifications"
        self.statements.append("write")
        self.inbox.update((group, i) for i in ids)


def notification(notification_id: str, code: str = "123456") -> bytes:
    return npb.Notification(
        notification_id=notification_id,
        user_id="user-1",
        kind=npb.NOTIFICATION_KIND_VERIFICATION_CODE,
        payment_id="p-1",
        code=code,
        text=f"your code is {code}",
    ).SerializeToString()


class RequestIds(logging.Handler):
    """The request id bound while each delivery line was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((tracing.current(), record.getMessage()))


@pytest.fixture
def request_ids() -> Any:
    handler = RequestIds()
    logger = logging.getLogger("consumer_svc.notifications")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.mark.asyncio
async def test_a_batch_is_delivered_in_one_append_with_poison_and_duplicates_per_item(
    tmp_path: Path, request_ids: RequestIds, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = FakeInboxPool()
    path = tmp_path / "notifications.jsonl"
    sink = NotificationSink(pool=pool, path=path, group="sink")
    appends: list[str] = []
    append = sink._append

    def counted_append(text: str) -> None:
        appends.append(text)
        append(text)

    monkeypatch.setattr(sink, "_append", counted_append)
    items = [
        Item(notification("n1", "111111"), "req-a"),
        Item(b"\xff\xff not a notification", "req-b"),
        Item(notification("n1", "111111"), "req-c"),
        Item(npb.Notification(user_id="u").SerializeToString(), "req-d"),
        Item(notification("n2", "222222"), "req-e"),
    ]
    results = await sink.handle_batch(items)
    assert results[0] == "delivered"
    assert isinstance(results[1], PoisonMessage)
    assert results[2] == "duplicate"
    assert isinstance(results[3], PoisonMessage)
    assert str(results[3]) == "notification without notification_id"
    assert results[4] == "delivered"
    assert pool.statements == ["read", "write"]
    assert len(appends) == 1
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["notification_id"], line["code"]) for line in lines] == [
        ("n1", "111111"),
        ("n2", "222222"),
    ]
    assert all(line["deliver_time"] for line in lines)
    assert request_ids.seen == [
        ("req-a", "notification delivered (development sink)"),
        ("req-e", "notification delivered (development sink)"),
    ]


@pytest.mark.asyncio
async def test_a_redelivered_batch_appends_nothing(tmp_path: Path) -> None:
    pool = FakeInboxPool()
    path = tmp_path / "notifications.jsonl"
    sink = NotificationSink(pool=pool, path=path, group="sink")
    items = [Item(notification("n1"), "r1"), Item(notification("n2"), "r2")]
    assert await sink.handle_batch(items) == ["delivered", "delivered"]
    assert await sink.handle_batch([*items, Item(notification("n3"), "r3")]) == [
        "duplicate",
        "duplicate",
        "delivered",
    ]
    assert [json.loads(line)["notification_id"] for line in path.read_text().splitlines()] == [
        "n1",
        "n2",
        "n3",
    ]
    # A batch of poison only reads nothing.
    pool.statements.clear()
    (result,) = await sink.handle_batch([Item(b"\xff", "r4")])
    assert isinstance(result, PoisonMessage)
    assert pool.statements == []
