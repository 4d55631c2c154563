"""The record of re-drives, ``consumer.dead_letter_redrives`` (migration 0005).

A letter is recorded after the broker acknowledged its re-drive. A crash between the two
leaves a re-driven letter unrecorded, so a later ``redrive --all`` sends it once more:
harmless, because every consumer de-duplicates on the event id.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from consumer_svc.dlq.letters import DeadLetter, LetterId, Redrive


async def redrives(conn: asyncpg.Connection, topics: Sequence[str]) -> dict[LetterId, Redrive]:
    """Every recorded re-drive of letters of ``topics``."""
    rows = await conn.fetch(
        "SELECT dlq_topic, dlq_partition, dlq_offset, redrive_time, redrive_count, reason"
        " FROM consumer.dead_letter_redrives WHERE dlq_topic = ANY($1::text[])",
        list(topics),
    )
    return {
        LetterId(r["dlq_topic"], r["dlq_partition"], r["dlq_offset"]): Redrive(
            r["redrive_time"], r["redrive_count"], r["reason"]
        )
        for r in rows
    }


async def record(conn: asyncpg.Connection, letter: DeadLetter, reason: str) -> Redrive:
    """Remember that ``letter`` was re-driven now (once more, if it had been before)."""
    row = await conn.fetchrow(
        "INSERT INTO consumer.dead_letter_redrives AS r"
        " (dlq_topic, dlq_partition, dlq_offset, source_topic, reason)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO UPDATE"
        " SET redrive_time = now(), redrive_count = r.redrive_count + 1, reason = EXCLUDED.reason"
        " RETURNING redrive_time, redrive_count, reason",
        letter.id.topic,
        letter.id.partition,
        letter.id.offset,
        letter.source_topic,
        reason,
    )
    return Redrive(row["redrive_time"], row["redrive_count"], row["reason"])
