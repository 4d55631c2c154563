"""The notifications channel: what the processor sends users, and the development sink.

Production would hand each ``notifications`` record to an SMS or e-mail provider. In
development the sink consumer group appends every delivery, code included, as one JSON
line to a file under .data/ and logs it, so a developer can read the code and answer
VerifyPayment. The sink takes a partition's batch at once: one inbox read, one append of
every new line, one inbox write. Deliveries are de-duplicated by notification id through
the inbox (and within a batch); a crash between the append and the inbox rows can append
lines twice (at-least-once delivery, like any real SMS provider).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from google.protobuf.json_format import MessageToDict

from consumer_svc.consuming import Item, PoisonMessage
from payrail.internal.v1 import payment_ops_pb2 as ops
from payrail.notifications.v1 import notifications_pb2 as npb
from payrail.payments.v1 import payments_pb2 as pb
from payrail_common import tracing

log = logging.getLogger(__name__)

NOTIFICATIONS_TOPIC = "notifications"
# Currencies without minor units among the supported ones; the rest have two decimals.
_ZERO_DECIMAL = frozenset({"JPY", "KRW"})


def format_money(money: pb.Money) -> str:
    if money.currency_code in _ZERO_DECIMAL:
        return f"{money.amount_minor:,} {money.currency_code}"
    units, cents = divmod(money.amount_minor, 100)
    return f"{units:,}.{cents:02d} {money.currency_code}"


def verification_notification(
    reply: ops.RequireVerificationResponse, user_id: str
) -> npb.Notification:
    """The message carrying a step-up code to the payment's owner."""
    payment = reply.payment
    what = pb.PaymentKind.Name(payment.kind).removeprefix("PAYMENT_KIND_").lower()
    where = f" at {payment.merchant.name}" if payment.merchant.name else ""
    minutes = 0
    if reply.HasField("expire_time"):
        left = reply.expire_time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
        minutes = max(1, round(left.total_seconds() / 60))
    text = (
        f"payrail: your code to confirm the {what} of {format_money(payment.amount)}{where}"
        f" is {reply.code}"
        + (f". It expires in {minutes} min" if minutes else "")
        + ". We ask because: "
        + payment.verification_reason
        + ". Not you? Decline it with VerifyPayment(decline=true)."
    )
    notification = npb.Notification(
        notification_id=str(uuid.uuid4()),
        user_id=user_id,
        kind=npb.NOTIFICATION_KIND_VERIFICATION_CODE,
        payment_id=payment.payment_id,
        code=reply.code,
        text=text,
    )
    notification.create_time.GetCurrentTime()
    if reply.HasField("expire_time"):
        notification.expire_time.CopyFrom(reply.expire_time)
    return notification


def decode(raw: bytes) -> npb.Notification:
    try:
        notification = npb.Notification.FromString(raw)
    except Exception as exc:
        raise PoisonMessage(f"undecodable notification: {type(exc).__name__}") from None
    if not notification.notification_id:
        raise PoisonMessage("notification without notification_id")
    return notification


class NotificationSink:
    """The development delivery channel: one JSON line per notification in ``path``."""

    def __init__(self, *, pool: asyncpg.Pool, path: Path, group: str) -> None:
        self._pool = pool
        self._path = path
        self._group = group
        self._lock = asyncio.Lock()

    async def handle_batch(self, items: Sequence[Item]) -> list[str | PoisonMessage]:
        """Deliver each notification of the batch not delivered before; one result per
        item: "delivered", "duplicate" (in the inbox, or earlier in this batch) or a
        PoisonMessage."""
        results: list[str | PoisonMessage] = []
        # The first item of each notification id, by id, in batch order.
        first: dict[str, tuple[int, Item, npb.Notification]] = {}
        for index, item in enumerate(items):
            try:
                notification = decode(item.value)
            except PoisonMessage as exc:
                results.append(exc)
                continue
            results.append("duplicate")
            first.setdefault(notification.notification_id, (index, item, notification))
        if not first:
            return results
        seen = {
            row["event_id"]
            for row in await self._pool.fetch(
                "SELECT event_id FROM consumer.inbox"
                " WHERE consumer_group = $1 AND event_id = ANY($2::text[])",
                self._group,
                list(first),
            )
        }
        fresh = [entry for key, entry in first.items() if key not in seen]
        if not fresh:
            return results
        lines = []
        for _, _, notification in fresh:
            record = MessageToDict(notification, preserving_proto_field_name=True)
            record["deliver_time"] = datetime.now(UTC).isoformat()
            lines.append(json.dumps(record, sort_keys=True) + "\n")
        async with self._lock:
            await asyncio.to_thread(self._append, "".join(lines))
        for index, item, notification in fresh:
            with tracing.bind(item.request_id):
                log.info(
                    "notification delivered (development sink)",
                    extra={
                        "user_id": notification.user_id,
                        "payment_id": notification.payment_id,
                        "kind": npb.NotificationKind.Name(notification.kind),
                        "code": notification.code,
                        "text": notification.text,
                        "sink": str(self._path),
                    },
                )
            results[index] = "delivered"
        await self._pool.execute(
            "INSERT INTO consumer.inbox (consumer_group, event_id, topic)"
            " SELECT $1, event_id, $2 FROM unnest($3::text[]) AS b(event_id) ORDER BY event_id"
            " ON CONFLICT DO NOTHING",
            self._group,
            NOTIFICATIONS_TOPIC,
            [notification.notification_id for _, _, notification in fresh],
        )
        return results

    def _append(self, text: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as sink:
            sink.write(text)
