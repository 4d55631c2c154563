"""The interfaces the account use cases need; adapters/ implements them over I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol


@dataclass(frozen=True)
class NewAccount:
    user_id: str
    credential_id: str
    email: str
    password_hash: str
    first_name: str
    last_name: str
    role: str


@dataclass(frozen=True)
class AccountRecord:
    user_id: str
    credential_id: str
    role: str
    password_hash: str


@dataclass(frozen=True)
class Profile:
    user_id: str
    email: str
    first_name: str
    last_name: str
    role: str
    register_time: datetime


class RefreshOutcome(Enum):
    ROTATED = "rotated"
    REUSED = "reused"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class RefreshResult:
    outcome: RefreshOutcome
    session_id: str | None = None
    user_id: str | None = None
    role: str | None = None


class AccountStore(Protocol):
    async def create_account(self, account: NewAccount) -> None:
        """Insert credential and user atomically; raise EmailTaken on a duplicate e-mail."""

    async def find_by_email(self, email: str) -> AccountRecord | None: ...

    async def update_password_hash(self, credential_id: str, password_hash: str) -> None: ...

    async def get_profile(self, user_id: str) -> Profile | None: ...

    async def create_session(
        self, *, session_id: str, user_id: str, refresh_hash: bytes, expire_time: datetime
    ) -> None: ...

    async def rotate_refresh_token(
        self, *, presented_hash: bytes, new_hash: bytes, now: datetime, expire_time: datetime
    ) -> RefreshResult:
        """Spend the presented token and store the new one, atomically.

        A token already spent revokes its session and answers REUSED.
        """

    async def revoke_session(self, session_id: str, reason: str) -> None: ...


class SessionCache(Protocol):
    async def open(self, session_id: str, user_id: str, ttl_s: int) -> None: ...

    async def is_live(self, session_id: str, user_id: str) -> bool: ...

    async def close(self, session_id: str) -> None: ...


class AttemptThrottle(Protocol):
    async def blocked_for(self, limits: Sequence[tuple[str, int]]) -> float | None:
        """Seconds until the first over-limit key frees up, or None when none is over."""

    async def record_failure(self, keys: Sequence[str]) -> None: ...

    async def clear(self, key: str) -> None: ...


class Notifier(Protocol):
    def registration_attempted(self, user_id: str) -> None:
        """Tell the user someone tried to register with their e-mail; must not block
        (Register answers alike for taken and new e-mails, so it never waits for this)."""


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    def needs_rehash(self, password_hash: str) -> bool: ...
