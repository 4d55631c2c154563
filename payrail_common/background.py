"""A component that owns one long-running coroutine: ``start()`` it, ``stop()`` cancels it
and waits for it to end. The coroutine runs supervised (:mod:`payrail_common.supervision`):
an unexpected exception is logged, counted and the loop restarted with backoff, and a loop
that keeps failing takes the process's health down and, past a bound, the process."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod

from payrail_common.supervision import RestartPolicy, Supervision, supervised


class BackgroundLoop(ABC):
    """Subclasses implement :meth:`_run` (usually ``while True``) and name the task."""

    task_name = "background-loop"
    restart_policy: RestartPolicy | None = None
    # None: the process-wide registry; tests pass their own.
    registry: Supervision | None = None

    _task: asyncio.Task[None] | None = None

    @abstractmethod
    async def _run(self) -> None:
        """The loop; cancelled by :meth:`stop`, restarted if it ends any other way."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(
                supervised(
                    self.task_name, self._run, policy=self.restart_policy, registry=self.registry
                ),
                name=self.task_name,
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
