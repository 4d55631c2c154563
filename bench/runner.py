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
6. cpu: ``cpu_rate`` for ``cpu_duration_s``: CPU per settled payment, summed over every
   process and per component, over the measured window (the A/B figure of issue 15).
7. settled: the settled-throughput search (every accepted payment COMPLETED, nothing
   shed, CreatePayment p99 and accepted->COMPLETED p99 within their bounds), then a
   confirmation run of ``settled_duration_s`` at the rate found (5 minutes for the issue).
8. overload: 1.5x the sustainable rate, then half of it: shedding and recovery.
9. e2e: ``e2e_rate`` (500/s by default) for ``e2e_duration_s``: the end-to-end target.
10. create-alone: the pipeline's consumers stopped (the outbox relay in payment_svc keeps
    running), CreatePayment stepped up to its highest rate with p99 within the limit; the
    pipeline is started again afterwards, also on failure or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import cpu
from bench.completions import CompletionTracker
from bench.echo import EchoServerProcess, EchoTarget
from bench.judge import next_rate, settled_passes, step_passes
from bench.loadgen import Send, run_open_loop
from bench.payrail_target import PayrailTarget, create_request
from bench.pgbaseline import run_pgbench
from bench.quiet import pipeline_lag, wait_quiet
from bench.stats import PhaseRecorder, linear_slope, summarize_ms
from payrail.payments.v1 import payments_pb2

_BACKLOG_SQL = "SELECT count(*) FROM payments.outbox WHERE sent_time IS NULL"
ROOT = Path(__file__).resolve().parents[1]
# The programs of `make up` that move a payment past PENDING (consumer_svc's processor,
# the insights groups, the sandbox gateways): stopped for the CreatePayment-alone phase.
PIPELINE = ("consumer_svc", "consumer_insights", "sandbox_json", "sandbox_soap")
# Admission control out of reach for CreatePayment alone: a bound no run reaches, counted
# once a minute. (PAYRAIL_UNSETTLED_MAX=0 would switch it off, but payment_svc's admission
# loop then returns at once, which its supervision counts as a failure: after ten the
# process exits.)
ADMISSION_OFF = {"PAYRAIL_UNSETTLED_MAX": "1000000000", "PAYRAIL_UNSETTLED_CHECK_MS": "60000"}
# A judgement of one step: (passed, why).
Judge = Callable[[dict[str, Any]], tuple[bool, str]]
PHASES = ("echo", "pgbench", "step", "sustained", "cpu", "settled", "overload", "e2e", "alone")


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
    sustained: bool = True
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
    # CPU per settled payment at a fixed offered rate (0 = skip).
    cpu_rate: float = 30.0
    cpu_duration_s: float = 60.0
    # Before it, this long without load: the idle floor (0 = skip).
    cpu_idle_s: float = 10.0
    # Settled throughput: a search, then a confirmation run at the rate found (and, when
    # that fails, up to settled_retries more, each one step lower).
    settled: bool = True
    settled_start_rate: float = 20.0
    settled_rate_max: float = 5000.0
    settled_step_duration_s: float = 10.0
    # A failed step is run again this many times (one noisy second on a shared machine
    # should not end the search).
    settled_step_retries: int = 1
    settled_duration_s: float = 300.0
    settled_retries: int = 1
    settled_e2e_p99_ms: float = 1000.0
    # CreatePayment alone: the pipeline's programs stopped with `<services_cmd> stop NAME`
    # (and started again with `start NAME`). alone_admission "restart": the services run
    # with admission control off for the phase (`<services_cmd> down`, then `up` with
    # admission control out of reach (ADMISSION_OFF), and the same again without it
    # afterwards), since every
    # payment stays PENDING while the pipeline is stopped; "keep": as they are.
    create_alone: bool = True
    alone_start_rate: float = 200.0
    alone_rate_max: float = 5000.0
    pipeline: tuple[str, ...] = PIPELINE
    services_cmd: str = "deploy/local/services.sh"
    alone_admission: str = "restart"
    # How long to wait for the pipeline to finish the previous phase's payments.
    settle_timeout_s: float = 30.0
    progress: bool = True
    # Before each phase, wait up to this long for the previous phase's payments to clear
    # the pipeline (outbox drained, no consumer lag); 0 skips the wait.
    quiet_timeout_s: float = 120.0
    # Where the local stack keeps its pid files: CPU is attributed to those processes.
    run_dir: str = ".data/run"
    # The platform's commit for the report (None: this checkout's; `bench ab` names the
    # worktree's).
    commit: str | None = None


