"""deploy/local/services.sh runs the services under supervisord, as `make up` does.

The real script against the test stack: its own data dir (supervisord's socket, config,
logs) in a temporary directory and free ports for every service, so it never meets the
`make up` stack. A service killed with SIGKILL comes back SERVING under a new pid,
`status` reports supervisord's view and each service's health, a service that cannot
start is reported instead of waited for, and `down` leaves no process behind.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ROOT, JwtKeys, StackEnv, free_port
from tests.e2e.conftest import RELAXED_RISK, skip_old_events

pytestmark = pytest.mark.e2e

SERVICES_SH = ROOT / "deploy/local/services.sh"
NAMES = (
    "gateway_svc",
    "payment_svc",
    "consumer_svc",
    "consumer_insights",
    "sandbox_json",
    "sandbox_soap",
)
UP_TIMEOUT_S = 150
DOWN_TIMEOUT_S = 60
RESTART_SEEN_TIMEOUT_S = 20
SANDBOXES = ("sandbox-json", "sandbox-soap")


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    data_dir: Path
    ports: dict[str, int]

    def run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SERVICES_SH), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def pid(self, name: str) -> int:
        result = self.run("pid", name)
        assert result.returncode == 0, result.stdout + result.stderr
        return int(result.stdout.strip())


def our_processes(data_dir: Path) -> list[int]:
    """Live processes started with this data dir in their environment: supervisord, the
    services and any worker they forked (all inherit the environment of `up`)."""
    marker = f"PAYRAIL_DATA_DIR={data_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in environ and state != "Z":
            found.append(int(proc.name))
    return found


def kill_all(data_dir: Path) -> None:
    for pid in our_processes(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def make_stack(stack: StackEnv, jwt_keys: JwtKeys, tmp: Path) -> Stack:
    """The environment of `services.sh up`: this stack's stores, free ports, fresh keys,
    consumer groups of its own that start at the end of their topics."""
    data_dir = tmp / "data"
    keys = tmp / "gateway-keys"
    ports = {name: free_port() for name in NAMES}
    env = {
        **os.environ,
        **RELAXED_RISK,
        "PYTHON": sys.executable,
        "PAYRAIL_DATA_DIR": str(data_dir),
        "PAYRAIL_PG_DSN": stack.pg_dsn,
        "PAYRAIL_REDIS_URL": stack.redis_url,
        "PAYRAIL_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "PAYRAIL_GATEWAY_PORT": str(ports["gateway_svc"]),
        "PAYRAIL_PAYMENT_PORT": str(ports["payment_svc"]),
        "PAYRAIL_CONSUMER_PORT": str(ports["consumer_svc"]),
        "PAYRAIL_INSIGHTS_PORT": str(ports["consumer_insights"]),
        "PAYRAIL_SANDBOX_JSON_PORT": str(ports["sandbox_json"]),
        "PAYRAIL_SANDBOX_SOAP_PORT": str(ports["sandbox_soap"]),
        "PAYRAIL_GATEWAY_METRICS_PORT": str(free_port()),
        "PAYRAIL_PAYMENT_METRICS_PORT": str(free_port()),
        "PAYRAIL_CONSUMER_METRICS_PORT": str(free_port()),
        "PAYRAIL_INSIGHTS_METRICS_PORT": str(free_port()),
        "PAYRAIL_PAYMENT_TARGET": f"127.0.0.1:{ports['payment_svc']}",
        "PAYRAIL_INSIGHTS_TARGET": f"127.0.0.1:{ports['consumer_insights']}",
        "PAYRAIL_CALLBACK_TARGET": f"127.0.0.1:{ports['gateway_svc']}",
        # Every test registers from 127.0.0.1, many times within one throttle window.
        "PAYRAIL_REGISTER_MAX_PER_PEER": "100000",
        # Short, so `down` (SIGKILL after grace + 5 s) stays quick even for a slow stopper.
        "PAYRAIL_SHUTDOWN_GRACE_S": "2",
        "PAYRAIL_JWT_SIGNING_KEYS": jwt_keys.signing_spec,
        "PAYRAIL_JWT_ACTIVE_KID": jwt_keys.kid,
        "PAYRAIL_JWT_PUBLIC_KEYS": jwt_keys.public_spec,
        "PAYRAIL_VAULT_KEYS": jwt_keys.vault_spec,
        "PAYRAIL_VAULT_ACTIVE_KEY": jwt_keys.kid,
        "PAYRAIL_VAULT_FINGERPRINT_KEY": str(jwt_keys.fingerprint_key_path),
        "PAYRAIL_INTERNAL_TOKEN_FILE": str(jwt_keys.internal_token_path),
        "PAYRAIL_EDGE_ASSERTION_KEYS": str(jwt_keys.edge_assertion_key_path),
        "PAYRAIL_SANDBOX_KEYS_DIR": str(keys),
        # No janitor: this module makes no payments, and a janitor would act on the
        # shared test database's payments of other modules.
        "PAYRAIL_CONSUMER_ROLES": "processor,notifications",
        "PAYRAIL_PROCESSOR_GROUP": f"payrail-processor-{uuid.uuid4().hex[:8]}",
        "PAYRAIL_LOYALTY_GROUP": f"payrail-loyalty-{uuid.uuid4().hex[:8]}",
        "PAYRAIL_BENEFITS_GROUP": f"payrail-benefits-{uuid.uuid4().hex[:8]}",
        "PAYRAIL_NOTIFICATIONS_GROUP": f"payrail-notifications-{uuid.uuid4().hex[:8]}",
        "PAYRAIL_NOTIFICATIONS_SINK_FILE": str(tmp / "notifications.jsonl"),
    }
    # The sandboxes need their keys to start; registering them as gateways is not needed
    # here (no payment is routed), so the shared registry is left alone.
    result = subprocess.run(
        [sys.executable, "-m", "sandbox_gateways.keys", "--dir", str(keys), *SANDBOXES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for group in ("PAYRAIL_PROCESSOR_GROUP", "PAYRAIL_LOYALTY_GROUP", "PAYRAIL_BENEFITS_GROUP"):
        skip_old_events(stack.kafka_bootstrap, env[group])
    return Stack(env, data_dir, ports)


@pytest.fixture(scope="module")
def supervised(
    stack: StackEnv, jwt_keys: JwtKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    running = make_stack(stack, jwt_keys, tmp_path_factory.mktemp("supervised"))
    try:
        result = running.run("up", timeout_s=UP_TIMEOUT_S)
        assert result.returncode == 0, result.stderr[-5000:]
        yield running
    finally:
        running.run("down", timeout_s=DOWN_TIMEOUT_S)
        kill_all(running.data_dir)


def status_lines(running: Stack) -> dict[str, str]:
    result = running.run("status", timeout_s=30)
    assert result.returncode == 0, result.stdout + result.stderr
    lines: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name = line.split(" ", 1)[0]
        if name in NAMES or name == "supervisord":
            lines[name] = line
    return lines


def test_status_shows_supervisor_state_and_health(supervised: Stack) -> None:
    lines = status_lines(supervised)
    assert lines["supervisord"].split()[1] == "RUNNING", lines
    for name in NAMES:
        pid = supervised.pid(name)
        assert re.search(rf" (RUNNING|STARTING) +pid {pid} +up \d+:\d\d:\d\d +SERVING", lines[name])
    assert "postgres=SERVING" in lines["payment_svc"]
    assert "kafka=SERVING" in lines["consumer_svc"]
    assert "payment_svc=SERVING" in lines["gateway_svc"]

    # A process that does not answer is reported as such, not as its pid alone.
    frozen = supervised.pid("sandbox_soap")
    os.kill(frozen, signal.SIGSTOP)
    try:
        lines = status_lines(supervised)
    finally:
        os.kill(frozen, signal.SIGCONT)
    assert "no answer (DEADLINE_EXCEEDED)" in lines["sandbox_soap"], lines["sandbox_soap"]


def test_a_killed_service_comes_back_serving_under_a_new_pid(supervised: Stack) -> None:
    old = supervised.pid("payment_svc")
    cmdline = Path(f"/proc/{old}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1:3] == [b"-m", b"payment_svc"]
    os.kill(old, signal.SIGKILL)

    deadline = time.monotonic() + RESTART_SEEN_TIMEOUT_S
    while (result := supervised.run("pid", "payment_svc")).stdout.strip() in ("", str(old)):
        assert time.monotonic() < deadline, "supervisord did not start payment_svc again"
        time.sleep(0.2)
    new = int(result.stdout)
    waited = supervised.run("wait", "payment_svc", timeout_s=120)
    assert waited.returncode == 0, waited.stderr
    assert supervised.pid("payment_svc") == new
    assert serving(supervised.ports["payment_svc"])
    # The gateway's probe (every 2 s) sees its upstream back, and status shows it.
    deadline = time.monotonic() + RESTART_SEEN_TIMEOUT_S
    while "payment_svc=SERVING" not in (gateway := status_lines(supervised)["gateway_svc"]):
        assert time.monotonic() < deadline, gateway
        time.sleep(0.5)

    # The log stays where it was, appended to: both runs are in it.
    log = (supervised.data_dir / "logs/payment_svc.log").read_text()
    assert log.count('"msg": "serving"') >= 2, log[-3000:]
    supervisor_log = (supervised.data_dir / "logs/supervisord.log").read_text()
    assert "exited: payment_svc (terminated by SIGKILL" in supervisor_log


def test_restart_gives_a_new_process_that_serves(supervised: Stack) -> None:
    old = supervised.pid("sandbox_json")
    result = supervised.run("restart", "sandbox_json", timeout_s=120)
    assert result.returncode == 0, result.stderr
    assert supervised.pid("sandbox_json") != old
    assert serving(supervised.ports["sandbox_json"])


def test_down_leaves_no_process_behind(supervised: Stack) -> None:
    pids = {name: supervised.pid(name) for name in NAMES}
    assert len(our_processes(supervised.data_dir)) >= len(NAMES) + 1  # and supervisord
    result = supervised.run("down", timeout_s=DOWN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    assert our_processes(supervised.data_dir) == []
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), name
        assert supervised.run("pid", name).returncode == 1
    assert "supervisord        not running" in supervised.run("status").stdout


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def test_a_service_that_cannot_start_fails_up_quickly_with_its_log(
    stack: StackEnv, jwt_keys: JwtKeys, tmp_path: Path
) -> None:
    running = make_stack(stack, jwt_keys, tmp_path)
    running.env["PAYRAIL_INSIGHTS_GROUPS"] = "no-such-group"  # a configuration error at start
    try:
        started = time.monotonic()
        result = running.run("up", timeout_s=UP_TIMEOUT_S)
        elapsed_s = time.monotonic() - started
        assert result.returncode == 1, result.stderr
        # Well before the readiness bound (startup timeout + 30 s = 60 s).
        assert elapsed_s < 45, result.stderr
        assert "consumer_insights: exited during start-up 3 times (BACKOFF)" in result.stderr
        assert "PAYRAIL_INSIGHTS_GROUPS" in result.stderr  # the tail of its log
        assert "payment_svc: SERVING" in result.stderr  # the others came up regardless
        lines = status_lines(running)
        insights = lines["consumer_insights"]
        assert re.search(r" (BACKOFF|FATAL|STARTING) ", insights), insights
    finally:
        down = running.run("down", timeout_s=DOWN_TIMEOUT_S)
        kill_all(running.data_dir)
    assert down.returncode == 0, down.stderr
    assert our_processes(running.data_dir) == []


def test_status_asks_for_every_dependency_the_services_probe() -> None:
    """service_status.py asks each service for a fixed list of dependency names; a probe
    added to a bootstrap without it there would silently not be shown."""
    tree = ast.parse((ROOT / "deploy/local/service_status.py").read_text())
    listed: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "DEPENDENCY_NAMES":
            listed = set(ast.literal_eval(node.value))
    probed = set()
    for bootstrap in ROOT.glob("*_svc/**/bootstrap.py"):
        probed |= set(re.findall(r'Probe\(\s*"([^"]+)"', bootstrap.read_text()))
    assert probed, "no Probe(...) found in any bootstrap.py"
    assert probed <= listed, f"add {sorted(probed - listed)} to DEPENDENCY_NAMES"
