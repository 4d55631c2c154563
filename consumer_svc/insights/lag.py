"""Consumer-group lag measured from the outside, on a timer.

:class:`ConsumerLoop` updates ``payrail_consumer_lag_messages`` after each batch it
handles, so a group with nothing to do, or one that is stopped, would keep showing its
last value. :class:`LagReporter` measures each group's total lag every interval from the
group's committed offsets and the log end, the way an operator's tooling would: it works
for groups that run in this process and for groups that are switched off (whose lag
then grows, which is the point of watching it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumer_svc.consuming import LAG
from payrail_common.background import BackgroundLoop

log = logging.getLogger(__name__)


def group_lag(
    partitions: Sequence[TopicPartition],
    committed: dict[TopicPartition, int],
    beginning: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
) -> int:
    """Messages the group has not committed yet, over every partition; a partition the
    group never committed counts from its beginning (the groups start at "earliest")."""
    total = 0
    for tp in partitions:
        start = committed.get(tp, -1)
        if start < 0:
            start = beginning.get(tp, 0)
        total += max(0, end.get(tp, 0) - start)
    return total


class LagReporter(BackgroundLoop):
    task_name = "consumer-lag"

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        groups: Sequence[str],
        interval_s: float,
        request_timeout_ms: int = 5000,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._groups = tuple(groups)
        self._interval_s = interval_s
        self._request_timeout_ms = request_timeout_ms
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._offsets is None:
            await self._close()
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap_servers,
                request_timeout_ms=self._request_timeout_ms,
                client_id="payrail-lag",
            )
            # No group: it only asks for the log's first and last offsets.
            offsets = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap_servers,
                enable_auto_commit=False,
                request_timeout_ms=self._request_timeout_ms,
                client_id="payrail-lag",
            )
            self._admin, self._offsets = admin, offsets
            await admin.start()
            await offsets.start()
        return self._admin, self._offsets

    async def measure(self) -> dict[str, int]:
        """Every group's lag now; also published on the gauge."""
        admin, offsets = await self._clients()
        described = await admin.describe_topics([self._topic])
        numbers = sorted(
            p["partition"]
            for topic in described
            if topic.get("topic") == self._topic and not topic.get("error_code")
            for p in topic.get("partitions", ())
        )
        partitions = [TopicPartition(self._topic, p) for p in numbers]
        if not partitions:
            return {}
        beginning = await offsets.beginning_offsets(partitions)
        end = await offsets.end_offsets(partitions)
        lags: dict[str, int] = {}
        for group in self._groups:
            found = await admin.list_consumer_group_offsets(group, partitions=partitions)
            committed = {tp: meta.offset for tp, meta in found.items()}
            lags[group] = group_lag(partitions, committed, beginning, end)
            LAG.labels(group).set(lags[group])
        return lags

    async def _run(self) -> None:
        while True:
            try:
                await self.measure()
            except Exception as exc:  # Kafka away: keep the last values, try again later
                log.warning("lag measurement failed", extra={"error": type(exc).__name__})
                await self._close()
            await asyncio.sleep(self._interval_s)

    async def _close(self) -> None:
        admin, offsets = self._admin, self._offsets
        self._admin = self._offsets = None
        if admin is not None:
            await admin.close()
        if offsets is not None:
            await offsets.stop()

    async def stop(self) -> None:
        await super().stop()
        await self._close()
