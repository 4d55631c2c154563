"""End-to-end fixtures: the services as real processes (`python -m ...`), as `make up`
runs them, on free ports, against the real test stack, with their logs in files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ROOT, JwtKeys, StackEnv, free_port

STARTUP_TIMEOUT_S = 60


@dataclass
class Running:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path


def wait_serving(svc: Running) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with grpc.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if svc.process.poll() is not None:
                pytest.fail(f"{svc.name} exited early:\n{svc.log_path.read_text()[-3000:]}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{svc.name} not SERVING:\n{svc.log_path.read_text()[-3000:]}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def services(  # one set of processes per test module
    stack: StackEnv, jwt_keys: JwtKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Running]]:
    logs = tmp_path_factory.mktemp("logs")
    ports = {name: free_port() for name in ("gateway", "payment", "consumer")}
    env = {
        **os.environ,
        "PAYRAIL_PG_DSN": stack.pg_dsn,
        "PAYRAIL_REDIS_URL": stack.redis_url,
        "PAYRAIL_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "PAYRAIL_GATEWAY_PORT": str(ports["gateway"]),
        "PAYRAIL_PAYMENT_PORT": str(ports["payment"]),
        "PAYRAIL_CONSUMER_PORT": str(ports["consumer"]),
        "PAYRAIL_PAYMENT_TARGET": f"127.0.0.1:{ports['payment']}",
        "PAYRAIL_GATEWAY_METRICS_PORT": str(free_port()),
        "PAYRAIL_PAYMENT_METRICS_PORT": str(free_port()),
        "PAYRAIL_CONSUMER_METRICS_PORT": str(free_port()),
        "PAYRAIL_SHUTDOWN_GRACE_S": "2",
        "PAYRAIL_JWT_SIGNING_KEYS": jwt_keys.signing_spec,
        "PAYRAIL_JWT_ACTIVE_KID": jwt_keys.kid,
        "PAYRAIL_JWT_PUBLIC_KEYS": jwt_keys.public_spec,
        "PAYRAIL_VAULT_KEYS": jwt_keys.vault_spec,
        "PAYRAIL_VAULT_ACTIVE_KEY": jwt_keys.kid,
        "PAYRAIL_VAULT_FINGERPRINT_KEY": str(jwt_keys.fingerprint_key_path),
    }
    running: list[Running] = []
    for name in ("payment", "gateway", "consumer"):
        log_path = logs / f"{name}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", f"{name}_svc"],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        running.append(Running(name, ports[name], process, log_path))
    try:
        for svc in running:
            wait_serving(svc)
        yield running
    finally:
        for svc in running:
            if svc.process.poll() is None:
                svc.process.kill()
                svc.process.wait(timeout=10)
