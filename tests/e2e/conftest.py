"""End-to-end fixtures: the services as real processes (`python -m ...`), as `make up`
runs them, on free ports, against the real test stack, with their logs in files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ROOT, JwtKeys, StackEnv, free_port

STARTUP_TIMEOUT_S = 60
# Short so the janitor's re-dispatch and gateway_timeout can be seen within a test.
GATEWAY_TIMEOUT_S = 3
DISPATCH_ATTEMPTS_MAX = 2


@dataclass
class Running:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    module: str = ""
    env: dict[str, str] | None = None

    def restart(self) -> None:
        """Start the same service again (after it was killed), appending to its log."""
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=ROOT,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        wait_serving(self)


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


def skip_old_events(bootstrap: str, group: str) -> None:
    """Start this module's (new, memberless) processor group at the end of payments.events.

    The test stack outlives single tests (KEEP_STACK=1) and other modules leave events
    behind; this module's assertions are about its own payments, so its processor starts
    from now instead of working through someone else's backlog first.
    """

    async def commit_end() -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [TopicPartition("payments.events", p) for p in range(6)]
            consumer.assign(partitions)
            end = await consumer.end_offsets(partitions)
            await consumer.commit({tp: offset for tp, offset in end.items()})
        finally:
            await consumer.stop()

    asyncio.run(commit_end())


def register_sandbox_gateways(env: dict[str, str], keys: Path) -> None:
    """Fresh keys for both sandbox gateways, registered with the registry CLI."""

    def run(*args: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    run("sandbox_gateways.keys", "--dir", str(keys), "sandbox-json", "sandbox-soap")
    # EUR and GBP go to the SOAP sandbox (higher priority, narrower), the rest to JSON.
    for fmt, priority, currencies in (
        ("json", "10", "USD,EUR,GBP,JPY,KRW,CHF,CAD,AUD"),
        ("soap", "20", "EUR,GBP"),
    ):
        run(
            "payment_svc.gateways",
            "add",
            f"sandbox-{fmt}",
            "--format",
            fmt,
            "--priority",
            priority,
            "--currencies",
            currencies,
            "--timeout-s",
            str(GATEWAY_TIMEOUT_S),
            "--public-key-file",
            str(keys / f"sandbox-{fmt}.x25519.pub"),
            "--secret-file",
            str(keys / f"sandbox-{fmt}.secret"),
        )


@pytest.fixture(scope="module")
def gateway_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the sandbox gateways' keys and callback secrets are, for this module."""
    return tmp_path_factory.mktemp("gateway-keys")


# Risk limits of the e2e processes unless a module says otherwise: high enough that the
# bursts of payments other modules make are never refused as velocity or amount outliers,
# and withdrawals to any card (modules test gateway outcomes with never-funded test cards;
# tests/e2e/test_risk_funding.py tests the rule).
RELAXED_RISK = {
    "PAYRAIL_RISK_VELOCITY_MAX_PER_CARD": "1000000",
    "PAYRAIL_RISK_VELOCITY_MAX_PER_USER": "1000000",
    "PAYRAIL_RISK_AMOUNT_FACTOR": "1000000",
    "PAYRAIL_RISK_WITHDRAWAL_FUNDING_CARD_ONLY": "0",
}


@pytest.fixture(scope="module")
def service_env() -> dict[str, str]:
    """Extra environment for this module's processes; a module overrides it to test
    other settings (e.g. tests/e2e/test_risk.py with the real risk limits)."""
    return dict(RELAXED_RISK)


