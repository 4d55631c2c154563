"""A few seconds of the benchmark against real services: it must keep working (CI).

This is not a benchmark: the rates are tiny and the figures only have to be sane.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, StackEnv
from tests.e2e.conftest import Running

pytestmark = pytest.mark.e2e


def test_a_short_run_writes_a_sane_report_and_chart(
    services: list[Running], stack: StackEnv, tmp_path: Path
) -> None:
    gateway = next(svc for svc in services if svc.name == "gateway")
    # CreatePayment alone stops the pipeline through a services command; here it pauses
    # the fixture's processes (SIGSTOP) and resumes them (SIGCONT).
    pipeline = ("consumer", "insights", "sandbox_json", "sandbox_soap")
    for svc in services:
        if svc.name in pipeline:
            (tmp_path / f"{svc.name}.pid").write_text(str(svc.process.pid))
    control = tmp_path / "services.sh"
    control.write_text(
        "#!/bin/sh\n"
        f'pid=$(cat "{tmp_path}/$2.pid")\n'
        'case "$1" in stop) kill -STOP "$pid" ;; start) kill -CONT "$pid" ;; *) exit 2 ;; esac\n'
    )
    control.chmod(0o755)
    out = tmp_path / "bench"
    docs = tmp_path / "performance.md"
    docs.write_text(
        "# perf\n<!-- bench:figures:begin (rendered by `python -m bench docs`; do not edit) -->\n"
        "old\n<!-- bench:figures:end -->\ntail\n"
    )
    result = subprocess.run(
        [
            sys.executable, "-m", "bench", "run",
            "--target", f"127.0.0.1:{gateway.port}",
            "--pg-dsn", stack.pg_dsn,
            "--kafka", stack.kafka_bootstrap,
            "--users", "3", "--channels", "2",
            "--no-step", "--rate", "20", "--duration-s", "3", "--warmup-s", "1",
            "--e2e-rate", "0", "--no-overload",
            "--echo-start", "200", "--step-max", "300", "--step-duration-s", "2",
            "--cpu-rate", "10", "--cpu-duration-s", "2", "--cpu-idle-s", "1",
            "--settled-start", "8", "--settled-max", "10", "--settled-step-s", "2",
            "--settled-duration-s", "2",
            "--settled-retries", "0", "--settled-step-retries", "0",
            "--alone-start", "20", "--alone-max", "25", "--services-cmd", str(control),
            "--pipeline", ",".join(pipeline), "--alone-admission", "keep",
            "--pgbench-clients", "2", "--pgbench-duration-s", "2",
            "--quiet-timeout-s", "0", "--settle-timeout-s", "20",
            "--run-dir", str(tmp_path / "no-run-dir"),
            "--out", str(out), "--docs", str(docs), "--no-progress",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'generated'}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    report = json.loads((out / "latest.json").read_text())
    png = (out / "latest.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000
    assert list(out.glob("report-*.json"))
    assert list(out.glob("latency-*.png"))

    sustained = next(p for p in report["phases"] if p["name"] == "sustained")
    assert sustained["ok"] > 0
    assert sustained["codes"].get("OK", 0) == sustained["ok"]
    assert 0 < sustained["latency"]["p50_ms"] <= sustained["latency"]["p99_ms"] < 5000
    assert sustained["e2e_completed"] > 0, "no payment seen COMPLETED on payments.status"
    assert 0 < sustained["e2e"]["p50_ms"] < 20_000
    assert report["echo"]["sustainable_rate"] > 0
    assert report["pgbench"]["tps"] > 0
    assert report["environment"]["postgres"]["fsync"] in ("on", "off")
    assert "payrail benchmark" in result.stdout

    # Issue 15's three figures, each with its ratio and verdict.
    cpu = report["cpu_per_payment"]
    assert cpu["offered_rate"] == 10
    assert cpu["payments"] > 0, "no payment COMPLETED in the cpu phase's window"
    assert 0 < cpu["total_ms_per_payment"] < 10_000
    # No run dir here: the fixture's services count as "other", the generator as itself.
    assert "load generator" in cpu["ms_per_payment"]
    assert cpu["idle"]["wall_s"] >= 0.9
    settled = report["settled"]
    assert settled["steps"], "the settled search ran no step"
    assert all("why" in step for step in settled["steps"])
    assert len(settled["confirmations"]) <= 1
    alone = report["create_alone"]
    assert alone["pipeline_stopped"] == list(pipeline)
    assert alone["steps"], "CreatePayment alone ran no step"
    figures = [row["figure"] for row in report["issue_targets"]]
    assert figures == [
        "settled throughput",
        "CPU per settled payment",
        "CreatePayment alone (pipeline stopped)",
    ]
    assert "issue 15 targets" in result.stdout
    assert "CPU per settled payment at 10/s offered" in result.stdout
    # The pipeline was resumed: nothing is left stopped.
    for svc in services:
        if svc.name in pipeline:
            state = Path(f"/proc/{svc.process.pid}/stat").read_text().split(") ")[1][0]
            assert state != "T", f"{svc.name} is still stopped"
    rendered = docs.read_text()
    assert "old" not in rendered
    assert "### Targets (issue 15: ratios to this run's echo baseline)" in rendered
    assert rendered.endswith("tail\n")
