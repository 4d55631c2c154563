"""The fault schedule (a pure function of the seed) and the injector that plays it.

Faults come one at a time: each starts at its planned offset into the load, or once the
previous one has recovered plus a gap, whichever is later, so the stack is never facing
two at once (the fault model promises survival of any *single* fault).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from chaos.procs import Processes
from chaos.stack import BROKERS, SERVICES, Log

KINDS = (
    "kill_service",
    "kill_broker",
    "pg_crash",
    "redis_restart",
    "pause_service",
    "pause_broker",
)


@dataclass(frozen=True)
class Fault:
    index: int
    kind: str
    target: str  # service name, "kafka-N", "postgres" or "redis"
    at_s: float  # planned start, seconds after the load started
    duration_s: float  # pause length, or how long infrastructure stays down
    gap_s: float  # quiet time after recovery before the next fault may start

    def describe(self) -> str:
        return (
            f"#{self.index:02d} t+{self.at_s:6.1f}s {self.kind:<14} {self.target:<18}"
            f" {self.duration_s:4.1f}s (gap {self.gap_s:.0f}s)"
        )


@dataclass
class FaultRecord:
    fault: Fault
    started_at: float = 0.0  # wall clock (time.time())
    recovered_at: float = 0.0
    ok: bool = False
    detail: str = ""
    log: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self.fault),
            "started_at": self.started_at,
            "recovered_at": self.recovered_at,
            "recovery_s": round(self.recovered_at - self.started_at, 2),
            "ok": self.ok,
            "detail": self.detail,
        }


def _targets(kind: str) -> list[str]:
    if kind in ("kill_service", "pause_service"):
        return list(SERVICES)
    if kind in ("kill_broker", "pause_broker"):
        return [f"kafka-{i}" for i in range(1, BROKERS + 1)]
    return ["postgres" if kind == "pg_crash" else "redis"]


def schedule(seed: int, count: int, load_s: float) -> list[Fault]:
    """``count`` faults spread over ``load_s`` seconds of load. The first ones cover every
    kind and every target once (a service kill, a broker kill and a PostgreSQL crash come
    first, so even a small smoke schedule has them); the rest are drawn at random."""
    rng = random.Random(seed)  # noqa: S311 - a replayable schedule
    services = list(SERVICES)
    rng.shuffle(services)
    brokers = _targets("kill_broker")
    rng.shuffle(brokers)
    must: list[tuple[str, str]] = [
        ("kill_service", services[0]),
        ("kill_broker", brokers[0]),
        ("pg_crash", "postgres"),
        ("pause_service", rng.choice(services)),
        ("redis_restart", "redis"),
        ("pause_broker", rng.choice(brokers)),
    ]
    must += [("kill_service", s) for s in services[1:]]
    must += [("kill_broker", b) for b in brokers[1:]]
    chosen = must[:count]
    weights = {"kill_service": 5, "kill_broker": 2, "pg_crash": 1, "redis_restart": 1}
    weights |= {"pause_service": 2, "pause_broker": 2}
    while len(chosen) < count:
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
        chosen.append((kind, rng.choice(_targets(kind))))
    head, tail = chosen[: min(3, count)], chosen[min(3, count) :]
    rng.shuffle(head)
    rng.shuffle(tail)
    chosen = head + tail
    # Leave the first stretch of load undisturbed (wallets funded, pipeline warm), and
    # spread the rest evenly with some jitter.
    start_s = load_s * 0.08
    step_s = (load_s - start_s) / max(1, count)
    faults = []
    for i, (kind, target) in enumerate(chosen):
        if kind.startswith("pause"):
            duration = rng.uniform(5, 30)
        elif kind in ("kill_broker", "pg_crash"):
            duration = rng.uniform(2, 12)
        elif kind == "redis_restart":
            duration = rng.uniform(1, 5)
        else:
            duration = 0.0
        at = start_s + i * step_s + rng.uniform(0, step_s * 0.3)
        faults.append(
            Fault(i + 1, kind, target, round(at, 1), round(duration, 1), rng.uniform(4, 10))
        )
    return faults


class Injector:
    """Plays a schedule against the stack, one fault at a time."""

    def __init__(self, procs: Processes, faults: list[Fault], log: Log) -> None:
        self.procs = procs
        self.faults = faults
        self.log = log
        self.records: list[FaultRecord] = []
        self.last_recovered_at = 0.0

    async def run(self, load_started: float) -> None:
        ready_at = load_started
        for fault in self.faults:
            planned = load_started + fault.at_s
            delay = max(planned, ready_at) - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            record = await self.inject(fault)
            ready_at = record.recovered_at + fault.gap_s

    async def inject(self, fault: Fault) -> FaultRecord:
        record = FaultRecord(fault, started_at=time.time())
        self.records.append(record)
        self.log(f"fault {fault.describe()}: begin")
        try:
            record.detail = await self._act(fault)
            record.ok = True
        except Exception as exc:
            record.detail = f"FAILED to inject or recover: {type(exc).__name__}: {exc}"
        # Whatever happened, the stack must be whole again before the next fault.
        down = await self.procs.wait_all_serving(timeout_s=120)
        if down:
            record.ok = False
            record.detail += f"; still not SERVING after 120 s: {', '.join(down)}"
        record.recovered_at = time.time()
        self.last_recovered_at = record.recovered_at
        took = record.recovered_at - record.started_at
        status = "recovered" if record.ok else "NOT RECOVERED"
        self.log(f"fault #{fault.index:02d} {status} after {took:.1f}s: {record.detail}")
        return record

    async def _act(self, fault: Fault) -> str:
        p = self.procs
        kind, target = fault.kind, fault.target
        if kind == "kill_service":
            return await p.kill_service(target)
        if kind == "kill_broker":
            return await p.kill_broker(int(target.rsplit("-", 1)[1]), fault.duration_s)
        if kind == "pg_crash":
            return await p.pg_crash(fault.duration_s)
        if kind == "redis_restart":
            return await p.redis_restart(fault.duration_s)
        if kind == "pause_service":
            pid = await p.service_pid(target)
        else:
            pid = p.broker_pid(int(target.rsplit("-", 1)[1]))
        if pid is None:
            raise RuntimeError(f"{target} is not running")
        return await p.pause(pid, fault.duration_s)
