"""Finding, killing, pausing and bringing back the processes of the chaos stack.

Services are killed with SIGKILL and brought back by the stack's supervisor (services.sh
runs them under one); infrastructure is restarted here, through deploy/local/stack.sh.
A pid is never taken on trust: it must be alive and its command line must be the
process we mean (pid files can be stale after a kill -9).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chaos.stack import SERVICES, SERVICES_SH, STACK_SH, ChaosStack

SERVICE_BACK_TIMEOUT_S = 120.0
# How long a killed service may stay down before the harness concludes that nothing
# supervises it and starts it itself (reported: the fault then counts as restarted by
# the harness, not by the supervisor).
SUPERVISOR_GRACE_S = 20.0


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class Processes:
    def __init__(self, stack: ChaosStack) -> None:
        self.stack = stack
        self.run_dir = stack.data_dir / "run"

    # ------------------------------------------------------------------ pids

    async def service_pid(self, name: str) -> int | None:
        """services.sh pid NAME when the supervisor offers it, else the pid file."""
        module = SERVICES[name][0]
        try:
            out = await self.stack.run(SERVICES_SH, "pid", name, timeout_s=30, check=False)
        except RuntimeError:
            out = ""
        words = out.strip().split()
        candidates = [int(words[-1])] if words and words[-1].isdigit() else []
        from_file = read_pid(self.run_dir / f"{name}.pid")
        if from_file is not None:
            candidates.append(from_file)
        for pid in candidates:
            if pid_alive(pid) and f"-m {module} " in cmdline(pid) + " ":
                return pid
        return None

    def broker_pid(self, node: int) -> int | None:
        pid = read_pid(self.run_dir / f"kafka-{node}.pid")
        if pid is not None and pid_alive(pid) and "kafka.Kafka" in cmdline(pid):
            return pid
        return None

    def pg_pid(self) -> int | None:
        pid = read_pid(self.stack.data_dir / "pg" / "postmaster.pid")
        return pid if pid is not None and pid_alive(pid) else None

    def redis_pid(self) -> int | None:
        pid = read_pid(self.run_dir / "redis.pid")
        return pid if pid is not None and pid_alive(pid) else None

    # ------------------------------------------------------------------ health

    async def serving(self, name: str) -> bool:
        target = f"127.0.0.1:{self.stack.service_ports[name]}"
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=2
                )
        except (grpc.RpcError, OSError):
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def wait_service_back(self, name: str, old_pid: int) -> str:
        """Until a new process of NAME is SERVING; returns who restarted it."""
        started = time.monotonic()
        restarted_by = "supervisor"
        while True:
            pid = await self.service_pid(name)
            if pid is not None and pid != old_pid and await self.serving(name):
                return restarted_by
            waited = time.monotonic() - started
            if pid is None and restarted_by == "supervisor" and waited > SUPERVISOR_GRACE_S:
                self.stack.log(f"  {name} not restarted by a supervisor; services.sh up")
                restarted_by = "harness"
                await self.stack.run(SERVICES_SH, "up", timeout_s=180, check=False)
            if waited > SERVICE_BACK_TIMEOUT_S:
                raise RuntimeError(f"{name} not SERVING {SERVICE_BACK_TIMEOUT_S:g}s after a kill")
            await asyncio.sleep(0.5)

    async def wait_all_serving(self, timeout_s: float = 120) -> list[str]:
        """Names of the services still not SERVING after timeout_s (empty: all are)."""
        deadline = time.monotonic() + timeout_s
        while True:
            down = [n for n in SERVICES if not await self.serving(n)]
            if not down or time.monotonic() > deadline:
                return down
            await asyncio.sleep(1)

    # ------------------------------------------------------------------ faults

    async def kill_service(self, name: str) -> str:
        pid = await self.service_pid(name)
        if pid is None:
            raise RuntimeError(f"{name} has no running process to kill")
        os.kill(pid, signal.SIGKILL)
        by = await self.wait_service_back(name, pid)
        return f"pid {pid} killed, restarted by {by}"

    async def kill_broker(self, node: int, down_s: float) -> str:
        pid = self.broker_pid(node)
        if pid is None:
            raise RuntimeError(f"kafka-{node} is not running")
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(down_s)
        await self.stack.run(STACK_SH, "start-kafka", str(node), timeout_s=300)
        return f"pid {pid} killed, down {down_s:.0f}s, restarted"

    async def pg_crash(self, down_s: float) -> str:
        pgdata = self.stack.data_dir / "pg"
        version = (pgdata / "PG_VERSION").read_text().strip()
        pg_ctl = f"/usr/lib/postgresql/{version}/bin/pg_ctl"
        pid = self.pg_pid()
        await self.stack.run(
            "runuser", "-u", "postgres", "--", pg_ctl, "-D", pgdata, "-m", "immediate", "stop",
            timeout_s=60,
        )  # fmt: skip
        await asyncio.sleep(down_s)
        await self.stack.run(STACK_SH, "up", timeout_s=300)
        return f"postmaster {pid} stopped -m immediate, down {down_s:.0f}s, restarted"

    async def redis_restart(self, down_s: float) -> str:
        pid = self.redis_pid()
        if pid is None:
            raise RuntimeError("redis is not running")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:  # noqa: ASYNC110 - polling /proc
            await asyncio.sleep(0.1)
        await asyncio.sleep(down_s)
        await self.stack.run(STACK_SH, "up", timeout_s=300)
        return f"pid {pid} stopped, down {down_s:.0f}s, restarted"

    async def pause(self, pid: int, seconds: float) -> str:
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        return f"pid {pid} SIGSTOP for {seconds:.0f}s, then SIGCONT"
