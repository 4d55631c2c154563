"""``python -m chaos run``: bring up a private stack, load it while faults hit it, drain,
check every invariant, report, tear the stack down (``--keep-stack`` leaves it up).

Exit status: 0 when every invariant held and every asked fault was injected and
recovered from; 1 otherwise; 2 when the run itself could not be carried out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from chaos import checks, report, scan
from chaos.client import Client
from chaos.faults import Injector, schedule
from chaos.load import run_load
from chaos.plan import make_plan
from chaos.procs import Processes
from chaos.stack import ROOT, ChaosStack, StackSettings

MARKER = ".chaos-stack"  # only a directory holding this file is ever wiped


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n", 1)[0])
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="one chaos run",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=__doc__,
    )
    run.add_argument("--payments", type=int, default=10_000, help="payments to submit")
    run.add_argument("--seed", type=int, default=None, help="seed (default: random, printed)")
    run.add_argument("--faults", type=int, default=30, help="faults to inject")
    run.add_argument("--drain-s", type=float, default=120.0, help="drain time after the last fault")
    run.add_argument("--rate", type=float, default=12.0, help="payments started per second")
    run.add_argument("--users", type=int, default=None, help="users (default payments/40, 20..300)")
    run.add_argument("--retry-share", type=float, default=0.10, help="share of requests retried")
    run.add_argument("--data-dir", type=Path, default=ROOT / ".data-chaos", help="stack data dir")
    run.add_argument("--ports-offset", type=int, default=0, help="added to every port")
    run.add_argument(
        "--report", type=Path, default=None, help="JSON report (default DATA/chaos-report.json)"
    )
    run.add_argument(
        "--gateway-timeout-s", type=int, default=25, help="callback deadline per dispatch"
    )
    run.add_argument(
        "--dispatch-attempts", type=int, default=3, help="dispatches before gateway_timeout"
    )
    run.add_argument("--keep-stack", action="store_true", help="leave the stack running afterwards")
    run.add_argument(
        "--print-schedule", action="store_true", help="print the fault schedule and exit"
    )
    return top


class Logger:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        line = f"[chaos {stamp} +{time.monotonic() - self.t0:6.1f}s] {message}"
        self.lines.append(line)
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def fresh_data_dir(path: Path) -> None:
    if path.exists():
        if not (path / MARKER).exists() and any(path.iterdir()):
            raise SystemExit(f"{path} exists and is not a chaos data dir ({MARKER} missing)")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("data of a chaos run; wiped by the next one\n")


async def drain(pool: asyncpg.Pool, user_ids: list[str], drain_s: float, log: Logger) -> float:
    started = time.monotonic()
    while True:
        left = await checks.unfinished(pool, user_ids)
        waited = time.monotonic() - started
        if left == 0 or waited >= drain_s:
            log(f"drain: {left} payments not final after {waited:.0f}s")
            return waited
        log(f"drain: {left} payments not final yet ({waited:.0f}s)")
        await asyncio.sleep(min(5.0, max(0.5, drain_s - waited)))


async def run(args: argparse.Namespace) -> int:
    log = Logger()
    commit = report.git_commit()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    users = args.users or max(20, min(300, args.payments // 40))
    load_s = args.payments / args.rate
    faults = schedule(seed, args.faults, load_s)
    log(f"seed {seed}: {args.payments} payments by {users} users at {args.rate}/s (~{load_s:.0f}s)")
    log(f"fault schedule ({len(faults)}):")
    for fault in faults:
        log("  " + fault.describe())
    if args.print_schedule:
        return 0

    data_dir = args.data_dir.resolve()
    settings = StackSettings(
        data_dir=data_dir,
        ports_offset=args.ports_offset,
        gateway_timeout_s=args.gateway_timeout_s,
        dispatch_attempts_max=args.dispatch_attempts,
    )
    stack = ChaosStack(settings, log)
    if (data_dir / "run").exists():
        await stack.down()  # a stack a killed earlier run left behind
    fresh_data_dir(data_dir)
    report_path = args.report or data_dir / "chaos-report.json"
    timings: dict[str, float] = {}
    client: Client | None = None
    fault_task: asyncio.Task[None] | None = None
    injector: Injector | None = None
    try:
        t = time.monotonic()
        await stack.up()
        timings["stack_up"] = time.monotonic() - t
        procs = Processes(stack)
        client = Client(stack.gateway_target, run_id=f"{seed}-{int(time.time())}")
        t = time.monotonic()
        await client.create_users(users)
        timings["users"] = time.monotonic() - t
        log(f"users: {users} registered and logged in in {timings['users']:.0f}s")

        ops = make_plan(seed, args.payments, users, args.retry_share)
        injector = Injector(procs, faults, log)
        load_started = time.time()
        t = time.monotonic()
        fault_task = asyncio.create_task(injector.run(load_started))
        records = await run_load(client, ops, args.rate, data_dir / "chaos-records.jsonl", log)
        timings["load"] = time.monotonic() - t
        await fault_task
        timings["load_and_faults"] = time.monotonic() - t
        log(
            f"faults: {sum(r.ok for r in injector.records)} of {len(faults)} injected and recovered"
        )

        user_ids = [u.user_id for u in client.users]
        pool = await asyncpg.create_pool(stack.pg_dsn, min_size=1, max_size=4)
        try:
            timings["drain"] = await drain(pool, user_ids, args.drain_s, log)
            api_view: dict[str, Any] = {}
            for user in client.users:
                api_view |= await client.list_payments(user)
            findings = checks.Findings()
            payments = await checks.fetch_payments(pool, user_ids)
            checks.check_client_record(findings, records, payments, api_view)
            await checks.check_ledger(findings, pool, payments)
            await checks.check_callbacks(findings, pool, payments)
            await scan.check_kafka(findings, stack, pool, list(payments))
        finally:
            await pool.close()
        await scan.scan_card_data(findings, stack)
        findings.facts["relogins"] = sum(u.relogins for u in client.users)
        answers = Counter(a["code"] for rec in records for a in rec.answers)
        options = {k: str(v) for k, v in vars(args).items()} | {
            "seed": str(seed),
            "users": str(users),
        }
        result = report.build(
            args=options,
            faults_asked=args.faults,
            faults=injector.records,
            findings=findings,
            timings=timings,
            answers=answers,
            commit=commit,
        )
        report.write(result, report_path)
        report.print_table(result, findings)
        log(f"report: {report_path}")
        return 0 if report.passed(result) else 1
    finally:
        if fault_task is not None and not fault_task.done():
            fault_task.cancel()  # interrupted: no fault is injected into a stack going down
            await asyncio.gather(fault_task, return_exceptions=True)
        if client is not None:
            await client.close()
        if args.keep_stack:
            log(f"stack left running (--keep-stack); stop it with: PAYRAIL_DATA_DIR={data_dir} ...")
            log("  deploy/local/services.sh down && deploy/local/stack.sh down (same environment)")
        else:
            with contextlib.suppress(Exception):
                await asyncio.shield(stack.down())


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":
        try:
            return asyncio.run(run(args))
        except KeyboardInterrupt:
            sys.stderr.write("[chaos] interrupted; the stack was stopped\n")
            return 2
        except (RuntimeError, OSError) as exc:
            sys.stderr.write(f"[chaos] the run could not be completed: {exc}\n")
            return 2
    return 2
