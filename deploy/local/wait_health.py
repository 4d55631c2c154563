"""Wait until a gRPC server reports SERVING on the standard health protocol.

    python deploy/local/wait_health.py HOST:PORT [--timeout-s N] [--pid PID] [--log FILE]
        [--supervisor SOCKET --program NAME [--crashes-max N]]

Polls ``grpc.health.v1.Health/Check`` with ``service=""`` (the server as a whole), each
call bounded by a short deadline, until the status is SERVING or --timeout-s passes.
--pid makes it give up at once when that process exits; --log names the service's log,
whose last 30 lines are printed on failure. Used by deploy/local/services.sh.

With --supervisor (supervisord's unix socket) and --program, it also follows the
program's supervisord state: a restart is reported and waited through, but a program
that supervisord has given up on (FATAL), that was stopped, or that has exited during
start-up --crashes-max times (BACKOFF each time) fails the wait at once, with its log
tail, instead of running into the timeout.

Exit status: 0 SERVING, 1 timed out, 3 the process exited (--pid) or cannot come up
(--supervisor).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from supervisor_rpc import ProcessInfo, Supervisor, SupervisorError

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


class StartWatch:
    """Follows one program's supervisord state while we wait for it to serve.

    observe() returns None while waiting still makes sense, else why it does not.
    """

    # supervisord answers within milliseconds; a few misses in a row mean it is gone.
    RPC_FAILURES_MAX = 3
    # STOPPED/EXITED are passing states during a restart (or right after a crash, before
    # autorestart starts it again); only when they last is the program really down.
    DOWN_GRACE_S = 3.0

    def __init__(self, name: str, crashes_max: int) -> None:
        self._name = name
        self._crashes_max = crashes_max
        self._crashes = 0
        self._rpc_failures = 0
        self._last_state = ""
        self._last_pid = 0
        self._down_since: float | None = None
        self.summary = "no supervisord state yet"

    def observe(self, supervisor: Supervisor, program: str) -> str | None:
        try:
            info = supervisor.process(program)
        except SupervisorError as exc:
            self._rpc_failures += 1
            self.summary = str(exc)
            if self._rpc_failures >= self.RPC_FAILURES_MAX:
                return f"{self._name}: supervisord does not answer ({exc})"
            return None
        self._rpc_failures = 0
        self.summary = f"supervisord: {info.state} {info.description}".strip()
        return self._judge(info)

    def _judge(self, info: ProcessInfo) -> str | None:
        entered = info.state != self._last_state
        self._last_state = info.state
        if info.pid and self._last_pid and info.pid != self._last_pid:
            log(f"{self._name}: restarted by supervisord (pid {self._last_pid} -> {info.pid})")
        if info.pid:
            self._last_pid = info.pid
        if info.state == "FATAL":
            return (
                f"{self._name}: FATAL: it kept exiting during start-up and supervisord has "
                f"given up ({info.description}); fix the cause, then 'services.sh up'"
            )
        if info.state == "BACKOFF" and entered:
            self._crashes += 1
            if self._crashes >= self._crashes_max:
                return (
                    f"{self._name}: exited during start-up {self._crashes} times (BACKOFF); "
                    "supervisord keeps retrying for a while, 'services.sh status' shows it"
                )
            log(
                f"{self._name}: exited during start-up (BACKOFF, {self._crashes} of "
                f"{self._crashes_max} tolerated); supervisord starts it again shortly"
            )
        if info.state in ("STOPPED", "EXITED"):
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = now
            elif now - self._down_since >= self.DOWN_GRACE_S:
                return f"{self._name}: {info.state} and not being restarted ({info.description})"
        else:
            self._down_since = None
        return None


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
    parser.add_argument("--supervisor", default=None, help="supervisord's unix socket")
    parser.add_argument("--program", default=None, help="the service's supervisord program")
    parser.add_argument(
        "--crashes-max", type=int, default=3, help="start-up exits (BACKOFF) that fail the wait"
    )
    args = parser.parse_args()
    name = args.name or args.target
    if (args.supervisor is None) != (args.program is None):
        parser.error("--supervisor and --program go together")
    supervisor = Supervisor(args.supervisor) if args.supervisor else None
    watch = StartWatch(name, args.crashes_max)

    deadline = time.monotonic() + args.timeout_s
    last = "no answer yet"
    while True:
        if args.pid is not None and not pid_alive(args.pid):
            log(f"{name}: process {args.pid} exited before reporting SERVING (last: {last})")
            print_log_tail(args.log)
            return 3
        if supervisor is not None:
            failure = watch.observe(supervisor, args.program)
            if failure is not None:
                log(failure)
                print_log_tail(args.log)
                return 3
        last = check_once(args.target)
        if last == "SERVING":
            return 0
        if time.monotonic() >= deadline:
            if supervisor is not None:
                last = f"{last}; {watch.summary}"
            log(f"{name}: not SERVING on {args.target} after {args.timeout_s:g}s (last: {last})")
            print_log_tail(args.log)
            return 1
        time.sleep(RETRY_INTERVAL_S)


if __name__ == "__main__":
    sys.exit(main())
