"""Account notices to users, published on the ``notifications`` topic.

Register must answer the same whether or not the e-mail was taken, so it never waits
for Kafka: a notice is queued in memory (bounded) and a supervised background loop
publishes it with an idempotent producer (acks=all). While Kafka is down notices wait
in the queue and are retried with backoff; a full queue drops the newest notice with a
warning. A crash loses what is still queued: these notices are advisory (the account is
unchanged), and a transactional outbox in the ``auth`` schema would be the step up.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from payrail.notifications.v1 import notifications_pb2 as npb
from payrail_common.background import BackgroundLoop
from payrail_common.faults import Backoff

__all__ = ["KafkaNotifier", "NotifierOptions", "registration_attempt_notice"]

log = logging.getLogger(__name__)

NOTIFICATIONS_TOPIC = "notifications"

NOTICES = Counter(
    "payrail_gateway_notices_total",
    "Account notices by outcome (queued, published, dropped).",
    ["outcome"],
)

REGISTRATION_ATTEMPT_TEXT = (
    "payrail: someone tried to register a new account with your e-mail address. No new"
    " account was created and yours is unchanged. If it was you, log in with your password"
    " instead; if not, you need do nothing."
)


RETRY_BACKOFF = Backoff(base_s=0.2, max_s=10.0)


@dataclass(frozen=True)
class NotifierOptions:
    """Bounds of the notice queue and of each publish."""

    # Notices waiting for Kafka; beyond this the newest is dropped (with a warning).
    queue_max: int = 1000
    # Attempts to publish one notice before it is dropped (Kafka down that long).
    attempts_max: int = 20
    # Upper bound on one send_and_wait, acknowledgement by all in-sync replicas included.
    send_timeout_s: float = 15.0
    request_timeout_ms: int = 10_000
    linger_ms: int = 5
    # Wait between attempts (capped, jittered).
    retry_backoff: Backoff = RETRY_BACKOFF


def registration_attempt_notice(user_id: str) -> npb.Notification:
    """The notice telling an account's owner that their address was used to register."""
    notice = npb.Notification(
        notification_id=str(uuid.uuid4()),
        user_id=user_id,
        kind=npb.NOTIFICATION_KIND_REGISTRATION_ATTEMPT,
        text=REGISTRATION_ATTEMPT_TEXT,
    )
    notice.create_time.GetCurrentTime()
    return notice


ProducerFactory = Callable[[], AIOKafkaProducer]


class KafkaNotifier(BackgroundLoop):
    """Queues notices without waiting and publishes them in the background."""

    task_name = "gateway-notifier"

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        options: NotifierOptions | None = None,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        self._options = options or NotifierOptions()
        self._queue: asyncio.Queue[npb.Notification] = asyncio.Queue(self._options.queue_max)
        self._factory = producer_factory or (
            lambda: AIOKafkaProducer(
                bootstrap_servers=bootstrap_servers,
                enable_idempotence=True,
                acks="all",
                linger_ms=self._options.linger_ms,
                request_timeout_ms=self._options.request_timeout_ms,
                client_id="payrail-gateway",
            )
        )
        self._producer: AIOKafkaProducer | None = None

    def registration_attempted(self, user_id: str) -> None:
        """Queue the 'someone tried to register with your address' notice; never blocks."""
        self.enqueue(registration_attempt_notice(user_id))

    def enqueue(self, notice: npb.Notification) -> None:
        try:
            self._queue.put_nowait(notice)
        except asyncio.QueueFull:
            NOTICES.labels("dropped").inc()
            log.warning(
                "notice dropped: the queue is full",
                extra={"user_id": notice.user_id, "queue_max": self._options.queue_max},
            )
            return
        NOTICES.labels("queued").inc()

    def pending(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        while True:
            notice = await self._queue.get()
            await self._publish(notice)

    async def _publish(self, notice: npb.Notification) -> None:
        for attempt in range(1, self._options.attempts_max + 1):
            try:
                producer = await self._started_producer()
                async with asyncio.timeout(self._options.send_timeout_s):
                    await producer.send_and_wait(
                        NOTIFICATIONS_TOPIC,
                        notice.SerializeToString(),
                        key=notice.user_id.encode(),
                        headers=[("notification-id", notice.notification_id.encode())],
                    )
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning(
                    "notice not published yet; retrying",
                    extra={"attempt": attempt, "error": type(exc).__name__},
                )
                await self._drop_producer()
                await self._options.retry_backoff.sleep(attempt)
                continue
            NOTICES.labels("published").inc()
            return
        NOTICES.labels("dropped").inc()
        log.error(
            "notice dropped after retries",
            extra={"user_id": notice.user_id, "attempts": self._options.attempts_max},
        )

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._factory()
            try:
                async with asyncio.timeout(self._options.send_timeout_s):
                    await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                async with asyncio.timeout(self._options.send_timeout_s):
                    await producer.stop()
            except (KafkaError, OSError, TimeoutError):
                log.warning("notice producer did not stop cleanly")

    async def stop(self) -> None:
        """Stop the loop, then the producer (queued notices are logged as lost)."""
        await super().stop()
        if self._queue.qsize():
            log.warning("notices not published at shutdown", extra={"count": self._queue.qsize()})
        await self._drop_producer()
