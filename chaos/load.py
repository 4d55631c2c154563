"""Drive the planned ops through the client at a steady rate, keeping every record.

Open loop: op ``i`` starts at ``start + i / rate`` whether or not earlier ones have been
answered (a fault must not quietly slow the load down), with a bound on ops in flight;
an op that finds the bound reached waits for a slot (and the wait is visible in the
progress line), never dropped.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from chaos.client import Client, OpRecord
from chaos.plan import Op
from chaos.stack import Log

INFLIGHT_MAX = 200
PROGRESS_EVERY_S = 10.0


async def run_load(
    client: Client, ops: list[Op], rate: float, records_path: Path, log: Log
) -> list[OpRecord]:
    records: list[OpRecord] = []
    slots = asyncio.Semaphore(INFLIGHT_MAX)
    answers: Counter[str] = Counter()
    started = time.monotonic()
    done = 0
    records_path.parent.mkdir(parents=True, exist_ok=True)

    with records_path.open("w") as out:

        async def one(op: Op) -> None:
            nonlocal done
            try:
                rec = await client.execute(op)
            finally:
                slots.release()
            records.append(rec)
            for answer in rec.answers:
                answers[answer["code"]] += 1
            out.write(json.dumps(rec.as_json(), sort_keys=True) + "\n")
            done += 1

        tasks: set[asyncio.Task[None]] = set()
        try:
            await _send_all(ops, rate, started, slots, one, tasks, log, answers, lambda: done)
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C): stop every call in flight before the client closes
            # its channels under them.
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    took = time.monotonic() - started
    per_s = len(records) / took
    log(f"load: {len(records)} ops in {took:.0f}s ({per_s:.1f}/s); answers {dict(answers)}")
    sys.stderr.flush()
    return records


async def _send_all(
    ops: list[Op],
    rate: float,
    started: float,
    slots: asyncio.Semaphore,
    one: Callable[[Op], Coroutine[Any, Any, None]],
    tasks: set[asyncio.Task[None]],
    log: Log,
    answers: Counter[str],
    done: Callable[[], int],
) -> None:
    """Start op i at ``started + i / rate`` (bounded in flight), then wait for all."""
    next_progress = started + PROGRESS_EVERY_S
    for op in ops:
        delay = started + op.index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        task = asyncio.create_task(one(op))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if time.monotonic() >= next_progress:
            next_progress += PROGRESS_EVERY_S
            log(
                f"load: {op.index + 1}/{len(ops)} sent, {done()} answered,"
                f" {len(tasks)} in flight; answers {dict(answers)}"
            )
    while tasks:
        await asyncio.sleep(0.5)
        if time.monotonic() >= next_progress:
            next_progress += PROGRESS_EVERY_S
            log(f"load: all sent, {done()} answered, {len(tasks)} still in flight")
