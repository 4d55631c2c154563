"""PostgreSQL connection pools as every payrail service opens them.

asyncpg resets a connection each time it goes back to its pool (``SELECT
pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``): one more round trip per
transaction, which profiles showed on every payment (docs/performance.md). payrail
leaves no session state on a pooled connection: LISTEN runs on dedicated connections,
advisory locks are transaction-scoped (``pg_advisory_xact_lock``), nothing calls a
session-level ``SET`` or keeps a cursor past its transaction. So the pools skip that
query; asyncpg still rolls back a transaction left open, whatever ``reset`` says.
"""

from __future__ import annotations

from typing import Any

import asyncpg

__all__ = ["create_pool"]


async def _keep_session_state(_conn: asyncpg.Connection) -> None:
    """The pool's ``reset``: nothing to undo (see the module docstring)."""


async def create_pool(
    dsn: str,
    *,
    size_min: int = 0,
    size_max: int,
    acquire_timeout_s: float = 5.0,
    statement_timeout_s: float = 10.0,
    **options: Any,
) -> asyncpg.Pool:
    """A pool with payrail's defaults; ``options`` go to :func:`asyncpg.create_pool`."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=size_min,
        max_size=size_max,
        timeout=acquire_timeout_s,
        command_timeout=statement_timeout_s,
        reset=_keep_session_state,
        **options,
    )
    return pool
