"""Wait until a gRPC server reports SERVING on the standard health protocol.

    python deploy/local/wait_health.py HOST:PORT [--timeout-s N] [--pid PID] [--log FILE]

Polls ``grpc.health.v1.Health/Check`` with ``service=""`` (the server as a whole), each
call bounded by a short deadline, until the status is SERVING or --timeout-s passes.
--pid makes it give up at once when that process exits; --log names the service's log,
whose last 30 lines are printed on failure. Used by deploy/local/services.sh.

Exit status: 0 SERVING, 1 timed out, 3 the --pid process exited.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

CALL_DEADLINE_S = 1.0
RETRY_INTERVAL_S = 0.1
# A fresh channel per attempt, with no shared subchannel: a reused channel backs off
# exponentially (1 s, 1.6 s, 2.6 s, ...) after refused connects, which would delay
# noticing a server that has just started listening.
CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


def log(msg: str) -> None:
    sys.stderr.write(f"[services] {msg}\n")
    sys.stderr.flush()


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (an exited process may linger unreaped here)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def check_once(target: str) -> str:
    """One Check call: the status name (e.g. SERVING), or the gRPC error code name."""
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_DEADLINE_S)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            return f"error {code.name if code else exc}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


def print_log_tail(path: Path | None, lines: int = 30) -> None:
    if path is None:
        return
    try:
        with path.open(errors="replace") as f:
            tail = deque(f, maxlen=lines)
    except OSError as exc:
        log(f"(cannot read {path}: {exc})")
        return
    log(f"last {len(tail)} lines of {path}:")
    for line in tail:
        sys.stderr.write(f"    {line.rstrip()}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("target", help="HOST:PORT of the gRPC server")
    parser.add_argument("--timeout-s", type=float, default=30.0)
    parser.add_argument("--pid", type=int, default=None, help="fail fast if this process exits")
    parser.add_argument("--log", type=Path, default=None, help="log to show on failure")
    parser.add_argument("--name", default=None, help="service name for messages")
    args = parser.parse_args()
    name = args.name or args.target

    deadline = time.monotonic() + args.timeout_s
    last = "no answer yet"
    while True:
        if args.pid is not None and not pid_alive(args.pid):
            log(f"{name}: process {args.pid} exited before reporting SERVING (last: {last})")
            print_log_tail(args.log)
            return 3
        last = check_once(args.target)
        if last == "SERVING":
            return 0
        if time.monotonic() >= deadline:
            log(f"{name}: not SERVING on {args.target} after {args.timeout_s:g}s (last: {last})")
            print_log_tail(args.log)
            return 1
        time.sleep(RETRY_INTERVAL_S)


if __name__ == "__main__":
    sys.exit(main())
