"""Shared fixtures. Integration and e2e tests talk to the real test stack that
``make test`` starts (PostgreSQL, Redis, Kafka on their own ports); they fail loudly,
never skip, when it is not there."""

from __future__ import annotations

import os
import random
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StackEnv:
    pg_dsn: str
    redis_url: str
    kafka_bootstrap: str


def _require(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(
            f"{name} is not set: run the suite with `make test`, which starts the test stack"
        )
    return value


@pytest.fixture(scope="session")
def stack() -> StackEnv:
    return StackEnv(
        pg_dsn=_require("PAYRAIL_PG_DSN"),
        redis_url=_require("PAYRAIL_REDIS_URL"),
        kafka_bootstrap=_require("PAYRAIL_KAFKA_BOOTSTRAP"),
    )


def tool_path(env_name: str, fallback: Path) -> str:
    """A project-installed tool (buf, grpcurl): from the env that make sets, else .tools."""
    path = os.environ.get(env_name) or str(fallback)
    if not Path(path).exists() and shutil.which(path) is None:
        pytest.fail(f"{path} is missing: run `make tools` (make test does it for you)")
    return path


@pytest.fixture(scope="session")
def buf() -> str:
    return tool_path("PAYRAIL_BUF", ROOT / ".tools/npm/node_modules/.bin/buf")


@pytest.fixture(scope="session")
def grpcurl() -> str:
    return tool_path("PAYRAIL_GRPCURL", ROOT / ".tools/bin/grpcurl")


# Ports for the processes tests start come from below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range, 32768-60999 by default) and away from every stack's
# fixed ports: a port the kernel picks for bind(0) is also one it hands to outgoing
# connections, so a Kafka or PostgreSQL client elsewhere could take it between this
# check and the service's own bind ("Address already in use", seen in a full run).
FREE_PORT_RANGE = range(20000, 25000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, never handed out before in this test run."""
    for _ in range(500):
        port = random.choice(FREE_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {FREE_PORT_RANGE}")


@dataclass(frozen=True)
class JwtKeys:
    """Generated development keys, as the services' settings name them: a JWT signing
    key pair, the card vault's data and fingerprint keys, the internal service token and
    the edge assertion key."""

    kid: str
    private_path: Path
    public_path: Path
    vault_key_path: Path
    fingerprint_key_path: Path
    internal_token_path: Path
    edge_assertion_key_path: Path

    @property
    def vault_spec(self) -> str:
        return f"{self.kid}={self.vault_key_path}"

    @property
    def signing_spec(self) -> str:
        return f"{self.kid}={self.private_path}"

    @property
    def public_spec(self) -> str:
        return f"{self.kid}={self.public_path}"


def make_keys(directory: Path, kid: str) -> JwtKeys:
    from payrail_common.keys import generate_secret_file
    from payrail_common.tokens import generate_key_files

    private_path, public_path = generate_key_files(directory, kid)
    return JwtKeys(
        kid,
        private_path,
        public_path,
        generate_secret_file(directory, f"vault-{kid}"),
        generate_secret_file(directory, "vault-fingerprint"),
        generate_secret_file(directory, "internal-token"),
        generate_secret_file(directory, "edge-assertion"),
    )


@pytest.fixture(scope="session")
def jwt_keys(tmp_path_factory: pytest.TempPathFactory) -> JwtKeys:
    return make_keys(tmp_path_factory.mktemp("keys"), "test-1")
