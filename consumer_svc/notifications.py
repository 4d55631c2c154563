"""The notifications channel: what the processor sends users, and the development sink.

Production would hand each ``notifications`` record to an SMS or e-mail provider. In
development the sink consumer group appends every delivery, code included, as one JSON
line to a file under .data/ and logs it, so a developer can read the code and answer
VerifyPayment. Deliveries are de-duplicated by notification id through the inbox; a crash
between the append and the inbox row can append a line twice (at-least-once delivery,
like any real SMS provider).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from google.protobuf.json_format import MessageToDict

from consumer_svc.consuming import PoisonMessage
from payrail.internal.v1 import payment_ops_pb2 as ops
from payrail.notifications.v1 import notifications_pb2 as npb
from payrail.payments.v1 import payments_pb2 as pb

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


class NotificationSink:
    """The development delivery channel: one JSON line per notification in ``path``."""

    def __init__(self, *, pool: asyncpg.Pool, path: Path, group: str) -> None:
        self._pool = pool
        self._path = path
        self._group = group
        self._lock = asyncio.Lock()

    async def handle(self, raw: bytes) -> str:
        try:
            notification = npb.Notification.FromString(raw)
        except Exception as exc:
            raise PoisonMessage(f"undecodable notification: {type(exc).__name__}") from None
        if not notification.notification_id:
            raise PoisonMessage("notification without notification_id")
        seen = await self._pool.fetchval(
            "SELECT true FROM consumer.inbox WHERE consumer_group = $1 AND event_id = $2",
            self._group,
            notification.notification_id,
        )
        if seen:
            return "duplicate"
        record = MessageToDict(notification, preserving_proto_field_name=True)
        record["deliver_time"] = datetime.now(UTC).isoformat()
        line = json.dumps(record, sort_keys=True) + "\n"
        async with self._lock:
            await asyncio.to_thread(self._append, line)
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
        await self._pool.execute(
            "INSERT INTO consumer.inbox (consumer_group, event_id, topic) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            self._group,
            notification.notification_id,
            NOTIFICATIONS_TOPIC,
        )
        return "delivered"

    def _append(self, line: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as sink:
            sink.write(line)
