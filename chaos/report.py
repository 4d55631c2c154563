"""The end of a run: a table on stdout and the same facts as a JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.checks import Findings
from chaos.faults import KINDS, FaultRecord
from chaos.stack import ROOT

EXAMPLES_MAX = 5  # violations printed per invariant (the JSON report keeps 200)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def build(
    *,
    args: dict[str, Any],
    faults_asked: int,
    faults: list[FaultRecord],
    findings: Findings,
    timings: dict[str, float],
    answers: Counter[str],
    commit: str,
) -> dict[str, Any]:
    by_kind = Counter(r.fault.kind for r in faults if r.ok)
    failed_faults = [r.as_json() for r in faults if not r.ok]
    violations = {k: len(v) for k, v in findings.violations.items()}
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,  # taken when the run started: the code the services ran
        "args": args,
        "faults_asked": faults_asked,
        "faults_injected": sum(by_kind.values()),
        "faults_by_kind": {k: by_kind.get(k, 0) for k in KINDS},
        "faults_not_recovered": failed_faults,
        "faults": [r.as_json() for r in faults],
        "payments_by_outcome": dict(sorted(findings.outcomes.items())),
        "client_answers": dict(sorted(answers.items())),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "invariants": violations,
        "violations_total": sum(violations.values()),
        "violation_examples": {k: v[:200] for k, v in findings.violations.items() if v},
        "facts": findings.facts,
    }


def passed(report: dict[str, Any]) -> bool:
    return (
        report["violations_total"] == 0
        and report["faults_injected"] >= report["faults_asked"]
        and not report["faults_not_recovered"]
    )


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def print_table(report: dict[str, Any], findings: Findings) -> None:
    line = "-" * 86
    _out(line)
    _out(f"chaos run {report['date']} at {report['commit']}")
    _out(line)
    _out(f"faults injected: {report['faults_injected']} of {report['faults_asked']} asked")
    for kind, n in report["faults_by_kind"].items():
        _out(f"  {kind:<75} {n:>6}")
    for bad in report["faults_not_recovered"]:
        _out(f"  NOT RECOVERED #{bad['index']} {bad['kind']} {bad['target']}: {bad['detail']}")
    _out("payments by outcome:")
    for outcome, n in report["payments_by_outcome"].items():
        _out(f"  {outcome:<75} {n:>6}")
    _out("client answers (every attempt):")
    for code, n in report["client_answers"].items():
        _out(f"  {code:<75} {n:>6}")
    _out("timings (s): " + ", ".join(f"{k} {v}" for k, v in report["timings_s"].items()))
    _out("invariants (violations):")
    for name, n in report["invariants"].items():
        _out(f"  {'FAIL' if n else 'ok  '} {name:<70} {n:>6}")
        for example in findings.violations[name][:EXAMPLES_MAX]:
            _out(f"         {example}")
    _out(line)
    verdict = "PASS" if passed(report) else "FAIL"
    _out(f"{verdict}: {report['violations_total']} violations, {report['faults_injected']} faults")


def write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
