"""Live sessions and failed-login throttles in Redis."""

from __future__ import annotations

import math
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError


def _session_key(session_id: str) -> str:
    return f"session:{session_id}"


class RedisSessionCache:
    """``session:<sid>`` -> user id, with the session's TTL. Deleting it revokes at once."""

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def open(self, session_id: str, user_id: str, ttl_s: int) -> None:
        await self._client.set(_session_key(session_id), user_id, ex=ttl_s)

    async def is_live(self, session_id: str, user_id: str) -> bool:
        try:
            value = await self._client.get(_session_key(session_id))
        except RedisError as exc:
            # The interceptor maps ConnectionError to UNAVAILABLE (fail closed).
            raise ConnectionError("session store unavailable") from exc
        if isinstance(value, bytes):
            value = value.decode()
        return value == user_id

    async def close(self, session_id: str) -> None:
        await self._client.delete(_session_key(session_id))


class RedisAttemptThrottle:
    """Fixed-window counters of failed attempts per key."""

    def __init__(self, client: Redis, *, window_s: int) -> None:
        self._client = client
        self._window_s = window_s

    async def blocked_for(self, limits: Sequence[tuple[str, int]]) -> float | None:
        async with self._client.pipeline(transaction=False) as pipe:
            for key, _ in limits:
                pipe.get(key)
                pipe.pttl(key)
            replies = await pipe.execute()
        waits = []
        for index, (_, limit) in enumerate(limits):
            count, pttl = replies[2 * index], replies[2 * index + 1]
            if count is not None and int(count) >= limit:
                waits.append(max(pttl, 1000) / 1000 if pttl > 0 else float(self._window_s))
        return math.ceil(max(waits)) if waits else None

    async def record_failure(self, keys: Sequence[str]) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.incr(key)
                # NX: the window starts at the first failure and is not extended by later ones.
                pipe.expire(key, self._window_s, nx=True)
            await pipe.execute()

    async def clear(self, key: str) -> None:
        await self._client.delete(key)
