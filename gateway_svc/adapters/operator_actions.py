"""The operator audit trail over PostgreSQL (``auth.operator_actions``, migration 0003)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

REQUEST_JSON_MAX_CHARS = 8000


@dataclass(frozen=True)
class ActionRecord:
    action_id: int
    actor_user_id: str
    actor_email: str
    method: str
    request_json: str
    outcome: str
    create_time: datetime


class PostgresOperatorActions:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def start(self, actor_user_id: str, method: str, request_json: str) -> int:
        """Record an action about to run; its id, to finish it with."""
        action_id: int = await self._pool.fetchval(
            "INSERT INTO auth.operator_actions (actor_user_id, method, request_json)"
            " VALUES ($1, $2, $3) RETURNING id",
            uuid.UUID(actor_user_id),
            method,
            request_json[:REQUEST_JSON_MAX_CHARS],
        )
        return action_id

    async def finish(self, action_id: int, outcome: str) -> None:
        await self._pool.execute(
            "UPDATE auth.operator_actions SET outcome = $2, finish_time = now() WHERE id = $1",
            action_id,
            outcome,
        )

    async def page(self, *, before_id: int | None, limit: int) -> list[ActionRecord]:
        """Newest first, ids below ``before_id`` when given."""
        rows = await self._pool.fetch(
            "SELECT a.id, a.actor_user_id, coalesce(c.email, '') AS email, a.method,"
            " a.request_json, a.outcome, a.create_time"
            " FROM auth.operator_actions a"
            " LEFT JOIN auth.users u ON u.id = a.actor_user_id"
            " LEFT JOIN auth.credentials c ON c.id = u.credential_id"
            " WHERE ($1::bigint IS NULL OR a.id < $1) ORDER BY a.id DESC LIMIT $2",
            before_id,
            limit,
        )
        return [
            ActionRecord(
                r["id"],
                str(r["actor_user_id"]),
                r["email"],
                r["method"],
                r["request_json"],
                r["outcome"],
                r["create_time"],
            )
            for r in rows
        ]
