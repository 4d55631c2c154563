"""The three services as real processes (`python -m ...`), as `make up` runs them."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from tests.e2e.conftest import Running

pytestmark = pytest.mark.e2e


def test_every_service_answers_serving_to_grpcurl(services: list[Running], grpcurl: str) -> None:
    for svc in services:
        result = subprocess.run(
            [grpcurl, "-plaintext", f"127.0.0.1:{svc.port}", "grpc.health.v1.Health/Check"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"status": "SERVING"}, svc.name


def test_public_services_are_listed_only_on_the_gateway(
    services: list[Running], grpcurl: str
) -> None:
    listed = {}
    for svc in services:
        result = subprocess.run(
            [grpcurl, "-plaintext", f"127.0.0.1:{svc.port}", "list"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        listed[svc.name] = set(result.stdout.split())
    assert "payrail.auth.v1.AuthService" in listed["gateway"]
    assert "payrail.auth.v1.AuthService" not in listed["payment"]
    assert "payrail.payments.v1.PaymentService" in listed["payment"]
    assert listed["consumer"] & {"payrail.payments.v1.PaymentService"} == set()
    assert "grpc.health.v1.Health" in listed["consumer"]


def test_sigterm_shuts_down_gracefully_with_json_logs(services: list[Running]) -> None:
    for svc in services:
        svc.process.send_signal(signal.SIGTERM)
    for svc in services:
        assert svc.process.wait(timeout=30) == 0, svc.log_path.read_text()[-3000:]
        if svc.name.startswith("sandbox"):
            continue  # the sandbox gateways are SDK users, with plain-text logs
        lines = [
            json.loads(line)
            for line in svc.log_path.read_text().splitlines()
            if line.startswith("{")
        ]
        messages = [line["msg"] for line in lines]
        assert "serving" in messages, svc.name
        assert "stopped" in messages, svc.name
        assert all(line["service"] == f"{svc.name}_svc" for line in lines)
