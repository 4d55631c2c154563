"""Hashing in place the idempotency keys stored before keys were hashed.

Rows written by an older payment_svc hold the client's key and an unkeyed request
fingerprint in clear. :func:`hash_clear_keys` replaces both with their keyed digests
(``payment_svc/domain/idempotency.py``), in bounded batches, each one transaction.
Several processes may run it at once (SKIP LOCKED); rows already hashed are never
touched again, so running it at every start costs one index probe.
"""

from __future__ import annotations

import logging

import asyncpg

from payment_svc.domain.idempotency import STORED_PREFIX, IdempotencyKeyHasher

log = logging.getLogger(__name__)

BATCH_MAX = 500
# The partial index idempotency_keys_in_clear_idx (migration 0008) serves this query; its
# predicate is spelled as the same literal, or the planner could not use the index.
_CLEAR_ROWS = (
    "SELECT user_id, idempotency_key, request_hash FROM payments.idempotency_keys"
    " WHERE idempotency_key NOT LIKE 'hmac-v1:%' LIMIT $1 FOR UPDATE SKIP LOCKED"
)
if not _CLEAR_ROWS.count(f"'{STORED_PREFIX}%'"):  # pragma: no cover - a new scheme
    raise RuntimeError("the stored-key prefix changed: update _CLEAR_ROWS and its index")


async def hash_clear_keys(
    pool: asyncpg.Pool, hasher: IdempotencyKeyHasher, *, batch_max: int = BATCH_MAX
) -> int:
    """Hash every key still stored in clear; return how many rows were rewritten."""
    if batch_max < 1:
        raise ValueError("batch_max must be at least 1")
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLEAR_ROWS, batch_max)
            if not rows:
                break
            await conn.executemany(
                "UPDATE payments.idempotency_keys SET idempotency_key = $3, request_hash = $4"
                " WHERE user_id = $1 AND idempotency_key = $2",
                [
                    (
                        row["user_id"],
                        row["idempotency_key"],
                        hasher.stored_key(str(row["user_id"]), row["idempotency_key"]),
                        hasher.stored_request_hash(row["request_hash"]),
                    )
                    for row in rows
                ],
            )
        total += len(rows)
    if total:
        log.info("idempotency keys hashed in place", extra={"rows": total})
    return total
