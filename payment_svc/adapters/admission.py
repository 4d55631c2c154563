"""The backlog reading behind admission control: unsettled payments (PENDING or
PROCESSING), counted in PostgreSQL every ``check_interval_s`` (bounded: the count stops
at the limit). REQUIRES_VERIFICATION is left out: it waits for a person, not for us."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from prometheus_client import Gauge

from payment_svc.domain.admission import BacklogPolicy, admit
from payrail_common.background import BackgroundLoop

log = logging.getLogger(__name__)

UNSETTLED = Gauge(
    "payrail_payments_unsettled",
    "PENDING or PROCESSING payments at the last admission check (counted up to the limit).",
)

# Stops counting at the limit: the answer needed is "below the bound or not".
_UNSETTLED_SQL = (
    "SELECT count(*) FROM (SELECT 1 FROM payments.payments"
    " WHERE status IN ('PENDING', 'PROCESSING') LIMIT $1) AS unsettled"
)


class UnsettledBacklogGate(BackgroundLoop):
    """Reads the backlog in the background; :meth:`admit` only looks at the last reading,
    so CreatePayment pays nothing for it."""

    task_name = "admission-backlog"

    def __init__(
        self, pool: asyncpg.Pool, policy: BacklogPolicy, *, statement_timeout_s: float = 2.0
    ) -> None:
        self._pool = pool
        self._policy = policy
        self._statement_timeout_s = statement_timeout_s
        self._unsettled: int | None = None

    def admit(self) -> None:
        admit(self._policy, self._unsettled)

    async def read_once(self) -> int | None:
        try:
            unsettled: int = await self._pool.fetchval(
                _UNSETTLED_SQL, self._policy.unsettled_max, timeout=self._statement_timeout_s
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("backlog not read", extra={"error": type(exc).__name__})
            self._unsettled = None
            return None
        self._unsettled = unsettled
        UNSETTLED.set(unsettled)
        return unsettled

    async def _run(self) -> None:
        if self._policy.unsettled_max == 0:
            # Admission control is off: nothing to read, ever. Waiting (rather than
            # returning) keeps the supervisor from counting the end as a crash.
            await asyncio.Event().wait()
        while True:
            await self.read_once()
            await asyncio.sleep(self._policy.check_interval_s)
