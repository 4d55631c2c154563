"""The chaos suite's smoke (CI): the same `python -m chaos run` as `make chaos`, small.

A few hundred payments and a handful of faults (at least one service kill, one Kafka
broker kill and one PostgreSQL crash-restart: the schedule puts those first) on a stack
of its own (ports offset by 100 from `make chaos`, data in .data-chaos-smoke), so a
regression in fault handling fails `make test`. Takes a few minutes; the full run is
`make chaos` (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.chaos_smoke

SMOKE_ARGS = [
    "--payments", "300",
    "--faults", "4",
    "--rate", "6",
    "--seed", "20261129",
    "--drain-s", "120",
    "--ports-offset", "100",
    "--data-dir", str(ROOT / ".data-chaos-smoke"),
]  # fmt: skip
SMOKE_TIMEOUT_S = 1200


def test_chaos_smoke_has_no_violations(tmp_path: Path) -> None:
    report_path = tmp_path / "chaos-report.json"
    result = subprocess.run(
        [sys.executable, "-m", "chaos", "run", *SMOKE_ARGS, "--report", str(report_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'generated'}"},
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    output = result.stdout[-6000:] + "\n" + result.stderr[-4000:]
    assert report_path.exists(), output
    report = json.loads(report_path.read_text())
    assert report["faults_injected"] >= 4, output
    kinds = report["faults_by_kind"]
    assert kinds["kill_service"] >= 1, kinds
    assert kinds["kill_broker"] >= 1, kinds
    assert kinds["pg_crash"] >= 1, kinds
    assert report["violations_total"] == 0, output
    assert result.returncode == 0, output
