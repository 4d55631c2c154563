"""The Go and TypeScript gateway SDKs' own test suites, run as part of `make test`.

Each suite recomputes docs/vectors/gateway-vectors.json (as tests/unit/gateway_sdk/
test_vectors.py does for Python), so an interoperability break in any of the three
implementations fails here. `make test` builds both SDKs first (`make sandboxes`); the
suites need no running infrastructure (tests/e2e/test_go_gateway.py and
test_ts_gateway.py run the sandboxes built on them against the real stack).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

SUITE_TIMEOUT_S = 600


# Where the Go toolchain is when it is not on PATH (the machine's own installation).
GO_FALLBACK = Path("/usr/local/go/bin/go")


def run_suite(cwd: Path, *argv: str) -> None:
    executable = shutil.which(argv[0])
    if executable is None and argv[0] == "go" and GO_FALLBACK.exists():
        executable = str(GO_FALLBACK)
    assert executable is not None, f"{argv[0]} is not installed (make sandboxes installs it)"
    result = subprocess.run(
        [executable, *argv[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
        check=False,
    )
    output = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, f"`{' '.join(argv)}` in {cwd.relative_to(ROOT)}:\n{output}"


@pytest.mark.parametrize("module", ["sdk/go", "sandbox_gateways/go"])
def test_go_vet(module: str) -> None:
    run_suite(ROOT / module, "go", "vet", "./...")


def test_go_sdk_suite() -> None:
    run_suite(ROOT / "sdk" / "go", "go", "test", "-count=1", "./...")


def test_typescript_sdk_suite() -> None:
    run_suite(ROOT / "sdk" / "ts", "npm", "test", "--silent")
