"""The open-loop scheduler and the progress bar.

:func:`run_open_loop` sends request ``i`` at ``start + i / rate`` whether or not earlier
requests have been answered, and measures each latency from that scheduled moment. If
the generator itself falls behind (a busy event loop), the late requests still carry
their scheduled time, so the delay counts against the system under test, as a real
client population would experience it. In-flight requests are bounded
(``inflight_max``); a request that finds the bound reached is not sent and is recorded
as ``CLIENT_BACKLOG`` rather than silently dropped.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

from bench.stats import PhaseRecorder, percentile

# send(i) performs request number i and returns its outcome code ("OK" or a status name).
Send = Callable[[int], Awaitable[str]]


@dataclass
class Progress:
    """A one-line progress bar on stderr (a plain line every few seconds when not a TTY)."""

    label: str
    total_s: float
    stream: TextIO = sys.stderr
    width: int = 28

    def __post_init__(self) -> None:
        self._tty = self.stream.isatty()
        self._last_plain_s = -math.inf

    def update(self, elapsed_s: float, detail: str) -> None:
        frac = 0.0 if self.total_s <= 0 else min(1.0, max(0.0, elapsed_s / self.total_s))
        if self._tty:
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r  {self.label:<22} [{bar}] {frac * 100:5.1f}% {detail}\x1b[K")
            self.stream.flush()
        elif elapsed_s - self._last_plain_s >= 5.0:
            self._last_plain_s = elapsed_s
            self.stream.write(f"  {self.label:<22} {frac * 100:5.1f}% {detail}\n")
            self.stream.flush()

    def done(self, detail: str) -> None:
        if self._tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(f"  {self.label:<22} done: {detail}\n")
        self.stream.flush()


async def run_open_loop(
    recorder: PhaseRecorder,
    send: Send,
    *,
    inflight_max: int = 20_000,
    drain_timeout_s: float = 10.0,
    progress: bool = True,
) -> PhaseRecorder:
    """Drive ``send`` at ``recorder.offered_rate`` for warm-up + duration; fill ``recorder``."""
    loop = asyncio.get_running_loop()
    rate = recorder.offered_rate
    total_s = recorder.warmup_s + recorder.duration_s
    count = max(1, int(rate * total_s))
    interval_s = 1.0 / rate
    start = loop.time() + 0.01
    tasks: set[asyncio.Task[None]] = set()
    bar = Progress(recorder.name, total_s) if progress else None
    recent: list[float] = []  # OK latencies since the last progress update
    errors = [0]

    async def one(index: int, scheduled: float) -> None:
        try:
            code = await send(index)
        except Exception as exc:  # a bug or a transport failure: count it, keep going
            code = f"CLIENT_{type(exc).__name__}"
        latency_s = loop.time() - scheduled
        recorder.add(scheduled - start, latency_s, code)
        if code == "OK":
            recent.append(latency_s)
        else:
            errors[0] += 1

    next_progress = start
    index = 0
    while index < count:
        now = loop.time()
        due = start + index * interval_s
        if due > now:
            await asyncio.sleep(due - now)
            continue
        # Everything that is due goes out now, each with its own scheduled time.
        while index < count and start + index * interval_s <= now:
            scheduled = start + index * interval_s
            if len(tasks) >= inflight_max:
                recorder.add(scheduled - start, 0.0, "CLIENT_BACKLOG")
                errors[0] += 1
            else:
                task = loop.create_task(one(index, scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            index += 1
        if bar is not None and now >= next_progress:
            next_progress = now + 0.5
            # Over the last half second; "-" until an answer has come back.
            p99 = f"{percentile(sorted(recent), 99.0) * 1000.0:.1f}ms" if recent else "-"
            recent.clear()
            bar.update(
                now - start,
                f"{rate:,.0f}/s sent={index} done={len(recorder.samples)} "
                f"inflight={len(tasks)} err={errors[0]} p99={p99}",
            )
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain_timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    if bar is not None:
        summary = recorder.summary()
        bar.done(
            f"{summary['achieved_rate']:,.0f}/s ok, p99 "
            f"{summary['latency']['p99_ms']:.1f} ms, errors {summary['codes']}"
        )
    return recorder


def wall_clock() -> float:
    """Seconds since the epoch (for report timestamps; latencies use the loop clock)."""
    return time.time()
