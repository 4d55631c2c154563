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

log = logging.getLogger(__name__)

CHANNEL = "payment_changes"


class ChangeFeed:
    def __init__(self, dsn: str, *, reconnect_max_s: float = 10.0) -> None:
        self._dsn = dsn
        self._reconnect_max_s = reconnect_max_s
        self._watchers: dict[str, set[asyncio.Queue[int]]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        payment_id, _, version = payload.partition(":")
        for queue in self._watchers.get(payment_id, ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(int(version or 0))

    def _on_lost(self, _conn: object) -> None:
        self._lost.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_listening(), name="payment-change-feed")

    async def _keep_listening(self) -> None:
        delay_s = 0.5
        while True:
            try:
                self._lost.clear()
                conn = await asyncpg.connect(self._dsn, timeout=5)
                conn.add_termination_listener(self._on_lost)
                await conn.add_listener(CHANNEL, self._on_notify)
                self._conn = conn
                delay_s = 0.5
                await self._lost.wait()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("change feed disconnected", extra={"error": type(exc).__name__})
            finally:
                conn_, self._conn = self._conn, None
                if conn_ is not None and not conn_.is_closed():
                    await conn_.close()
            await asyncio.sleep(delay_s)
            delay_s = min(self._reconnect_max_s, delay_s * 2)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

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
