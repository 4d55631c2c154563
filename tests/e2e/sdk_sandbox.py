"""A sandbox gateway of another language's SDK (sandbox_gateways/<lang>/build and run),
registered and started against a test module's services, as `make up` runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, free_port
from tests.e2e.conftest import GATEWAY_TIMEOUT_S, Running, wait_serving

STOP_TIMEOUT_S = 10


def _run(args: list[str], env: dict[str, str], timeout_s: float = 60) -> None:
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@contextmanager
def sdk_sandbox(
    services: list[Running],
    logs: Path,
    *,
    language: str,
    gateway_id: str,
    wire_format: str,
    currency: str,
    build_timeout_s: float,
) -> Iterator[Running]:
    """Keys for ``gateway_id``; registered for ``currency`` above the JSON sandbox
    (`gateways add` also creates its topic), with this suite's short gateway timeout;
    built and started (``PAYRAIL_SANDBOX_<LANGUAGE>_PORT``); SERVING before it is
    yielded. At the end SIGTERM must stop it within seconds with exit code 0."""
    env = dict(services[0].env or os.environ)
    keys = Path(env["PAYRAIL_SANDBOX_KEYS_DIR"])
    _run([sys.executable, "-m", "sandbox_gateways.keys", "--dir", str(keys), gateway_id], env)
    _run(
        [
            sys.executable,
            "-m",
            "payment_svc.gateways",
            "add",
            gateway_id,
            "--format",
            wire_format,
            "--priority",
            "30",
            "--currencies",
            currency,
            "--timeout-s",
            str(GATEWAY_TIMEOUT_S),
            "--public-key-file",
            str(keys / f"{gateway_id}.x25519.pub"),
            "--secret-file",
            str(keys / f"{gateway_id}.secret"),
        ],
        env,
    )
    _run([f"sandbox_gateways/{language}/build"], env, timeout_s=build_timeout_s)
    port = free_port()
    env[f"PAYRAIL_SANDBOX_{language.upper()}_PORT"] = str(port)
    log_path = logs / f"sandbox_{language}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [f"sandbox_gateways/{language}/run"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = Running(f"sandbox_{language}", port, process, log_path, env=env)
    try:
        wait_serving(running)
        yield running
    finally:
        returncode = process.poll()  # a test may have stopped it already
        if returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                returncode = process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        # A graceful stop: SIGTERM ends the sandbox within seconds, with exit code 0.
        assert returncode == 0, log_path.read_text(errors="replace")[-3000:]


def log_records(svc: Running) -> list[dict[str, Any]]:
    """The JSON objects of a process's log, one per line (other lines skipped)."""
    records = []
    for line in svc.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
