"""Controlling the test stack from a test: stop its Kafka broker, start it again."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.conftest import ROOT


def pid_running(pid: int) -> bool:
    """Alive and not a zombie (an exited orphan may linger until PID 1 reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def kafka_pid() -> int:
    data_dir = os.environ.get("PAYRAIL_DATA_DIR", "")
    if not data_dir:
        pytest.fail("PAYRAIL_DATA_DIR is not set: run the suite with `make test`")
    pid = int((Path(data_dir) / "run" / "kafka.pid").read_text().strip())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b"kafka.Kafka" in cmdline, f"pid {pid} is not this stack's broker"
    return pid


async def stack_up(*, timeout_s: float = 240) -> None:
    """`deploy/local/stack.sh up`: starts only what is missing (here: Kafka)."""
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "deploy" / "local" / "stack.sh"),
        "up",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]
