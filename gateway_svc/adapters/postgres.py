"""The account store over PostgreSQL (schema ``auth``)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from gateway_svc.domain.errors import EmailTaken
from gateway_svc.service.ports import (
    AccountRecord,
    NewAccount,
    Profile,
    RefreshOutcome,
    RefreshResult,
)


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class PostgresAccountStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_account(self, account: NewAccount) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                await conn.execute(
                    "INSERT INTO auth.credentials (id, email, password_hash) VALUES ($1, $2, $3)",
                    uuid.UUID(account.credential_id),
                    account.email,
                    account.password_hash,
                )
            except asyncpg.UniqueViolationError:
                raise EmailTaken() from None
            await conn.execute(
                "INSERT INTO auth.users (id, credential_id, first_name, last_name, role)"
                " VALUES ($1, $2, $3, $4, $5)",
                uuid.UUID(account.user_id),
                uuid.UUID(account.credential_id),
                account.first_name,
                account.last_name,
                account.role,
            )

    async def find_by_email(self, email: str) -> AccountRecord | None:
        row = await self._pool.fetchrow(
            "SELECT u.id AS user_id, c.id AS credential_id, u.role, c.password_hash"
            " FROM auth.credentials c JOIN auth.users u ON u.credential_id = c.id"
            " WHERE lower(c.email) = lower($1)",
            email,
        )
        if row is None:
            return None
        return AccountRecord(
            user_id=str(row["user_id"]),
            credential_id=str(row["credential_id"]),
            role=row["role"],
            password_hash=row["password_hash"],
        )

    async def update_password_hash(self, credential_id: str, password_hash: str) -> None:
        await self._pool.execute(
            "UPDATE auth.credentials SET password_hash = $2 WHERE id = $1",
            uuid.UUID(credential_id),
            password_hash,
        )

    async def get_profile(self, user_id: str) -> Profile | None:
        uid = _uuid_or_none(user_id)
        if uid is None:
            return None
        row = await self._pool.fetchrow(
            "SELECT u.id, c.email, u.first_name, u.last_name, u.role, c.register_time"
            " FROM auth.users u JOIN auth.credentials c ON c.id = u.credential_id"
            " WHERE u.id = $1",
            uid,
        )
        if row is None:
            return None
        return Profile(
            user_id=str(row["id"]),
            email=row["email"],
            first_name=row["first_name"],
            last_name=row["last_name"],
            role=row["role"],
            register_time=row["register_time"],
        )

    async def create_session(
        self, *, session_id: str, user_id: str, refresh_hash: bytes, expire_time: datetime
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO auth.sessions (id, user_id, expire_time) VALUES ($1, $2, $3)",
                uuid.UUID(session_id),
                uuid.UUID(user_id),
                expire_time,
            )
            await conn.execute(
                "INSERT INTO auth.refresh_tokens (token_hash, session_id, expire_time)"
                " VALUES ($1, $2, $3)",
                refresh_hash,
                uuid.UUID(session_id),
                expire_time,
            )

    async def rotate_refresh_token(
        self, *, presented_hash: bytes, new_hash: bytes, now: datetime, expire_time: datetime
    ) -> RefreshResult:
        async with self._pool.acquire() as conn, conn.transaction():
            # FOR UPDATE serialises two presentations of one token: the second one sees
            # used_time set and is treated as reuse.
            row = await conn.fetchrow(
                "SELECT r.session_id, r.expire_time, r.used_time, s.revoke_time,"
                "       u.id AS user_id, u.role"
                " FROM auth.refresh_tokens r"
                " JOIN auth.sessions s ON s.id = r.session_id"
                " JOIN auth.users u ON u.id = s.user_id"
                " WHERE r.token_hash = $1 FOR UPDATE OF r, s",
                presented_hash,
            )
            if row is None:
                return RefreshResult(RefreshOutcome.UNKNOWN)
            session_id = str(row["session_id"])
            if row["revoke_time"] is not None:
                return RefreshResult(RefreshOutcome.REVOKED, session_id)
            if row["used_time"] is not None:
                await conn.execute(
                    "UPDATE auth.sessions SET revoke_time = $2, revoke_reason = 'refresh_reuse'"
                    " WHERE id = $1",
                    row["session_id"],
                    now,
                )
                return RefreshResult(RefreshOutcome.REUSED, session_id)
            if row["expire_time"] <= now:
                return RefreshResult(RefreshOutcome.EXPIRED, session_id)
            await conn.execute(
                "UPDATE auth.refresh_tokens SET used_time = $2 WHERE token_hash = $1",
                presented_hash,
                now,
            )
            await conn.execute(
                "INSERT INTO auth.refresh_tokens (token_hash, session_id, expire_time)"
                " VALUES ($1, $2, $3)",
                new_hash,
                row["session_id"],
                expire_time,
            )
            await conn.execute(
                "UPDATE auth.sessions SET expire_time = $2 WHERE id = $1",
                row["session_id"],
                expire_time,
            )
            return RefreshResult(
                RefreshOutcome.ROTATED, session_id, str(row["user_id"]), row["role"]
            )

    async def revoke_session(self, session_id: str, reason: str) -> None:
        await self._pool.execute(
            "UPDATE auth.sessions SET revoke_time = now(), revoke_reason = $2"
            " WHERE id = $1 AND revoke_time IS NULL",
            uuid.UUID(session_id),
            reason,
        )
