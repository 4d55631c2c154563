"""Checks on Kafka's side, and the search for card data everywhere it could leak.

Kafka: every event the outbox marked sent is in payments.events (an acknowledged write
survived the broker faults), and the dead-letter topics are empty (an infrastructure
fault must never dead-letter a message).

Card data: the test card numbers (as digits, and as the hex of their digits, which is how
a bytea holding them would look in a dump) and the run's CVC in the contexts a leaked CVC
would show up in (a field named cvc, a quoted or XML value) are looked for in a pg_dump of
the database, in the Kafka log segments, in Redis's RDB and AOF files after SAVE, and in
every log file of the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from chaos.checks import Findings
from chaos.plan import CARDS, CVC
from chaos.stack import ChaosStack
from payrail.events.v1 import events_pb2

DLQ_TOPICS = ("payments.events.dlq", "payments.status.dlq", "notifications.dlq")
CONSUME_TIMEOUT_S = 120.0


async def _partitions(bootstrap: str) -> dict[str, list[TopicPartition]]:
    """Every topic's partitions, from the cluster's metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        topics = await admin.describe_topics()
    finally:
        await admin.close()
    return {
        t["topic"]: [TopicPartition(t["topic"], p["partition"]) for p in t["partitions"]]
        for t in topics
        if t["error_code"] == 0
    }


async def _read_kafka(bootstrap: str) -> tuple[set[str], dict[str, int]]:
    """(event ids in payments.events, records per dead-letter topic), one consumer."""
    partitions_of = await _partitions(bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        dead: dict[str, int] = {}
        for topic in DLQ_TOPICS:
            dlq = partitions_of.get(topic, [])
            begin = await consumer.beginning_offsets(dlq)
            finish = await consumer.end_offsets(dlq)
            dead[topic] = sum(finish[tp] - begin[tp] for tp in dlq)
        partitions = partitions_of["payments.events"]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        ids: set[str] = set()
        async with asyncio.timeout(CONSUME_TIMEOUT_S):
            while True:
                positions = {tp: await consumer.position(tp) for tp in partitions}
                if all(positions[tp] >= end[tp] for tp in partitions):
                    break
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                for records in batches.values():
                    for record in records:
                        if record.value is not None:
                            ids.add(events_pb2.PaymentEvent.FromString(record.value).event_id)
        return ids, dead
    finally:
        # aiokafka's stop() right after start() may surface the cancellation of its
        # own internal task; nothing of ours is being cancelled here.
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


async def check_kafka(
    f: Findings, stack: ChaosStack, pool: asyncpg.Pool, payment_ids: list[str]
) -> None:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    sent = {
        str(r["event_id"])
        for r in await pool.fetch(
            "SELECT event_id FROM payments.outbox WHERE topic = 'payments.events'"
            " AND sent_time IS NOT NULL AND message_key = ANY($1::text[])",
            payment_ids,
        )
    }
    try:
        in_kafka, dead = await _read_kafka(stack.kafka_bootstrap)
    except Exception as exc:
        f.add("every relayed event is in Kafka", [f"could not read Kafka: {exc!r}"])
        f.add("nothing dead-lettered", [f"could not read Kafka: {exc!r}"])
        return
    missing = sorted(sent - in_kafka)
    f.facts["events_relayed"] = len(sent)
    f.add(
        "every relayed event is in Kafka",
        [f"event {e} marked sent, not in payments.events" for e in missing],
    )
    f.facts["dead_letters"] = dead
    f.add("nothing dead-lettered", [f"{n} records in {t}" for t, n in dead.items() if n])


def _needles() -> list[tuple[str, re.Pattern[bytes]]]:
    needles = []
    for label, number in CARDS.items():
        needles.append((f"PAN ({label} card)", re.compile(re.escape(number.encode()))))
        hexed = number.encode().hex().encode()
        needles.append((f"PAN ({label} card, hex)", re.compile(re.escape(hexed), re.IGNORECASE)))
    cvc = re.escape(CVC.encode())
    # A CVC value ends where a number ends; one followed by more hex or a dash is the
    # start of an id (the Redis key of a sealed CVC is "cvc:<payment uuid>").
    pattern = rb"(?i)cvc\W{0,6}" + cvc + rb"(?![0-9a-f-])|[\"'>]" + cvc + rb"[\"'<]"
    needles.append(("CVC", re.compile(pattern)))
    return needles


def _search(name: str, data: bytes, hits: list[str]) -> None:
    for label, pattern in _needles():
        match = pattern.search(data)
        if match:
            around = data[max(0, match.start() - 40) : match.end() + 40]
            # Say where, without printing the card data itself.
            hits.append(f"{label} in {name} at byte {match.start()} (context length {len(around)})")


async def scan_card_data(f: Findings, stack: ChaosStack) -> None:
    hits: list[str] = []
    data_dir = stack.data_dir
    version = (data_dir / "pg" / "PG_VERSION").read_text().strip()
    dump = await asyncio.create_subprocess_exec(
        f"/usr/lib/postgresql/{version}/bin/pg_dump",
        "-h", "127.0.0.1", "-p", str(stack.pg_port), "-U", "postgres", "-d", "payrail",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await dump.communicate()
    if dump.returncode != 0:
        hits.append(f"pg_dump failed: {err.decode(errors='replace')[-300:]}")
    _search("pg_dump of payrail", out, hits)
    f.facts["pg_dump_bytes"] = len(out)

    await stack.run("redis-cli", "-p", str(stack.redis_port), "SAVE", timeout_s=60, check=False)
    files: list[Path] = []
    for pattern in ("kafka-*/logs/*/*.log", "redis/**/*", "logs/*.log", "*.jsonl"):
        files += [p for p in data_dir.glob(pattern) if p.is_file()]
    scanned = 0
    for path in sorted(files):
        data = path.read_bytes()
        scanned += len(data)
        _search(str(path.relative_to(data_dir)), data, hits)
    f.facts["card_scan"] = {"files": len(files), "bytes": scanned}
    f.add("no PAN or CVC in PostgreSQL, Kafka, Redis or logs", hits)