@pytest.fixture(scope="module")
def services(  # one set of processes per test module
    stack: StackEnv,
    jwt_keys: JwtKeys,
    gateway_keys: Path,
    service_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Running]]:
    logs = tmp_path_factory.mktemp("logs")
    modules = {
        "payment": "payment_svc",
        "gateway": "gateway_svc",
        "consumer": "consumer_svc",
        "insights": "consumer_svc.insights",
        "sandbox_json": "sandbox_gateways.json_gateway",
        "sandbox_soap": "sandbox_gateways.soap_gateway",
    }
    ports = {name: free_port() for name in modules}
    env = {
        **os.environ,
        "PAYRAIL_PG_DSN": stack.pg_dsn,
        "PAYRAIL_REDIS_URL": stack.redis_url,
        "PAYRAIL_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "PAYRAIL_GATEWAY_PORT": str(ports["gateway"]),
        "PAYRAIL_PAYMENT_PORT": str(ports["payment"]),
        "PAYRAIL_CONSUMER_PORT": str(ports["consumer"]),
        "PAYRAIL_PAYMENT_TARGET": f"127.0.0.1:{ports['payment']}",
        "PAYRAIL_INSIGHTS_PORT": str(ports["insights"]),
        "PAYRAIL_INSIGHTS_TARGET": f"127.0.0.1:{ports['insights']}",
        "PAYRAIL_INSIGHTS_METRICS_PORT": str(free_port()),
        "PAYRAIL_GATEWAY_METRICS_PORT": str(free_port()),
        "PAYRAIL_PAYMENT_METRICS_PORT": str(free_port()),
        "PAYRAIL_CONSUMER_METRICS_PORT": str(free_port()),
        "PAYRAIL_SHUTDOWN_GRACE_S": "2",
        # The shared test database keeps payments that no pipeline ever processed
        # (integration tests run without one), so the admission bound would count other
        # runs' leftovers; tests/integration/test_admission.py tests it on its own terms.
        "PAYRAIL_UNSETTLED_MAX": "100000",
        # Every test registers from 127.0.0.1, many times within one throttle window.
        "PAYRAIL_REGISTER_MAX_PER_PEER": "100000",
        "PAYRAIL_JWT_SIGNING_KEYS": jwt_keys.signing_spec,
        "PAYRAIL_JWT_ACTIVE_KID": jwt_keys.kid,
        "PAYRAIL_JWT_PUBLIC_KEYS": jwt_keys.public_spec,
        "PAYRAIL_VAULT_KEYS": jwt_keys.vault_spec,
        "PAYRAIL_VAULT_ACTIVE_KEY": jwt_keys.kid,
        "PAYRAIL_VAULT_FINGERPRINT_KEY": str(jwt_keys.fingerprint_key_path),
        "PAYRAIL_INTERNAL_TOKEN_FILE": str(jwt_keys.internal_token_path),
        "PAYRAIL_EDGE_ASSERTION_KEYS": str(jwt_keys.edge_assertion_key_path),
        "PAYRAIL_SANDBOX_KEYS_DIR": str(gateway_keys),
        "PAYRAIL_SANDBOX_JSON_PORT": str(ports["sandbox_json"]),
        "PAYRAIL_SANDBOX_SOAP_PORT": str(ports["sandbox_soap"]),
        "PAYRAIL_CALLBACK_TARGET": f"127.0.0.1:{ports['gateway']}",
        # A group of this module's own, so nothing of another module's is in its way.
        "PAYRAIL_PROCESSOR_GROUP": f"payrail-processor-{uuid.uuid4().hex[:8]}",
        "PAYRAIL_LOYALTY_GROUP": f"payrail-loyalty-{uuid.uuid4().hex[:8]}",
        "PAYRAIL_BENEFITS_GROUP": f"payrail-benefits-{uuid.uuid4().hex[:8]}",
        "PAYRAIL_JANITOR_INTERVAL_S": "1",
        "PAYRAIL_DISPATCH_ATTEMPTS_MAX": str(DISPATCH_ATTEMPTS_MAX),
        "PAYRAIL_NOTIFICATIONS_SINK_FILE": str(logs / "notifications.jsonl"),
        "PAYRAIL_NOTIFICATIONS_GROUP": f"payrail-notifications-{uuid.uuid4().hex[:8]}",
        # As `make up` runs them: a shared test card counts per user (not production's
        # default, all users); a module's service_env may say otherwise.
        "PAYRAIL_RISK_VELOCITY_CARD_SCOPE": "user",
        **service_env,
    }
    register_sandbox_gateways(env, gateway_keys)
    for group in ("PAYRAIL_PROCESSOR_GROUP", "PAYRAIL_LOYALTY_GROUP", "PAYRAIL_BENEFITS_GROUP"):
        skip_old_events(stack.kafka_bootstrap, env[group])
    running: list[Running] = []
    for name, module in modules.items():
        log_path = logs / f"{name}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        running.append(Running(name, ports[name], process, log_path, module, env))
    try:
        for svc in running:
            wait_serving(svc)
        yield running
    finally:
        for svc in running:
            if svc.process.poll() is None:
                svc.process.kill()
                svc.process.wait(timeout=10)
