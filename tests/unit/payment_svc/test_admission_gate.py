"""The backlog gate's loop with admission control off: it stays up (a loop that ended
would be restarted as a crash, and after ten the process would exit)."""

from __future__ import annotations

import asyncio

import pytest

from payment_svc.adapters.admission import UnsettledBacklogGate
from payment_svc.domain.admission import BacklogPolicy
from payrail_common.faults import Backoff
from payrail_common.supervision import RestartPolicy, Supervision


class NoPool:
    async def fetchval(self, *args: object, **kwargs: object) -> int:
        raise AssertionError("admission control is off: the backlog is never read")


@pytest.mark.asyncio
async def test_with_admission_off_the_gate_waits_instead_of_ending() -> None:
    registry = Supervision()
    gate = UnsettledBacklogGate(NoPool(), BacklogPolicy(unsettled_max=0))
    gate.registry = registry
    # Restarts so quick that a loop ending at once would reach the fatal count here.
    gate.restart_policy = RestartPolicy(backoff=Backoff(base_s=0.001, max_s=0.002))
    gate.start()
    try:
        await asyncio.sleep(0.3)
        assert registry.unhealthy_loops() == []
        assert not registry.fatal_event().is_set()
        gate.admit()  # never refuses
    finally:
        await gate.stop()
