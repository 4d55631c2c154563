"""Quality gates run as ordinary tests: contract lint, codegen drift, ruff, mypy."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools import codegen


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    fresh = codegen.generate(tmp_path)
    assert fresh, "codegen produced nothing"
    fresh_rel = {p.relative_to(tmp_path) for p in fresh}
    checked_in = {
        p.relative_to(ROOT / "generated")
        for p in (ROOT / "generated" / "payrail").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert fresh_rel == checked_in, "generated/ has missing or extra files: run `make gen`"
    drifted = [
        str(rel)
        for rel in sorted(fresh_rel)
        if not filecmp.cmp(tmp_path / rel, ROOT / "generated" / rel, shallow=False)
    ]
    assert drifted == [], f"generated/ is stale for {drifted}: run `make gen`"


def test_go_and_typescript_code_matches_protos(tmp_path: Path) -> None:
    """buf.gen.yaml's output (generated/go, generated/ts) is what the protos give today."""
    fresh = codegen.generate_other_languages(tmp_path)
    assert any(p.suffix == ".go" for p in fresh), "buf generate wrote no Go"
    assert any(p.name.endswith("_pb.js") for p in fresh), "buf generate wrote no JavaScript"
    fresh_rel = {p.relative_to(tmp_path) for p in fresh}
    checked_in = {
        p.relative_to(ROOT)
        for tree in codegen.OTHER_LANGUAGE_TREES
        for p in (ROOT / tree).rglob("*")
        if p.is_file()
    }
    assert fresh_rel == checked_in, (
        "generated/go or generated/ts has missing or extra files: run `make gen`"
    )
    drifted = [
        str(rel)
        for rel in sorted(fresh_rel)
        if not filecmp.cmp(tmp_path / rel, ROOT / rel, shallow=False)
    ]
    assert drifted == [], f"generated/go or generated/ts is stale for {drifted}: run `make gen`"


def test_generated_files_are_marked_generated() -> None:
    for path in (ROOT / "generated" / "payrail").rglob("*.py*"):
        if "__pycache__" not in path.parts:
            assert path.read_text().startswith(codegen.HEADER), path


def test_buf_lint(buf: str) -> None:
    assert_ok(run(buf, "lint"))


def test_buf_format(buf: str) -> None:
    assert_ok(run(buf, "format", "--diff", "--exit-code"))


# Findings that are not breaks. Adopting go_package: every file had none until issue 12
# (no Go code could depend on it), so going from unset to set breaks no consumer; a
# change of a go_package that was set is still caught.
# Moving go_package from github.com/payrail/payrail/gen/go/... to .../generated/go/...
# (issue 13): no Go code was generated or published under gen/go, so nothing imported it.
_NOT_BREAKING = (
    ("FILE_SAME_GO_PACKAGE", 'changed from "" to'),
    ("FILE_SAME_GO_PACKAGE", 'changed from "github.com/payrail/payrail/gen/go/'),
)


def test_buf_breaking_against_previous_commit(buf: str, tmp_path: Path) -> None:
    """The compiled contracts (files by import path) against the previous commit's.

    Images are compared rather than modules, so moving a file between modules of the
    workspace without changing its import path (PaymentOpsService to protos-internal/)
    is no break, while everything in every file stays protected.
    """
    has_parent = run("git", "rev-parse", "--verify", "--quiet", "HEAD~1^{commit}")
    if has_parent.returncode != 0:
        pytest.skip("no previous commit to compare the protos with")
    previous_protos = run("git", "ls-tree", "--name-only", "HEAD~1", "protos")
    if not previous_protos.stdout.strip():
        pytest.skip("the previous commit has no protos")
    current, previous = tmp_path / "current.binpb", tmp_path / "previous.binpb"
    assert_ok(run(buf, "build", "-o", str(current)))
    assert_ok(run(buf, "build", ".git#ref=HEAD~1", "-o", str(previous)))
    result = run(
        buf, "breaking", str(current), "--against", str(previous), "--error-format", "json"
    )
    findings = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    breaks = [
        f
        for f in findings
        if not any(f["type"] == kind and text in f["message"] for kind, text in _NOT_BREAKING)
    ]
    assert breaks == [], "\n".join(f"{f.get('path', '')}: {f['message']}" for f in breaks)
    assert result.returncode == 0 or findings, result.stderr


def test_ruff_lint() -> None:
    assert_ok(run(sys.executable, "-m", "ruff", "check", "."))


def test_ruff_format() -> None:
    assert_ok(run(sys.executable, "-m", "ruff", "format", "--check", "."))


def test_mypy() -> None:
    assert_ok(run(sys.executable, "-m", "mypy"))
