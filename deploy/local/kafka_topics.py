"""Create the topics listed in deploy/local/topics.txt, idempotently (used by stack.sh).

    python deploy/local/kafka_topics.py --bootstrap 127.0.0.1:9092 [--file F] [--timeout-s 60]
        [--replication-factor N]

Each non-comment line of the file is ``<name> <partitions>``; the replication factor is the
number of brokers of the stack (--replication-factor, default 1; stack.sh passes
PAYRAIL_KAFKA_BROKERS). Topics that already exist are left alone (a partition count
different from the file is reported, not changed: adding partitions would remap keys).
Retriable errors (a broker still settling) are retried until --timeout-s. Returns only once
every topic has a leader for every partition, so producers started right after never see
UNKNOWN_TOPIC_OR_PARTITION. Goes through aiokafka's admin client: a Python client starts
in a fraction of the time of Kafka's JVM command-line tools.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

RETRY_INTERVAL_S = 0.2


def log(msg: str) -> None:
    sys.stderr.write(f"[stack] {msg}\n")
    sys.stderr.flush()


def parse_topics(path: Path) -> dict[str, int]:
    topics: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) < 1:
            raise SystemExit(f"{path}:{lineno}: expected '<topic> <partitions>', got {raw!r}")
        topics[parts[0]] = int(parts[1])
    return topics


async def existing_topics(admin: AIOKafkaAdminClient) -> dict[str, tuple[int, bool]]:
    """name -> (partition count, every partition has a leader), internal topics excluded."""
    result: dict[str, tuple[int, bool]] = {}
    for t in await admin.describe_topics():
        if t.get("is_internal") or t["error_code"] != 0:
            continue
        parts = t["partitions"]
        result[t["topic"]] = (len(parts), all(p["leader"] >= 0 for p in parts))
    return result


async def ensure(
    bootstrap: str, wanted: dict[str, int], timeout_s: float, replication_factor: int = 1
) -> int:
    deadline = time.monotonic() + timeout_s
    created: set[str] = set()
    last_error = ""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        while True:
            have = await existing_topics(admin)
            missing = [name for name in wanted if name not in have]
            leaderless = [name for name in wanted if name in have and not have[name][1]]
            if not missing and not leaderless:
                break
            if missing:
                resp = await admin.create_topics(
                    [NewTopic(name, wanted[name], replication_factor) for name in missing],
                    timeout_ms=10000,
                )
                for err in resp.topic_errors:
                    topic, code = err[0], err[1]
                    message = err[2] if len(err) > 2 else ""
                    if code == 0:
                        created.add(topic)
                        continue
                    error_type = for_code(code)
                    if error_type is TopicAlreadyExistsError:
                        continue  # created concurrently (another `up`): fine
                    if not error_type.retriable:
                        log(f"kafka: cannot create topic {topic}: {error_type.__name__} {message}")
                        return 1
                    last_error = f"{topic}: {error_type.__name__} {message}"
            else:
                last_error = f"no leader yet for {', '.join(leaderless)}"
            if time.monotonic() >= deadline:
                log(f"kafka: topics not ready after {timeout_s:g}s ({last_error})")
                return 1
            await asyncio.sleep(RETRY_INTERVAL_S)
    finally:
        await admin.close()

    for name, partitions in wanted.items():
        actual = have[name][0]
        if actual != partitions:
            log(
                f"kafka: WARNING topic {name} has {actual} partitions, topics.txt says "
                f"{partitions} (left unchanged; delete the topic or the data dir to recreate it)"
            )
    log(
        f"kafka: {len(wanted)} topics present"
        + (f" (created: {', '.join(sorted(created))})" if created else " (none created)")
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--file", type=Path, default=Path(__file__).with_name("topics.txt"))
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--replication-factor", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    wanted = parse_topics(args.file)
    try:
        return asyncio.run(ensure(args.bootstrap, wanted, args.timeout_s, args.replication_factor))
    except Exception as exc:
        log(f"kafka: topic creation failed: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
