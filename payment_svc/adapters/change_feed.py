"""Payment change notifications for WatchPayment, from PostgreSQL LISTEN/NOTIFY.

One LISTEN connection per payment_svc process fans notifications out to the local
watchers of each payment (bounded queues; a full queue just means the watcher already
has a wake-up pending). Watchers re-read the payment from PostgreSQL, so a lost
notification costs at most the watcher's poll interval, never a missed final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

import asyncpg

from payrail_common.background import BackgroundLoop
from payrail_common.faults import Backoff, describe, is_transient
from payrail_common.supervision import supervision

log = logging.getLogger(__name__)

CHANNEL = "payment_changes"


class ChangeFeed(BackgroundLoop):
    """The LISTEN connection, kept open by a supervised loop that reconnects with backoff
    while PostgreSQL is away (and reports it degraded meanwhile)."""

    task_name = "payment-change-feed"

    def __init__(self, dsn: str, *, reconnect_max_s: float = 10.0) -> None:
        self._dsn = dsn
        self._backoff = Backoff(base_s=0.5, max_s=reconnect_max_s)
        self._watchers: dict[str, set[asyncio.Queue[int]]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        payment_id, _, version = payload.partition(":")
        for queue in self._watchers.get(payment_id, ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(int(version or 0))

    def _on_lost(self, _conn: object) -> None:
        self._lost.set()

    def _wake_everyone(self) -> None:
        """After a reconnect: notifications may have been missed, so every watcher
        re-reads its payment now rather than at its next poll."""
        for queues in self._watchers.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(0)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                self._lost.clear()
                conn = await asyncpg.connect(self._dsn, timeout=5)
                conn.add_termination_listener(self._on_lost)
                await conn.add_listener(CHANNEL, self._on_notify)
                self._conn = conn
                if failures:
                    log.info("change feed reconnected", extra={"failures": failures})
                    self._wake_everyone()
                failures = 0
                await self._lost.wait()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                supervision.degrade("postgres")
                if failures == 0:
                    log.warning("change feed disconnected", extra={"error": describe(exc)})
            finally:
                conn_, self._conn = self._conn, None
                if conn_ is not None and not conn_.is_closed():
                    with contextlib.suppress(Exception):
                        await conn_.close(timeout=2)
            failures += 1
            await self._backoff.sleep(failures)

    @contextlib.asynccontextmanager
    async def watch(self, payment_id: str) -> AsyncIterator[asyncio.Queue[int]]:
        """A queue that receives the new version each time the payment changes."""
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=16)
        self._watchers[payment_id].add(queue)
        try:
            yield queue
        finally:
            watchers = self._watchers.get(payment_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[payment_id]

    @property
    def watcher_count(self) -> int:
        return sum(len(queues) for queues in self._watchers.values())
