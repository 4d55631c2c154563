"""The chaos suite's own stack: ports, environment, bring-up and teardown.

Everything goes through the project's scripts, exactly as ``make up`` does it
(deploy/local/stack.sh with three Kafka brokers, migrations, keys, the gateway registry,
deploy/local/services.sh), but on ports and a data directory of its own, so it never
touches ``make up`` (5432/6379/9092, 5005x, 945x) or ``make test`` (15432/16379/19092-3).

Port layout, every number + ``ports_offset`` (0 for ``make chaos``, 100 for the smoke in
``make test``): PostgreSQL 25432, Redis 26379, Kafka brokers 29092/29094/29096 with their
controllers on 29093/29095/29097, gateway_svc 25051, payment_svc 25052, consumer_svc
25053, insights 25054, the sandbox gateways 25061/25062, metrics 29451-29454. All below
the kernel's ephemeral range (32768+), so no client socket can be sitting on them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK_SH = ROOT / "deploy" / "local" / "stack.sh"
SERVICES_SH = ROOT / "deploy" / "local" / "services.sh"
BROKERS = 3

# services.sh names -> (module, port variable, base port). The module identifies the
# process (/proc/PID/cmdline) when the pid has to be found without services.sh's help.
SERVICES: dict[str, tuple[str, str, int]] = {
    "gateway_svc": ("gateway_svc", "PAYRAIL_GATEWAY_PORT", 25051),
    "payment_svc": ("payment_svc", "PAYRAIL_PAYMENT_PORT", 25052),
    "consumer_svc": ("consumer_svc", "PAYRAIL_CONSUMER_PORT", 25053),
    "consumer_insights": ("consumer_svc.insights", "PAYRAIL_INSIGHTS_PORT", 25054),
    "sandbox_json": ("sandbox_gateways.json_gateway", "PAYRAIL_SANDBOX_JSON_PORT", 25061),
    "sandbox_soap": ("sandbox_gateways.soap_gateway", "PAYRAIL_SANDBOX_SOAP_PORT", 25062),
}
METRICS_PORTS = {
    "PAYRAIL_GATEWAY_METRICS_PORT": 29451,
    "PAYRAIL_PAYMENT_METRICS_PORT": 29452,
    "PAYRAIL_CONSUMER_METRICS_PORT": 29453,
    "PAYRAIL_INSIGHTS_METRICS_PORT": 29454,
}
# Risk limits out of the way (as `make bench` sets them): every chaos user pays with the
# same few test cards, and outcomes must depend on the card alone.
RISK_OFF = {
    "PAYRAIL_RISK_VELOCITY_MAX_PER_CARD": "100000000",
    "PAYRAIL_RISK_VELOCITY_MAX_PER_USER": "100000000",
    "PAYRAIL_RISK_AMOUNT_FACTOR": "100000000",
    "PAYRAIL_RISK_MAX_SPEED_KMH": "100000000",
    # Withdrawals go to every test card (their outcomes are the gateway's), funded or not.
    "PAYRAIL_RISK_WITHDRAWAL_FUNDING_CARD_ONLY": "0",
}

Log = Callable[[str], None]


@dataclass(frozen=True)
class StackSettings:
    data_dir: Path
    ports_offset: int = 0
    # Per-attempt callback deadline and dispatch attempts: a never-answering card fails
    # with gateway_timeout after about attempts x timeout; an answering card must survive
    # any single outage shorter than (attempts - 1) x timeout (the longest pause is 30 s).
    gateway_timeout_s: int = 25
    dispatch_attempts_max: int = 3
    janitor_interval_s: int = 1
    python: str = sys.executable
    tools_dir: Path = ROOT / ".tools"


class ChaosStack:
    """The stack's environment and the commands that act on it."""

    def __init__(self, settings: StackSettings, log: Log) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.log = log
        o = settings.ports_offset
        self.pg_port = 25432 + o
        self.redis_port = 26379 + o
        self.kafka_ports = [29092 + o + 2 * i for i in range(BROKERS)]
        self.service_ports = {name: base + o for name, (_, _, base) in SERVICES.items()}
        self.keys = self.data_dir / "keys"
        self.logs = self.data_dir / "logs"
        self.env = self._environment()

    @property
    def gateway_target(self) -> str:
        return f"127.0.0.1:{self.service_ports['gateway_svc']}"

    @property
    def pg_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/payrail"

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.kafka_ports)

    def _environment(self) -> dict[str, str]:
        o = self.settings.ports_offset
        keys = self.keys
        ports = self.service_ports
        env = {
            **os.environ,
            "PYTHON": self.settings.python,
            "PAYRAIL_DATA_DIR": str(self.data_dir),
            "PAYRAIL_TOOLS_DIR": str(self.settings.tools_dir),
            "PAYRAIL_PG_PORT": str(self.pg_port),
            "PAYRAIL_REDIS_PORT": str(self.redis_port),
            "PAYRAIL_KAFKA_PORT": str(self.kafka_ports[0]),
            "PAYRAIL_KAFKA_CONTROLLER_PORT": str(self.kafka_ports[0] + 1),
            "PAYRAIL_KAFKA_BROKERS": str(BROKERS),
            "PAYRAIL_PG_FAST": "0",  # fsync and synchronous_commit stay on
            "PAYRAIL_PG_DSN": self.pg_dsn,
            "PAYRAIL_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "PAYRAIL_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "PAYRAIL_PAYMENT_TARGET": f"127.0.0.1:{ports['payment_svc']}",
            "PAYRAIL_INSIGHTS_TARGET": f"127.0.0.1:{ports['consumer_insights']}",
            "PAYRAIL_CALLBACK_TARGET": f"127.0.0.1:{ports['gateway_svc']}",
            "PAYRAIL_JWT_SIGNING_KEYS": f"dev-1={keys / 'jwt-dev-1.pem'}",
            "PAYRAIL_JWT_ACTIVE_KID": "dev-1",
            "PAYRAIL_JWT_PUBLIC_KEYS": f"dev-1={keys / 'jwt-dev-1.pub.pem'}",
            "PAYRAIL_VAULT_KEYS": f"dev-1={keys / 'vault-dev-1.key'}",
            "PAYRAIL_VAULT_ACTIVE_KEY": "dev-1",
            "PAYRAIL_VAULT_FINGERPRINT_KEY": str(keys / "vault-fingerprint.key"),
            "PAYRAIL_INTERNAL_TOKEN_FILE": str(keys / "internal-token.key"),
            "PAYRAIL_EDGE_ASSERTION_KEYS": str(keys / "edge-assertion.key"),
            "PAYRAIL_SANDBOX_KEYS_DIR": str(keys),
            "PAYRAIL_NOTIFICATIONS_SINK_FILE": str(self.data_dir / "notifications.jsonl"),
            "PAYRAIL_JANITOR_INTERVAL_S": str(self.settings.janitor_interval_s),
            "PAYRAIL_DISPATCH_ATTEMPTS_MAX": str(self.settings.dispatch_attempts_max),
            "PAYRAIL_SHUTDOWN_GRACE_S": "3",
            **RISK_OFF,
            # Every chaos user registers from 127.0.0.1 within seconds (and retries).
            "PAYRAIL_REGISTER_MAX_PER_PEER": "100000",
            "PAYRAIL_REGISTER_MAX_PER_EMAIL": "1000",
        }
        for name, (_, var, _) in SERVICES.items():
            env[var] = str(ports[name])
        for var, base in METRICS_PORTS.items():
            env[var] = str(base + o)
        return env

    # ------------------------------------------------------------------ commands

    async def run(self, *argv: str | Path, timeout_s: float = 600, check: bool = True) -> str:
        """Run a command in the stack's environment; its output goes to the harness log
        (and is returned). ``check``: a non-zero exit raises with the output's tail."""
        process = await asyncio.create_subprocess_exec(
            *(str(a) for a in argv),
            cwd=ROOT,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            command = " ".join(map(str, argv))
            raise RuntimeError(f"timed out after {timeout_s:g}s: {command}") from exc
        text = out.decode(errors="replace")
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / "chaos-commands.log").open("a") as f:
            f.write(f"$ {' '.join(map(str, argv))}  (exit {process.returncode})\n{text}\n")
        if check and process.returncode != 0:
            raise RuntimeError(
                f"exit {process.returncode}: {' '.join(map(str, argv))}\n{text[-3000:]}"
            )
        return text

    async def python(self, *args: str, timeout_s: float = 300) -> str:
        return await self.run(self.settings.python, "-m", *args, timeout_s=timeout_s)

    async def up(self) -> None:
        """Infrastructure, schema, keys, gateways, then every service (as `make up`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log(f"stack: up in {self.data_dir} (3 Kafka brokers, fsync on)")
        await self.run(STACK_SH, "up", timeout_s=1500)
        await self.python("payrail_common.migrate")
        await self.python("consumer_svc.insights.catalog", "seed")
        await self.python(
            "payrail_common.keys", "--dir", str(self.keys), "--jwt", "dev-1",
            "--secret", "vault-dev-1", "--secret", "vault-fingerprint",
            "--secret", "internal-token", "--secret", "edge-assertion",
        )  # fmt: skip
        await self.python(
            "sandbox_gateways.keys", "--dir", str(self.keys), "sandbox-json", "sandbox-soap"
        )
        timeout = str(self.settings.gateway_timeout_s)
        # EUR and GBP route to the SOAP sandbox (higher priority, narrower), the rest to JSON.
        for gateway, extra in (
            ("sandbox-json", ["--format", "json", "--priority", "10"]),
            ("sandbox-soap", ["--format", "soap", "--priority", "20", "--currencies", "EUR,GBP"]),
        ):
            await self.python(
                "payment_svc.gateways", "add", gateway, *extra, "--timeout-s", timeout,
                "--public-key-file", str(self.keys / f"{gateway}.x25519.pub"),
                "--secret-file", str(self.keys / f"{gateway}.secret"),
            )  # fmt: skip
        await self.run(SERVICES_SH, "up", timeout_s=300)
        self.log("stack: every service SERVING")

    async def down(self) -> None:
        """Stop the services, then the infrastructure; best effort, never raises."""
        for script in (SERVICES_SH, STACK_SH):
            try:
                await self.run(script, "down", timeout_s=240)
            except Exception as exc:  # teardown goes on whatever failed before
                self.log(f"stack: {script.name} down failed: {exc}")
        self.log("stack: down")
