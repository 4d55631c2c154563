"""``python -m bench``: run the benchmark, serve the echo baseline, refresh the docs.

    python -m bench run [flags]          the whole benchmark against a running platform
    python -m bench docs REPORT.json     re-render docs/performance.md from a report
    python -m bench compare A.json B.json   CPU per payment of two reports side by side
    python -m bench ab --base REV        A/B of CPU per payment: REV, then HEAD, back to back
    python -m bench echo-server          (internal) the echo baseline's server process

Loads only ever target 127.0.0.1: ``--target`` and the DSN/bootstrap must be loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from bench import ab, echo, report
from bench.runner import PHASES, Bench, BenchConfig, say

DEFAULT_OUT = Path(".data/bench")
DEFAULT_DOCS = Path("docs/performance.md")


def _loopback(host_port: str, what: str) -> None:
    host = host_port.rsplit(":", 1)[0].strip("[]")
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        raise SystemExit(f"{what}: cannot resolve {host!r}: {exc}") from None
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise SystemExit(f"{what} must be a loopback address (127.0.0.1), got {host_port!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = BenchConfig()

    run = sub.add_parser("run", help="run the benchmark against a running platform")
    env = os.environ.get
    run.add_argument(
        "--target",
        default=env("PAYRAIL_BENCH_TARGET", d.target),
        help="public endpoint (%(default)s)",
    )
    run.add_argument(
        "--pg-dsn", default=env("PAYRAIL_PG_DSN", d.pg_dsn), help="for backlog and pgbench"
    )
    run.add_argument(
        "--kafka",
        default=env("PAYRAIL_KAFKA_BOOTSTRAP", d.kafka_bootstrap),
        help="for end-to-end latency (%(default)s)",
    )
    run.add_argument(
        "--users", type=int, default=d.users, help="accounts, each its own token (%(default)s)"
    )
    run.add_argument(
        "--channels", type=int, default=d.channels, help="client connections (%(default)s)"
    )
    run.add_argument(
        "--timeout-s", type=float, default=d.timeout_s, help="deadline per call (%(default)s)"
    )
    run.add_argument(
        "--warmup-s", type=float, default=d.warmup_s, help="discarded per phase (%(default)s)"
    )
    run.add_argument(
        "--only",
        default=None,
        help=f"run only these phases, comma-separated, of: {','.join(PHASES)}",
    )
    run.add_argument("--no-sustained", dest="sustained", action="store_false")
    run.add_argument("--rate", type=float, default=None, help="sustained rate (default: step)")
    run.add_argument(
        "--duration-s", type=float, default=d.duration_s, help="sustained run (%(default)s)"
    )
    run.add_argument("--no-step", dest="step", action="store_false", help="skip the search")
    run.add_argument(
        "--step-start", type=float, default=d.step_start_rate, help="first rate (%(default)s)"
    )
    run.add_argument(
        "--step-factor", type=float, default=d.step_factor, help="rate growth (%(default)s)"
    )
    run.add_argument(
        "--step-duration-s", type=float, default=d.step_duration_s, help="per step (%(default)s)"
    )
    run.add_argument(
        "--step-max", type=float, default=d.step_rate_max, help="highest rate (%(default)s)"
    )
    run.add_argument(
        "--p99-limit-ms", type=float, default=d.p99_limit_ms, help="step pass (%(default)s)"
    )
    run.add_argument(
        "--e2e-rate", type=float, default=d.e2e_rate, help="0 skips the e2e run (%(default)s)"
    )
    run.add_argument("--e2e-duration-s", type=float, default=d.e2e_duration_s, help="(%(default)s)")
    run.add_argument(
        "--cpu-rate",
        type=float,
        default=d.cpu_rate,
        help="offered rate of the CPU-per-settled-payment phase; 0 skips it (%(default)s)",
    )
    run.add_argument("--cpu-duration-s", type=float, default=d.cpu_duration_s, help="(%(default)s)")
    run.add_argument(
        "--cpu-idle-s",
        type=float,
        default=d.cpu_idle_s,
        help="before the cpu phase: CPU with no load for this long; 0 skips (%(default)s)",
    )
    run.add_argument(
        "--cpu-baseline",
        type=Path,
        default=None,
        help="the A/B base's report (same --cpu-rate): the CPU target as a ratio to it",
    )
    run.add_argument("--no-settled", dest="settled", action="store_false")
    run.add_argument(
        "--settled-start",
        type=float,
        default=d.settled_start_rate,
        help="settled search: first rate (%(default)s)",
    )
    run.add_argument(
        "--settled-max",
        type=float,
        default=d.settled_rate_max,
        help="settled search: highest rate (%(default)s)",
    )
    run.add_argument(
        "--settled-step-s",
        type=float,
        default=d.settled_step_duration_s,
        help="settled search: per step (%(default)s)",
    )
    run.add_argument(
        "--settled-step-retries",
        type=int,
        default=d.settled_step_retries,
        help="settled search: runs of a failed step again before it counts (%(default)s)",
    )
    run.add_argument(
        "--settled-duration-s",
        type=float,
        default=d.settled_duration_s,
        help="settled confirmation run; the target is 5 minutes (%(default)s)",
    )
    run.add_argument(
        "--settled-retries",
        type=int,
        default=d.settled_retries,
        help="confirmations one step lower after a failed one (%(default)s)",
    )
    run.add_argument(
        "--settled-e2e-p99-ms",
        type=float,
        default=d.settled_e2e_p99_ms,
        help="settled: accepted->COMPLETED p99 bound (%(default)s)",
    )
    run.add_argument("--no-create-alone", dest="create_alone", action="store_false")
    run.add_argument(
        "--alone-start",
        type=float,
        default=d.alone_start_rate,
        help="CreatePayment alone: first rate (%(default)s)",
    )
    run.add_argument(
        "--alone-max",
        type=float,
        default=d.alone_rate_max,
        help="CreatePayment alone: highest rate (%(default)s)",
    )
    run.add_argument(
        "--pipeline",
        default=",".join(d.pipeline),
        help="programs stopped for CreatePayment alone (%(default)s)",
    )
    run.add_argument(
        "--services-cmd",
        default=d.services_cmd,
        help="stops/starts them: CMD stop|start NAME, CMD down|up (%(default)s)",
    )
    run.add_argument(
        "--alone-admission",
        choices=("restart", "keep"),
        default=d.alone_admission,
        help="restart: services down/up with admission control out of reach around the phase "
        "(payments stay PENDING while the pipeline is stopped); keep: as they run "
        "(%(default)s)",
    )
    run.add_argument("--no-overload", dest="overload", action="store_false")
    run.add_argument("--overload-s", type=float, default=d.overload_s, help="at 1.5x (%(default)s)")
    run.add_argument("--recovery-s", type=float, default=d.recovery_s, help="at 0.5x (%(default)s)")
    run.add_argument("--no-echo", dest="echo", action="store_false")
    run.add_argument(
        "--echo-start", type=float, default=d.echo_start_rate, help="first rate (%(default)s)"
    )
    run.add_argument("--no-pgbench", dest="pgbench", action="store_false")
    run.add_argument("--pgbench-clients", type=int, default=d.pgbench_clients, help="(%(default)s)")
    run.add_argument(
        "--pgbench-duration-s", type=int, default=d.pgbench_duration_s, help="(%(default)s)"
    )
    run.add_argument(
        "--settle-timeout-s",
        type=float,
        default=d.settle_timeout_s,
        help="wait for end-to-end completions after a phase (%(default)s)",
    )
    run.add_argument(
        "--quiet-timeout-s",
        type=float,
        default=d.quiet_timeout_s,
        help="wait up to this long before each phase for the pipeline to drain (0: no wait;"
        " %(default)s)",
    )
    run.add_argument(
        "--run-dir", default=d.run_dir, help="the stack's pid files (CPU per component)"
    )
    run.add_argument(
        "--commit", default=None, help="the platform's commit for the report (this checkout's)"
    )
    run.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report directory (%(default)s)")
    run.add_argument(
        "--docs", type=Path, default=None, help="also refresh this performance.md's figures"
    )
    run.add_argument("--no-progress", dest="progress", action="store_false")

    docs = sub.add_parser("docs", help="render a report's figures into docs/performance.md")
    docs.add_argument("report", type=Path)
    docs.add_argument("--docs", type=Path, default=DEFAULT_DOCS)

    cmp = sub.add_parser("compare", help="CPU per payment of two reports, per component, B/A")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)

    ab.add_parser(sub)

    srv = sub.add_parser("echo-server", help="(internal) the echo baseline server")
    srv.add_argument("--port", type=int, default=0)
    srv.add_argument("--response-bytes", type=int, default=200)
    return parser


def _only(args: argparse.Namespace) -> None:
    """--only: every phase not named is switched off."""
    if args.only is None:
        return
    wanted = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = wanted - set(PHASES)
    if unknown:
        raise SystemExit(f"--only: no phase {sorted(unknown)}; the phases are {','.join(PHASES)}")
    for name, attr in (
        ("echo", "echo"),
        ("pgbench", "pgbench"),
        ("step", "step"),
        ("sustained", "sustained"),
        ("settled", "settled"),
        ("overload", "overload"),
        ("alone", "create_alone"),
    ):
        if name not in wanted:
            setattr(args, attr, False)
    if "cpu" not in wanted:
        args.cpu_rate = 0.0
    if "e2e" not in wanted:
        args.e2e_rate = 0.0


def _config(args: argparse.Namespace) -> BenchConfig:
    _loopback(args.target, "--target")
    _loopback(args.kafka.split(",")[0], "--kafka")
    _only(args)
    if args.settled and args.settled_duration_s <= 0:
        raise SystemExit("--settled-duration-s must be positive (the confirmation run)")
    return BenchConfig(
        target=args.target,
        pg_dsn=args.pg_dsn,
        kafka_bootstrap=args.kafka,
        users=args.users,
        channels=args.channels,
        timeout_s=args.timeout_s,
        warmup_s=args.warmup_s,
        sustained=args.sustained,
        rate=args.rate,
        duration_s=args.duration_s,
        step=args.step,
        step_start_rate=args.step_start,
        step_factor=args.step_factor,
        step_duration_s=args.step_duration_s,
        step_rate_max=args.step_max,
        p99_limit_ms=args.p99_limit_ms,
        e2e_rate=args.e2e_rate,
        e2e_duration_s=args.e2e_duration_s,
        overload=args.overload,
        overload_s=args.overload_s,
        recovery_s=args.recovery_s,
        echo=args.echo,
        echo_start_rate=args.echo_start,
        pgbench=args.pgbench,
        pgbench_clients=args.pgbench_clients,
        pgbench_duration_s=args.pgbench_duration_s,
        cpu_rate=args.cpu_rate,
        cpu_duration_s=args.cpu_duration_s,
        cpu_idle_s=args.cpu_idle_s,
        settled=args.settled,
        settled_start_rate=args.settled_start,
        settled_rate_max=args.settled_max,
        settled_step_duration_s=args.settled_step_s,
        settled_step_retries=args.settled_step_retries,
        settled_duration_s=args.settled_duration_s,
        settled_retries=args.settled_retries,
        settled_e2e_p99_ms=args.settled_e2e_p99_ms,
        create_alone=args.create_alone,
        alone_start_rate=args.alone_start,
        alone_rate_max=args.alone_max,
        pipeline=tuple(p.strip() for p in args.pipeline.split(",") if p.strip()),
        services_cmd=args.services_cmd,
        alone_admission=args.alone_admission,
        settle_timeout_s=args.settle_timeout_s,
        quiet_timeout_s=args.quiet_timeout_s,
        progress=args.progress,
        run_dir=args.run_dir,
        commit=args.commit,
    )


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = args.out / f"report-{stamp}.json"
    png_path = args.out / f"latency-{stamp}.png"
    baseline = None
    if args.cpu_baseline is not None:
        baseline = report.cpu_baseline(
            json.loads(args.cpu_baseline.read_text()), str(args.cpu_baseline)
        )
    say(f"writing {json_path} and {png_path}")
    run = asyncio.run(Bench(config).execute())
    if baseline is not None:
        run.results["cpu_baseline"] = baseline
    doc = report.build(run)
    report.write_json(doc, json_path)
    report.write_chart(doc, png_path)
    shutil.copyfile(json_path, args.out / "latest.json")
    shutil.copyfile(png_path, args.out / "latest.png")
    print("\n".join(report.summary_lines(doc)))  # noqa: T201 - the CLI's output
    print(f"\nreport: {json_path}\nchart:  {png_path}")  # noqa: T201
    if args.docs is not None:
        report.update_docs(doc, args.docs, json_name=str(json_path), png_name=str(png_path))
        print(f"docs:   {args.docs} updated")  # noqa: T201
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "echo-server":
        asyncio.run(echo.serve(args.port, args.response_bytes))
        return 0
    if args.command == "compare":
        a = json.loads(args.a.read_text())
        b = json.loads(args.b.read_text())
        lines = report.compare_lines(a, b, a_name=str(args.a), b_name=str(args.b))
        print("\n".join(lines))  # noqa: T201 - the CLI's output
        return 0
    if args.command == "ab":
        return ab.main(args)
    if args.command == "docs":
        doc = json.loads(args.report.read_text())
        # Judged again with this version's rules (the raw figures are what they were).
        doc["ratios"] = report.ratios(doc)
        doc["targets"] = report.targets(doc)
        doc["issue_targets"] = report.issue_targets(doc)
        png = args.report.with_name(args.report.name.replace("report-", "latency-")).with_suffix(
            ".png"
        )
        report.update_docs(doc, args.docs, json_name=str(args.report), png_name=str(png))
        print(f"{args.docs} updated from {args.report}")  # noqa: T201
        return 0
    try:
        return _run(args)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
