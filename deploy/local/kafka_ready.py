"""Wait until a Kafka broker answers metadata requests (used by deploy/local/stack.sh).

    python deploy/local/kafka_ready.py --bootstrap 127.0.0.1:9092 [--timeout-s 60] [--pid PID]
        [--min-brokers N]

Readiness means: a metadata request succeeds and lists at least --min-brokers brokers
(default 1; a node of a cluster of N waits for all N, so topics with N replicas can be
created right after). That is what
clients need; an open TCP port alone is not enough (a KRaft broker listens before it has
caught up with the metadata log). Polls with a short per-attempt bound until --timeout-s.

Exit status: 0 ready, 1 timed out, 3 the process given by --pid exited meanwhile (so the
caller fails at once instead of waiting for the deadline).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient

ATTEMPT_TIMEOUT_S = 3.0
RETRY_INTERVAL_S = 0.2


def log(msg: str) -> None:
    sys.stderr.write(f"[stack] {msg}\n")
    sys.stderr.flush()


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (an exited daemon may linger unreaped here)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def probe(bootstrap: str) -> int:
    """One attempt: the number of brokers in the cluster metadata (raises on failure)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(ATTEMPT_TIMEOUT_S * 1000),
        retry_backoff_ms=100,
    )
    try:
        async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
            await admin.start()
            meta = await admin.describe_cluster()
        return len(meta.get("brokers") or [])
    finally:
        await admin.close()


async def wait_ready(
    bootstrap: str, timeout_s: float, pid: int | None, min_brokers: int = 1
) -> int:
    deadline = time.monotonic() + timeout_s
    last_error = "no attempt yet"
    while True:
        if pid is not None and not pid_alive(pid):
            log(f"kafka: broker process {pid} exited before becoming ready")
            return 3
        try:
            brokers = await probe(bootstrap)
            if brokers >= min_brokers:
                return 0
            last_error = f"metadata lists {brokers} of {min_brokers} brokers"
        except Exception as exc:  # any failure is "not ready yet" until the deadline
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            log(f"kafka: {bootstrap} not ready after {timeout_s:g}s (last error: {last_error})")
            return 1
        await asyncio.sleep(RETRY_INTERVAL_S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("PAYRAIL_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--pid", type=int, default=None, help="fail fast if this process exits")
    parser.add_argument("--min-brokers", type=int, default=1, help="brokers the metadata must list")
    args = parser.parse_args()
    # aiokafka logs every refused connection at ERROR; expected while the broker boots.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return asyncio.run(wait_ready(args.bootstrap, args.timeout_s, args.pid, args.min_brokers))


if __name__ == "__main__":
    sys.exit(main())
