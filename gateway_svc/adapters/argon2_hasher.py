"""Argon2id password hashing, run in a small thread pool off the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


@dataclass(frozen=True)
class Argon2Params:
    """Defaults are OWASP's minimum for Argon2id: m=19 MiB, t=2, p=1."""

    memory_kib: int = 19 * 1024
    time_cost: int = 2
    parallelism: int = 1

    def __post_init__(self) -> None:
        if self.memory_kib < 19 * 1024 or self.time_cost < 2 or self.parallelism < 1:
            raise ValueError("Argon2id parameters below m=19 MiB, t=2, p=1 are refused")


class Argon2Hasher:
    """Hashes embed their parameters, so raising them later upgrades hashes on login."""

    def __init__(self, params: Argon2Params, *, max_workers: int = 2) -> None:
        self._argon = _Argon2(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        # argon2-cffi releases the GIL while hashing: threads give real parallelism, and
        # the bounded pool caps memory (m per worker) and CPU spent on logins.
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="argon2")

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._argon.hash, password
        )

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._argon.verify(password_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._verify, password_hash, password
        )

    def needs_rehash(self, password_hash: str) -> bool:
        return bool(self._argon.check_needs_rehash(password_hash))

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
