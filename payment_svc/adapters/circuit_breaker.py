"""A small circuit breaker for calls to a dependency that can go away (Kafka).

States::

    CLOSED --(failure_threshold consecutive failures)--> OPEN
    OPEN --(cooldown elapsed, allow() grants one trial)--> HALF_OPEN
    HALF_OPEN --(trial succeeds)--> CLOSED
    HALF_OPEN --(trial fails)--> OPEN, with a longer cooldown

The cooldown of the n-th consecutive opening is drawn uniformly from
``[0, min(cooldown_max_s, cooldown_base_s * 2 ** (n - 1)))`` ("full jitter"), so that many
processes that lost the same broker at the same moment do not all retry in lockstep.

The breaker is pure: it does no I/O, never sleeps and never logs. Time and randomness come
from injectable callables so tests drive it with a fake clock. Callers observe ``state``
before and after an interaction if they want to log transitions.
"""

from __future__ import annotations

import enum
import random as _random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from payrail_common.faults import full_jitter_backoff_s

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpenError", "full_jitter_backoff_s"]

T = TypeVar("T")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(Exception):
    """The breaker refused the call; retriable after ``retry_after_s`` seconds."""

    retriable = True

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"circuit open; next trial in {retry_after_s:.3f} s")
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    """Consecutive-failure circuit breaker with exponential, fully jittered cooldowns.

    Use ``allow()`` before a call and report its outcome with ``record_success()`` or
    ``record_failure()``; or let ``call()`` do both. In HALF_OPEN exactly one trial is in
    flight: ``allow()`` grants it once and refuses everything else until its outcome is
    recorded, so the caller must always record the outcome of a granted trial.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        cooldown_base_s: float = 1.0,
        cooldown_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        """
        Args:
            failure_threshold: consecutive failures in CLOSED that open the breaker.
            cooldown_base_s: cooldown ceiling of the first opening; doubles per
                consecutive opening (a failed trial re-opens it).
            cooldown_max_s: upper bound of every cooldown.
            clock: monotonic seconds (``time.monotonic``); injectable for tests.
            random: a float in [0, 1) (``random.random``); injectable for tests.
        """
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if cooldown_base_s <= 0:
            raise ValueError(f"cooldown_base_s must be > 0, got {cooldown_base_s}")
        if cooldown_max_s < cooldown_base_s:
            raise ValueError(
                f"cooldown_max_s ({cooldown_max_s}) must be >= cooldown_base_s ({cooldown_base_s})"
            )
        self._failure_threshold = failure_threshold
        self._cooldown_base_s = cooldown_base_s
        self._cooldown_max_s = cooldown_max_s
        self._clock = clock
        self._random = random
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        # Openings since the breaker was last CLOSED: drives the exponential cooldown.
        self._consecutive_opens = 0
        self._open_until_s = 0.0

    @property
    def state(self) -> BreakerState:
        """The current state. OPEN stays OPEN after its cooldown until ``allow()`` is called."""
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures recorded since the last success (CLOSED) or the last opening."""
        return self._consecutive_failures

    @property
    def consecutive_opens(self) -> int:
        """Times the breaker opened since it was last CLOSED."""
        return self._consecutive_opens

    @property
    def retry_after_s(self) -> float:
        """Seconds until OPEN lets a trial through; 0 in any other state or once due."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._open_until_s - self._clock())

    def allow(self) -> bool:
        """Whether a call may go ahead now. After the cooldown, grants one trial (HALF_OPEN)."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.HALF_OPEN:
            return False  # the one trial is still in flight
        if self._clock() < self._open_until_s:
            return False
        self._state = BreakerState.HALF_OPEN
        return True

    def record_success(self) -> None:
        """A call succeeded: CLOSED stays CLOSED with no failures; a trial closes the breaker.

        Ignored while OPEN: only a granted trial may close an open breaker.
        """
        if self._state is BreakerState.OPEN:
            return
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._consecutive_opens = 0

    def record_failure(self) -> None:
        """A call failed: counts toward the threshold in CLOSED; a failed trial re-opens.

        Ignored while OPEN (a straggler admitted before the opening must not extend it).
        """
        if self._state is BreakerState.OPEN:
            return
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        self._consecutive_failures += 1
        if self._consecutive_failures >= self._failure_threshold:
            self._open()

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` if allowed and record its outcome; CircuitOpenError if not.

        Any ``Exception`` counts as a failure and is re-raised; cancellation is not an
        outcome, but a cancelled trial is recorded as a failure so the breaker never
        stays HALF_OPEN without a trial in flight.
        """
        if not self.allow():
            raise CircuitOpenError(self.retry_after_s)
        try:
            result = await operation()
        except Exception:
            self.record_failure()
            raise
        except BaseException:
            if self._state is BreakerState.HALF_OPEN:
                self.record_failure()
            raise
        self.record_success()
        return result

    def _open(self) -> None:
        self._consecutive_opens += 1
        self._consecutive_failures = 0
        cooldown_s = full_jitter_backoff_s(
            self._consecutive_opens,
            base_s=self._cooldown_base_s,
            max_s=self._cooldown_max_s,
            random=self._random,
        )
        self._open_until_s = self._clock() + cooldown_s
        self._state = BreakerState.OPEN
