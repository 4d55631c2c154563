"""The benchmark run: users, baselines, step search, sustained, end-to-end and overload.

Phases, in order (each can be switched off from the CLI):

1. users: register and log in ``users`` accounts (Argon2 runs here, never on the
   payment path), each with its own token.
2. echo baseline: the same generator against a bare grpc.aio echo server, stepping the
   rate up to find its highest rate with p99 within the limit (the ceiling).
3. pgbench baseline: the raw PostgreSQL cost of CreatePayment's transaction.
4. step: CreatePayment at rising rates until p99 passes the limit (or errors appear, or
   the achieved rate falls behind the offered one); the last passing rate, refined by one
   bisection, is the highest sustainable rate.
5. sustained: that rate (or ``--rate``) for ``duration_s``: CreatePayment latency,
   accepted -> COMPLETED latency, the outbox backlog every second, CPU per component.
6. e2e: ``e2e_rate`` (500/s by default) for ``e2e_duration_s``: the end-to-end target.
7. overload: 1.5x the sustainable rate, then half of it: shedding and recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import cpu
from bench.completions import CompletionTracker
from bench.echo import EchoServerProcess, EchoTarget
from bench.loadgen import Send, run_open_loop
from bench.payrail_target import PayrailTarget, create_request
from bench.pgbaseline import run_pgbench
from bench.quiet import pipeline_lag, wait_quiet
from bench.stats import PhaseRecorder, linear_slope, summarize_ms
from payrail.payments.v1 import payments_pb2

_BACKLOG_SQL = "SELECT count(*) FROM payments.outbox WHERE sent_time IS NULL"


@dataclass
class BenchConfig:
    """Everything a run needs; the CLI fills it from its flags."""

    target: str = "127.0.0.1:50051"
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/payrail"
    kafka_bootstrap: str = "127.0.0.1:9092"
    users: int = 200
    channels: int = 8
    timeout_s: float = 5.0
    warmup_s: float = 5.0
    # Sustained run; rate None = the step search's result.
    rate: float | None = None
    duration_s: float = 60.0
    # Step search.
    step: bool = True
    step_start_rate: float = 200.0
    step_factor: float = 1.25
    step_duration_s: float = 8.0
    step_rate_max: float = 5000.0
    p99_limit_ms: float = 50.0
    # End-to-end run at a fixed rate (0 = skip).
    e2e_rate: float = 500.0
    e2e_duration_s: float = 30.0
    # Overload: factor x sustainable for overload_s, then recovery_factor x for recovery_s.
    overload: bool = True
    overload_factor: float = 1.5
    overload_s: float = 20.0
    recovery_factor: float = 0.5
    recovery_s: float = 20.0
    # Baselines.
    echo: bool = True
    echo_start_rate: float = 1000.0
    pgbench: bool = True
    pgbench_clients: int = 16
    pgbench_duration_s: int = 10
    # How long to wait for the pipeline to finish the previous phase's payments.
    settle_timeout_s: float = 30.0
    progress: bool = True
    # Before each phase, wait up to this long for the previous phase's payments to clear
    # the pipeline (outbox drained, no consumer lag); 0 skips the wait.
    quiet_timeout_s: float = 120.0
    # Where the local stack keeps its pid files: CPU is attributed to those processes.
    run_dir: str = ".data/run"


@dataclass
class BenchRun:
    config: BenchConfig
    results: dict[str, Any] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    backlog: list[tuple[float, int, str]] = field(default_factory=list)
    lag: list[tuple[float, int, str]] = field(default_factory=list)


def say(text: str) -> None:
    sys.stderr.write(f"[bench] {text}\n")
    sys.stderr.flush()


def _passes(summary: dict[str, Any], limit_ms: float) -> tuple[bool, str]:
    p99 = summary["latency"]["p99_ms"]
    if summary["error_ratio"] > 0.001:
        return False, f"errors {summary['error_ratio']:.2%} {summary['codes']}"
    if math.isnan(p99) or p99 > limit_ms:
        return False, f"p99 {p99:.1f} ms > {limit_ms:g} ms"
    if summary["achieved_rate"] < 0.95 * summary["offered_rate"]:
        return False, f"achieved {summary['achieved_rate']:.0f}/s < 95% of offered"
    return True, f"p99 {p99:.1f} ms"


class Bench:
    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.run = BenchRun(config)
        self._tracker: CompletionTracker | None = None
        self._target: PayrailTarget | None = None
        self._pg: Any = None
        self._phase_name = ""
        self._loop_start = 0.0
        self._last_recorder: PhaseRecorder | None = None

    # ------------------------------------------------------------------ orchestration

    async def execute(self) -> BenchRun:
        cfg = self.config
        self._loop_start = asyncio.get_running_loop().time()
        self.run.results["environment"] = await self._environment()
        self.run.results["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if cfg.echo:
            await self._wait_quiet("echo")  # the ceiling, measured on an idle platform
            await self._echo_baseline()
        if cfg.pgbench:
            await self._wait_quiet("pgbench")
            say(f"pgbench baseline: {cfg.pgbench_clients} clients, {cfg.pgbench_duration_s} s")
            self.run.results["pgbench"] = await run_pgbench(
                cfg.pg_dsn, clients=cfg.pgbench_clients, duration_s=cfg.pgbench_duration_s
            )
            say(f"pgbench: {self.run.results['pgbench']['tps']} transactions/s")
        target = PayrailTarget(cfg.target, channels=cfg.channels, timeout_s=cfg.timeout_s)
        self._target = target
        tracker = CompletionTracker(cfg.kafka_bootstrap)
        self._tracker = tracker
        # A pool: the backlog sampler and the quiet check query concurrently.
        self._pg = await asyncpg.create_pool(cfg.pg_dsn, min_size=1, max_size=2, timeout=10)
        sampler = asyncio.create_task(self._sample_backlog())
        try:
            say(f"registering {cfg.users} users at {cfg.target} (Argon2: takes a while)")
            await target.create_users(cfg.users)
            await tracker.start()
            target.on_accepted = tracker.accepted
            sustainable = cfg.rate
            if cfg.step:
                found = await self._step_search()
                self.run.results["step_sustainable_rate"] = found
                if sustainable is None:
                    sustainable = found
            if sustainable is None or sustainable <= 0:
                sustainable = cfg.step_start_rate
            self.run.results["sustained_rate"] = sustainable
            await self._payrail_phase("sustained", sustainable, cfg.duration_s, cfg.warmup_s)
            if cfg.overload:
                await self._overload(sustainable)
            # Last: when the pipeline cannot keep up with this rate, the backlog it leaves
            # would otherwise be charged to the phases after it.
            if cfg.e2e_rate > 0:
                await self._payrail_phase("e2e", cfg.e2e_rate, cfg.e2e_duration_s, cfg.warmup_s)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await tracker.stop()
            await target.close()
            await self._pg.close()
        self.run.results["e2e_failed"] = dict(tracker.failed)
        return self.run

    async def _environment(self) -> dict[str, Any]:
        conn = await asyncpg.connect(self.config.pg_dsn, timeout=10)
        try:
            pg = {
                name: await conn.fetchval(f"SHOW {name}")
                for name in ("server_version", "fsync", "synchronous_commit", "max_connections")
            }
        finally:
            await conn.close()
        return {
            "commit": await asyncio.to_thread(_git_commit),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_model": _cpu_model(),
            "cores": _cores(),
            "memory_gib": round(_memory_gib(), 1),
            "kernel": platform.release(),
            "postgres": pg,
            "target": self.config.target,
        }

    # ------------------------------------------------------------------ phases

    async def _echo_baseline(self) -> None:
        cfg = self.config
        request = create_request("bench-echo-0123456789abcdef").SerializeToString()
        response = _sample_response().SerializeToString()
        server = EchoServerProcess(len(response))
        port = server.start()
        say(
            f"echo baseline on 127.0.0.1:{port} "
            f"(request {len(request)} B, response {len(response)} B)"
        )
        echo = EchoTarget(port, request, channels=cfg.channels, timeout_s=cfg.timeout_s)
        try:
            best, steps = await self._search(
                "echo", echo.send, cfg.echo_start_rate, with_tracker=False
            )
        finally:
            await echo.close()
            server.stop()
        self.run.results["echo"] = {
            "request_bytes": len(request),
            "response_bytes": len(response),
            "sustainable_rate": best,
            "steps": steps,
        }
        say(f"echo: highest rate with p99 <= {cfg.p99_limit_ms:g} ms: {best:,.0f}/s")

    async def _step_search(self) -> float:
        assert self._target is not None
        best, steps = await self._search(
            "step", self._target.send, self.config.step_start_rate, with_tracker=True
        )
        self.run.results["step"] = steps
        say(f"payrail: highest rate with p99 <= {self.config.p99_limit_ms:g} ms: {best:,.0f}/s")
        return best

    async def _search(
        self, prefix: str, send: Send, start_rate: float, *, with_tracker: bool
    ) -> tuple[float, list[dict[str, Any]]]:
        """Raise the rate by step_factor until a step fails; then bisect once."""
        cfg = self.config
        steps: list[dict[str, Any]] = []
        best = 0.0
        failed_at: float | None = None
        rate = start_rate
        # A first step that already fails: halve until one passes (or the rate is tiny).
        while rate >= 10:
            summary = await self._phase(
                f"{prefix}@{rate:.0f}", rate, cfg.step_duration_s, 2.0, send, with_tracker
            )
            ok, why = _passes(summary, cfg.p99_limit_ms)
            steps.append({"rate": rate, "pass": ok, "why": why, "summary": summary})
            if ok:
                best = rate
                rate = round(rate * cfg.step_factor)
                break
            failed_at = rate
            rate = round(rate / 2)
        if best == 0.0:
            return best, steps
        failed_at = None
        while rate <= cfg.step_rate_max:
            summary = await self._phase(
                f"{prefix}@{rate:.0f}", rate, cfg.step_duration_s, 2.0, send, with_tracker
            )
            ok, why = _passes(summary, cfg.p99_limit_ms)
            steps.append({"rate": rate, "pass": ok, "why": why, "summary": summary})
            if not ok:
                failed_at = rate
                break
            best = rate
            rate = round(rate * cfg.step_factor)
        if failed_at is not None and best > 0 and failed_at - best > 0.04 * best:
            rate = round((best + failed_at) / 2)
            summary = await self._phase(
                f"{prefix}@{rate:.0f}", rate, cfg.step_duration_s, 2.0, send, with_tracker
            )
            ok, why = _passes(summary, cfg.p99_limit_ms)
            steps.append({"rate": rate, "pass": ok, "why": why, "summary": summary})
            if ok:
                best = rate
        return best, steps

    async def _payrail_phase(
        self, name: str, rate: float, duration_s: float, warmup_s: float
    ) -> dict[str, Any]:
        assert self._target is not None
        refreshed = await self._target.refresh_tokens(older_than_s=600)
        if refreshed:
            say(f"refreshed {refreshed} access tokens")
        return await self._phase(name, rate, duration_s, warmup_s, self._target.send, True)

    async def _overload(self, sustainable: float) -> None:
        cfg = self.config
        high = sustainable * cfg.overload_factor
        low = sustainable * cfg.recovery_factor
        say(f"overload: {high:,.0f}/s for {cfg.overload_s:g} s, then {low:,.0f}/s")
        assert self._target is not None
        await self._target.refresh_tokens(older_than_s=600)
        overload = await self._phase(
            "overload", high, cfg.overload_s, 0.0, self._target.send, True, settle=False
        )
        recovery = await self._phase("recovery", low, cfg.recovery_s, 0.0, self._target.send, True)
        # Recovered: the second half of the recovery phase is back within the limit.
        assert self._last_recorder is not None
        tail_p99 = summarize_ms(
            x.latency_s
            for x in self._last_recorder.samples
            if x.code == "OK" and x.scheduled_s >= cfg.recovery_s / 2
        )["p99_ms"]
        shed = {
            code: n
            for code, n in overload["codes"].items()
            if code in ("RESOURCE_EXHAUSTED", "UNAVAILABLE")
        }
        self.run.results["overload"] = {
            "rate": high,
            "recovery_rate": low,
            "shed": shed,
            "shed_latency": overload["error_latency"],
            "ok_latency": overload["latency"],
            "achieved_rate": overload["achieved_rate"],
            "recovery_second_half_p99_ms": tail_p99,
            "recovered": (not math.isnan(tail_p99)) and tail_p99 <= cfg.p99_limit_ms,
            "recovery_codes": recovery["codes"],
        }

    async def _phase(
        self,
        name: str,
        rate: float,
        duration_s: float,
        warmup_s: float,
        send: Send,
        with_tracker: bool,
        *,
        settle: bool = True,
    ) -> dict[str, Any]:
        quiet = await self._wait_quiet(name) if with_tracker else None
        self._phase_name = name
        if self._tracker is not None and with_tracker:
            self._tracker.phase = name
        recorder = PhaseRecorder(name, rate, warmup_s, duration_s)
        start_s = asyncio.get_running_loop().time() - self._loop_start
        cpu_before = cpu.snapshot(Path(self.config.run_dir))
        wall_before = time.monotonic()
        await run_open_loop(recorder, send, progress=self.config.progress)
        self._last_recorder = recorder
        wall_s = time.monotonic() - wall_before
        cpu_after = cpu.snapshot(Path(self.config.run_dir))
        summary = recorder.summary()
        summary["start_s"] = start_s
        if quiet is not None:
            summary["quiet_before"] = quiet
        summary["cpu"] = cpu.usage(cpu_before, cpu_after, wall_s, len(recorder.samples))
        self.run.series[name] = recorder.series()
        if with_tracker and self._tracker is not None:
            if settle:
                left = await self._tracker.wait_settled(self.config.settle_timeout_s)
                if left:
                    say(f"{name}: {left} payments not final after the settle timeout")
            e2e = self._tracker.phase_samples(name)
            # Every payment the phase got accepted, warm-up included.
            summary["e2e"] = summarize_ms(s.latency_s for s in e2e)
            # The two halves: accepted -> PROCESSING, PROCESSING -> COMPLETED.
            split = [s for s in e2e if not math.isnan(s.dispatch_s)]
            summary["e2e_to_processing"] = summarize_ms(s.dispatch_s for s in split)
            summary["e2e_processing_to_completed"] = summarize_ms(
                s.latency_s - s.dispatch_s for s in split
            )
            summary["e2e_completed"] = len(e2e)
            summary["e2e_outstanding"] = self._tracker.outstanding
            if settle:  # otherwise the next phase keeps waiting for these
                self._tracker.forget_outstanding()
        summary["backlog"] = self._backlog_summary(name)
        self.run.phases.append(summary)
        return summary

    async def _wait_quiet(self, name: str) -> dict[str, float] | None:
        """Let the pipeline finish earlier work first; how long that took, what was left."""
        if self.config.quiet_timeout_s <= 0:
            return None
        conn = self._pg or await asyncpg.connect(self.config.pg_dsn, timeout=10)
        started = time.monotonic()
        try:
            # A pool or a connection: both answer fetchval.
            backlog, lag = await wait_quiet(
                conn, self.config.kafka_bootstrap, timeout_s=self.config.quiet_timeout_s
            )
        finally:
            if conn is not self._pg:
                await conn.close()
        waited_s = time.monotonic() - started
        if backlog or lag > 0:
            say(f"{name}: pipeline still busy after {waited_s:.0f} s (outbox {backlog}, lag {lag})")
        elif waited_s > 2:
            say(f"{name}: waited {waited_s:.0f} s for the pipeline to drain")
        return {"waited_s": waited_s, "outbox_backlog": backlog, "consumer_lag": lag}

    # ------------------------------------------------------------------ outbox backlog

    async def _sample_backlog(self) -> None:
        """Outbox backlog every second; the pipeline's consumer lag every 5 seconds."""
        loop = asyncio.get_running_loop()
        tick = 0
        while True:
            with contextlib.suppress(Exception):
                count: int = await self._pg.fetchval(_BACKLOG_SQL, timeout=2)
                self.run.backlog.append((loop.time() - self._loop_start, count, self._phase_name))
            if tick % 5 == 0:
                with contextlib.suppress(Exception):
                    lag = await pipeline_lag(self.config.kafka_bootstrap)
                    self.run.lag.append((loop.time() - self._loop_start, lag, self._phase_name))
            tick += 1
            await asyncio.sleep(1.0)

    def _backlog_summary(self, phase: str) -> dict[str, float]:
        points = [(t, float(n)) for t, n, p in self.run.backlog if p == phase]
        if not points:
            return {}
        out = {
            "samples": float(len(points)),
            "first": points[0][1],
            "last": points[-1][1],
            "max": max(n for _, n in points),
            "slope_rows_per_s": linear_slope(points),
        }
        lag = [(t, float(n)) for t, n, p in self.run.lag if p == phase]
        if lag:
            out["consumer_lag_first"] = lag[0][1]
            out["consumer_lag_last"] = lag[-1][1]
            out["consumer_lag_slope_per_s"] = linear_slope(lag)
        return out


