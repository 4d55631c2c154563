"""``python -m bench ab``: CPU per settled payment of two commits, back to back.

For the base commit, then the head commit (HEAD by default), on this machine:

1. ``git worktree add --detach`` it under ``--dir`` (``.data/bench/ab/<side>-<commit>``);
2. bring its platform up with its own ``make up`` (its own data dir inside the worktree,
   the default ports of ``make up``, the benchmark's service settings), using this
   checkout's Python environment and tools (``VENV=``, ``TOOLS=``; ``-o`` keeps make from
   reinstalling the venv) and the worktree's own code (``PYTHONPATH=<wt>:<wt>/generated``);
3. run this checkout's benchmark against it, the cpu phase only (``--only cpu``: the same
   offered rate, duration and users on both sides), CPU attributed through the worktree's
   pid files;
4. ``make down`` there.

Then it prints ``python -m bench compare base.json head.json``. The stack of ``make up``
in this checkout is stopped first (the ports are the same) and started again at the end
when it was running. The test stacks (``make test``, other ports and data dirs) are never
touched. Each side starts from empty data, so neither pays for the other's history.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report

ROOT = Path(__file__).resolve().parents[1]
# The services' settings for a benchmark, as the Makefile's BENCH_ENV sets them (keep the
# two in step): risk limits no benchmark trips, one worker per service.
SERVICE_ENV = {
    "PAYRAIL_RISK_VELOCITY_MAX_PER_CARD": "100000000",
    "PAYRAIL_RISK_VELOCITY_MAX_PER_USER": "100000000",
    "PAYRAIL_RISK_AMOUNT_FACTOR": "100000000",
    "PAYRAIL_REGISTER_MAX_PER_PEER": "100000",
    "PAYRAIL_GATEWAY_WORKERS": "1",
    "PAYRAIL_PAYMENT_WORKERS": "1",
}
# Set by this checkout's Makefile for its own stack; the worktree's Makefile sets its own.
_STACK_VARS = ("PAYRAIL_DATA_DIR", "PAYRAIL_TOOLS_DIR", "PYTHON", "PYTHONPATH")


def add_parser(sub: Any) -> None:
    ab = sub.add_parser(
        "ab",
        help="CPU per settled payment: a base commit, then the head, back to back",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ab.add_argument("--base", required=True, help="the commit to compare against (d99f874)")
    ab.add_argument("--head", default="HEAD", help="the commit measured second (%(default)s)")
    ab.add_argument("--rate", type=float, default=30.0, help="offered rate (%(default)s)")
    ab.add_argument("--duration-s", type=float, default=60.0, help="measured (%(default)s)")
    ab.add_argument(
        "--warmup-s",
        type=float,
        default=30.0,
        help="not measured: a fresh Kafka JVM burns CPU compiling for a while (%(default)s)",
    )
    ab.add_argument("--users", type=int, default=50, help="(%(default)s)")
    ab.add_argument(
        "--dir", type=Path, default=ROOT / ".data/bench/ab", help="worktrees and reports"
    )
    ab.add_argument("--keep", action="store_true", help="keep the worktrees (and their data)")
    ab.add_argument(
        "--no-restore",
        dest="restore",
        action="store_false",
        help="leave this checkout's make-up stack down afterwards",
    )
    ab.add_argument(
        "--bench-args", default="", help="more flags for both `bench run`s (quoted, one string)"
    )
    ab.add_argument("--dry-run", action="store_true", help="print the commands only")


def _say(text: str) -> None:
    sys.stderr.write(f"[bench ab] {text}\n")
    sys.stderr.flush()


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def _listening(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def make_command(tree: Path, target: str) -> list[str]:
    """``make <target>`` in a worktree with this checkout's venv and tools, never
    reinstalling the venv (its editable install must keep pointing here)."""
    venv = ROOT / ".venv"
    return [
        "make",
        "--no-print-directory",
        "-C",
        str(tree),
        "-o",
        str(venv / ".installed"),
        f"VENV={venv}",
        f"TOOLS={ROOT / '.tools'}",
        target,
    ]


def tree_env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _STACK_VARS}
    for key, value in SERVICE_ENV.items():  # `make bench-ab` passes its BENCH_ENV
        env.setdefault(key, value)
    # The worktree's code first; this checkout's editable install would otherwise win for
    # the generated stubs (``payrail``).
    env["PYTHONPATH"] = f"{tree}:{tree / 'generated'}"
    return env


def bench_command(args: argparse.Namespace, tree: Path, out: Path, commit: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench",
        "run",
        "--only",
        "cpu",
        "--cpu-rate",
        f"{args.rate:g}",
        "--cpu-duration-s",
        f"{args.duration_s:g}",
        "--warmup-s",
        f"{args.warmup_s:g}",
        "--users",
        str(args.users),
        "--run-dir",
        str(tree / ".data/run"),
        "--out",
        str(out),
        "--commit",
        commit[:10],
        "--no-progress",
        *args.bench_args.split(),
    ]


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None, dry: bool) -> None:
    _say("$ " + " ".join(argv) + f"   (in {cwd})")
    if not dry:
        subprocess.run(argv, cwd=cwd, env=env, check=True)


def _side(args: argparse.Namespace, side: str, commit: str) -> Path:
    """One side: worktree, make up, bench, make down; returns its report."""
    tree: Path = args.dir / f"{side}-{commit[:10]}"
    out: Path = args.dir / f"reports-{side}"
    if tree.exists() and not args.dry_run:
        _remove_tree(tree)
    _run(
        ["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, env=None,
        dry=args.dry_run,
    )  # fmt: skip
    env = tree_env(tree)
    try:
        _run(make_command(tree, "up"), cwd=tree, env=env, dry=args.dry_run)
        _run(bench_command(args, tree, out, commit), cwd=ROOT, env=None, dry=args.dry_run)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _run(make_command(tree, "down"), cwd=tree, env=env, dry=args.dry_run)
    return out / "latest.json"


def _remove_tree(tree: Path) -> None:
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)


def main(args: argparse.Namespace) -> int:
    args.dir = args.dir.resolve()
    base = _git("rev-parse", "--verify", f"{args.base}^{{commit}}")
    head = _git("rev-parse", "--verify", f"{args.head}^{{commit}}")
    _say(f"base {base[:10]} ({args.base}), head {head[:10]} ({args.head}); {args.rate:g}/s")
    args.dir.mkdir(parents=True, exist_ok=True)
    was_up = _listening(50051) or _listening(5432)
    main_make = ["make", "--no-print-directory", "-C", str(ROOT)]
    reports: dict[str, Path] = {}
    started = time.monotonic()
    try:
        _say("stopping this checkout's make-up stack (the worktrees use the same ports)")
        _run([*main_make, "down"], cwd=ROOT, env=None, dry=args.dry_run)
        for side, commit in (("base", base), ("head", head)):
            reports[side] = _side(args, side, commit)
    finally:
        if not args.keep and not args.dry_run:
            for side, commit in (("base", base), ("head", head)):
                _remove_tree(args.dir / f"{side}-{commit[:10]}")
        if was_up and args.restore:
            _say("starting this checkout's make-up stack again")
            with contextlib.suppress(subprocess.CalledProcessError):
                _run([*main_make, "up"], cwd=ROOT, env=None, dry=args.dry_run)
    if args.dry_run:
        return 0
    a = json.loads(reports["base"].read_text())
    b = json.loads(reports["head"].read_text())
    lines = report.compare_lines(
        a,
        b,
        a_name=f"base {base[:10]} ({reports['base']})",
        b_name=f"head {head[:10]} ({reports['head']})",
    )
    print("\n".join(lines))  # noqa: T201 - the CLI's output
    _say(f"done in {(time.monotonic() - started) / 60:.1f} minutes")
    return 0