@dataclass
class BenchRun:
    config: BenchConfig
    results: dict[str, Any] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    backlog: list[tuple[float, int, str]] = field(default_factory=list)
    lag: list[tuple[float, int, str]] = field(default_factory=list)


# How long an access token is valid (gateway_svc's default).
TOKEN_LIFETIME_S = 900.0


def say(text: str) -> None:
    sys.stderr.write(f"[bench] {text}\n")
    sys.stderr.flush()


def _passes(summary: dict[str, Any], limit_ms: float) -> tuple[bool, str]:
    return step_passes(summary, limit_ms)


class ServiceControl:
    """The stack's service manager (deploy/local/services.sh): stop, start, down, up."""

    def __init__(self, command: str) -> None:
        argv = shlex.split(command)
        if argv and not Path(argv[0]).is_absolute() and (ROOT / argv[0]).exists():
            argv[0] = str(ROOT / argv[0])
        self.argv = argv

    async def run(self, *args: str, env: dict[str, str] | None = None) -> None:
        argv = [*self.argv, *args]
        say(
            f"$ {shlex.join(argv)}"
            + (f" ({' '.join(f'{k}={v}' for k, v in env.items())})" if env else "")
        )
        result = await asyncio.to_thread(
            subprocess.run,
            argv,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(argv)} failed ({result.returncode}): {result.stdout[-2000:]}"
            )


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
        platform_phases = (
            cfg.step,
            cfg.sustained,
            cfg.cpu_rate > 0,
            cfg.settled,
            cfg.overload,
            cfg.e2e_rate > 0,
            cfg.create_alone,
        )
        if any(platform_phases):
            await self._platform_phases()
        return self.run

    async def _platform_phases(self) -> None:
        cfg = self.config
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
            if cfg.sustained:
                self.run.results["sustained_rate"] = sustainable
                await self._payrail_phase("sustained", sustainable, cfg.duration_s, cfg.warmup_s)
            if cfg.cpu_rate > 0:
                await self._cpu_phase()
            if cfg.settled:
                await self._settled()
            if cfg.overload:
                await self._overload(sustainable)
            # Late: when the pipeline cannot keep up with this rate, the backlog it leaves
            # would otherwise be charged to the phases after it.
            if cfg.e2e_rate > 0:
                await self._payrail_phase("e2e", cfg.e2e_rate, cfg.e2e_duration_s, cfg.warmup_s)
            # Last: it restarts services and leaves PENDING payments for the pipeline.
            if cfg.create_alone:
                await self._create_alone()
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await tracker.stop()
            await target.close()
            await self._pg.close()
        self.run.results["e2e_failed"] = dict(tracker.failed)

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
            "commit": self.config.commit or await asyncio.to_thread(_git_commit),
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
        self,
        prefix: str,
        send: Send,
        start_rate: float,
        *,
        with_tracker: bool,
        judge: Judge | None = None,
        step_duration_s: float | None = None,
        min_rate: float = 10.0,
        max_rate: float | None = None,
        retries: int = 0,
    ) -> tuple[float, list[dict[str, Any]]]:
        """Raise the rate by step_factor until a step fails; then bisect once. A failed
        step is run again up to ``retries`` times (a passing repeat passes it)."""
        cfg = self.config
        limit_ms = cfg.p99_limit_ms
        judged: Judge = judge or (lambda summary: _passes(summary, limit_ms))
        duration_s = cfg.step_duration_s if step_duration_s is None else step_duration_s
        steps: list[dict[str, Any]] = []

        async def step(rate: float) -> bool:
            for attempt in range(1 + max(0, retries)):
                name = f"{prefix}@{rate:.0f}" + (f"#{attempt + 1}" if attempt else "")
                summary = await self._phase(name, rate, duration_s, 2.0, send, with_tracker)
                ok, why = judged(summary)
                steps.append(
                    {
                        "rate": rate,
                        "pass": ok,
                        "why": why,
                        "attempt": attempt + 1,
                        "summary": summary,
                    }
                )
                if not self.config.progress:
                    say(f"{name}: {'pass' if ok else 'fail'} ({why})")
                if ok:
                    return True
            return False

        best = 0.0
        rate = start_rate
        # A first step that already fails: halve until one passes (or the rate is tiny).
        while rate >= min_rate:
            if await step(rate):
                best = rate
                rate = next_rate(rate, cfg.step_factor)
                break
            rate = round(rate / 2)
        if best == 0.0:
            return best, steps
        failed_at: float | None = None
        while rate <= (cfg.step_rate_max if max_rate is None else max_rate):
            if not await step(rate):
                failed_at = rate
                break
            best = rate
            rate = next_rate(rate, cfg.step_factor)
        if failed_at is not None and best > 0 and failed_at - best > max(1.0, 0.04 * best):
            rate = round((best + failed_at) / 2)
            if await step(rate):
                best = rate
        return best, steps

    async def _cpu_phase(self) -> None:
        """CPU per settled payment at a fixed offered rate, over the measured window."""
        cfg = self.config
        idle = await self._cpu_idle() if cfg.cpu_idle_s > 0 else None
        say(f"cpu: {cfg.cpu_rate:g}/s for {cfg.cpu_duration_s:g} s (CPU per settled payment)")
        summary = await self._payrail_phase(
            "cpu", cfg.cpu_rate, cfg.cpu_duration_s, cfg.warmup_s, cpu_window=True
        )
        window = summary.get("cpu_window") or {}
        self.run.results["cpu_per_payment"] = {
            "phase": "cpu",
            "offered_rate": cfg.cpu_rate,
            "duration_s": cfg.cpu_duration_s,
            **_settlement(summary),
            **window,
            **({"idle": idle} if idle is not None else {}),
        }
        total = window.get("total_ms_per_payment", math.nan)
        say(f"cpu: {total:.1f} CPU ms per settled payment at {cfg.cpu_rate:g}/s")

    async def _cpu_idle(self) -> dict[str, Any]:
        """The platform's CPU with no load (pollers, relays, heartbeats): the floor every
        rate pays, which a low offered rate spreads over few payments."""
        cfg = self.config
        await self._wait_quiet("cpu-idle")
        self._phase_name = "cpu-idle"
        say(f"cpu: {cfg.cpu_idle_s:g} s without load (the idle floor)")
        loop = asyncio.get_running_loop()
        now = loop.time()
        t0, t1, used_s = await self._cpu_window(now, now + cfg.cpu_idle_s)
        comps = cpu.by_component(used_s)
        wall = t1 - t0
        cores = {name: (s / wall if wall > 0 else 0.0) for name, s in comps.items()}
        return {
            "wall_s": wall,
            "cores": cores,
            "platform_cores": sum(v for k, v in cores.items() if k != cpu.OTHER),
        }

    async def _settled(self) -> None:
        """The settled-throughput search, then a confirmation run at the rate found."""
        cfg = self.config
        assert self._target is not None

        def judge(summary: dict[str, Any]) -> tuple[bool, str]:
            return settled_passes(
                summary, create_p99_ms=cfg.p99_limit_ms, e2e_p99_ms=cfg.settled_e2e_p99_ms
            )

        say(
            f"settled throughput: from {cfg.settled_start_rate:g}/s, steps of "
            f"{cfg.settled_step_duration_s:g} s (every payment COMPLETED, nothing shed, "
            f"CreatePayment p99 <= {cfg.p99_limit_ms:g} ms, accepted->COMPLETED p99 <= "
            f"{cfg.settled_e2e_p99_ms:g} ms)"
        )
        found, steps = await self._search(
            "settled",
            self._target.send,
            cfg.settled_start_rate,
            with_tracker=True,
            judge=judge,
            step_duration_s=cfg.settled_step_duration_s,
            min_rate=2.0,
            max_rate=cfg.settled_rate_max,
            retries=cfg.settled_step_retries,
        )
        out: dict[str, Any] = {
            "step_rate": found,
            "steps": steps,
            "confirm_duration_s": cfg.settled_duration_s,
            "confirmations": [],
            "confirmed": False,
            "rate": 0.0,
        }
        self.run.results["settled"] = out
        rate = found
        for _ in range(1 + max(0, cfg.settled_retries)):
            if rate < 1:
                break
            name = f"settled-confirm@{rate:.0f}"
            say(f"settled: confirming {rate:g}/s for {cfg.settled_duration_s:g} s")
            summary = await self._payrail_phase(
                name, rate, cfg.settled_duration_s, cfg.warmup_s, cpu_window=True
            )
            ok, why = judge(summary)
            say(f"{name}: {'pass' if ok else 'fail'} ({why})")
            out["confirmations"].append(
                {"rate": rate, "phase": name, "pass": ok, "why": why, **_settlement(summary)}
            )
            if ok:
                out.update(
                    confirmed=True,
                    rate=summary["achieved_rate"],
                    offered_rate=rate,
                    phase=name,
                    cpu_window=summary.get("cpu_window"),
                    **_settlement(summary),
                )
                break
            rate = float(round(rate / cfg.step_factor))

    async def _create_alone(self) -> None:
        """CreatePayment with the pipeline stopped: the front half's own capacity."""
        cfg = self.config
        assert self._target is not None
        assert self._tracker is not None
        control = ServiceControl(cfg.services_cmd)
        await self._wait_quiet("create-alone")
        out: dict[str, Any] = {
            "pipeline_stopped": list(cfg.pipeline),
            "still_running": "the outbox relay (in payment_svc) keeps publishing",
            "admission": (
                "out of reach for the phase (services restarted with "
                + ", ".join(f"{k}={v}" for k, v in ADMISSION_OFF.items())
                + ")"
                if cfg.alone_admission == "restart"
                else "as the services run"
            ),
        }
        self.run.results["create_alone"] = out
        restarted = False
        stopped: list[str] = []
        # No e2e tracking: nothing completes while the pipeline is stopped.
        self._target.on_accepted = None
        try:
            if cfg.alone_admission == "restart":
                say("create-alone: restarting the services with admission control off")
                restarted = True
                await control.run("down")
                await control.run("up", env=ADMISSION_OFF)
            for name in cfg.pipeline:
                stopped.append(name)
                await control.run("stop", name)
            best, steps = await self._search(
                "alone",
                self._target.send,
                cfg.alone_start_rate,
                with_tracker=False,
                max_rate=cfg.alone_rate_max,
            )
            out["rate"] = best
            out["steps"] = steps
            say(f"create-alone: highest rate with p99 <= {cfg.p99_limit_ms:g} ms: {best:,.0f}/s")
        finally:
            # Also after a failure or Ctrl-C (the task is cancelled; this still runs).
            say("create-alone: starting the pipeline again")
            if restarted:
                await control.run("down")
                await control.run("up")
            else:
                for name in stopped:
                    await control.run("start", name)
            self._target.on_accepted = self._tracker.accepted
        started = time.monotonic()
        quiet = await self._wait_quiet("after create-alone")
        out["drained_after_s"] = time.monotonic() - started
        out["left_after_drain"] = quiet

    async def _payrail_phase(
        self,
        name: str,
        rate: float,
        duration_s: float,
        warmup_s: float,
        *,
        cpu_window: bool = False,
    ) -> dict[str, Any]:
        assert self._target is not None
        refreshed = await self._target.refresh_tokens(older_than_s=600)
        if refreshed:
            say(f"refreshed {refreshed} access tokens")
        return await self._phase(
            name, rate, duration_s, warmup_s, self._target.send, True, cpu_window=cpu_window
        )

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
        cpu_window: bool = False,
    ) -> dict[str, Any]:
        if self._target is not None and send == self._target.send:
            # Access tokens live 15 minutes: every token must outlive this phase (a
            # search's steps and a 5-minute confirmation come long after the log-in).
            refreshed = await self._target.refresh_tokens(
                older_than_s=max(0.0, TOKEN_LIFETIME_S - 60.0 - warmup_s - duration_s)
            )
            if refreshed:
                say(f"refreshed {refreshed} access tokens")
        quiet = await self._wait_quiet(name) if with_tracker else None
        self._phase_name = name
        if self._tracker is not None and with_tracker:
            self._tracker.phase = name
        recorder = PhaseRecorder(name, rate, warmup_s, duration_s)
        loop = asyncio.get_running_loop()
        start_s = loop.time() - self._loop_start
        # The open loop's clock: request i is scheduled at start + i / rate.
        measure_from = loop.time() + 0.01 + warmup_s
        measure_to = measure_from + duration_s
        window_task = (
            asyncio.create_task(self._cpu_window(measure_from, measure_to)) if cpu_window else None
        )
        cpu_before = cpu.snapshot(Path(self.config.run_dir))
        wall_before = time.monotonic()
        try:
            await run_open_loop(recorder, send, progress=self.config.progress)
            window = await window_task if window_task is not None else None
        finally:
            if window_task is not None and not window_task.done():
                window_task.cancel()
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
            # Those accepted after the warm-up (what a step is judged by).
            summary["e2e_measured"] = summarize_ms(
                s.latency_s for s in e2e if s.accepted_s >= measure_from
            )
            # The two halves: accepted -> PROCESSING, PROCESSING -> COMPLETED.
            split = [s for s in e2e if not math.isnan(s.dispatch_s)]
            summary["e2e_to_processing"] = summarize_ms(s.dispatch_s for s in split)
            summary["e2e_processing_to_completed"] = summarize_ms(
                s.latency_s - s.dispatch_s for s in split
            )
            summary["e2e_accepted"] = self._tracker.accepted_by_phase.get(name, 0)
            summary["e2e_completed"] = len(e2e)
            summary["e2e_failed"] = self._tracker.failed_by_phase.get(name, 0)
            summary["e2e_outstanding"] = self._tracker.outstanding
            if window is not None:
                t0, t1, used_s = window
                # Steady state: the CPU of the window over the payments that reached
                # COMPLETED in it (accepted then or a moment before).
                settled = self._tracker.completed_between(t0, t1)
                summary["cpu_window"] = {
                    **cpu.per_payment(used_s, settled, t1 - t0),
                    "accepted_in_window": summary["ok"],
                }
            if settle:  # otherwise the next phase keeps waiting for these
                self._tracker.forget_outstanding()
        summary["backlog"] = self._backlog_summary(name)
        self.run.phases.append(summary)
        return summary

    async def _cpu_window(
        self, start_at: float, end_at: float
    ) -> tuple[float, float, dict[str, float]]:
        """CPU seconds per group used between two loop times (the measured window)."""
        loop = asyncio.get_running_loop()
        run_dir = Path(self.config.run_dir)
        await asyncio.sleep(max(0.0, start_at - loop.time()))
        t0 = loop.time()
        before = await asyncio.to_thread(cpu.snapshot, run_dir)
        await asyncio.sleep(max(0.0, end_at - loop.time()))
        t1 = loop.time()
        after = await asyncio.to_thread(cpu.snapshot, run_dir)
        return t0, t1, cpu.used(before, after)

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


def _settlement(summary: dict[str, Any]) -> dict[str, Any]:
    """What a settled-throughput figure is quoted with: rates, both p99s, completions."""
    return {
        "achieved_rate": summary["achieved_rate"],
        "create_p99_ms": summary["latency"]["p99_ms"],
        "e2e_p99_ms": (summary.get("e2e_measured") or {}).get("p99_ms", math.nan),
        "accepted": summary.get("e2e_accepted", 0),
        "completed": summary.get("e2e_completed", 0),
        "failed": summary.get("e2e_failed", 0),
        "outstanding": summary.get("e2e_outstanding", 0),
        "codes": summary["codes"],
    }


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