def _sample_response() -> payments_pb2.CreatePaymentResponse:
    """A CreatePaymentResponse shaped like the real one, for the echo's answer size."""
    reply = payments_pb2.CreatePaymentResponse()
    p = reply.payment
    p.payment_id = "0b6f1f0e-5d7a-4c43-9a51-2f0f7c0b9d11"
    p.kind = payments_pb2.PAYMENT_KIND_DEPOSIT
    p.status = payments_pb2.PAYMENT_STATUS_PENDING
    p.amount.currency_code = "USD"
    p.amount.amount_minor = 1000
    p.card.brand = payments_pb2.CARD_BRAND_VISA
    p.card.masked_number = "424242******4242"
    p.card.exp_month = 12
    p.card.exp_year = 2030
    p.description = "payrail bench"
    p.version = 1
    p.create_time.GetCurrentTime()
    p.update_time.GetCurrentTime()
    return reply


def _git_commit() -> str:
    """The checked-out commit, marked -dirty when tracked files differ from it."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):  # noqa: SIM115
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _memory_gib() -> float:
    with contextlib.suppress(OSError):
        for line in open("/proc/meminfo", encoding="utf-8"):  # noqa: SIM115
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def config_dict(config: BenchConfig) -> dict[str, Any]:
    return asdict(config)
