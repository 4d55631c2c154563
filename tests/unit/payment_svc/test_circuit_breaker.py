"""The Kafka circuit breaker, driven by a fake clock and a fixed "random" jitter."""

from __future__ import annotations

import asyncio

import pytest

from payment_svc.adapters.circuit_breaker import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    full_jitter_backoff_s,
)


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def state(breaker: CircuitBreaker) -> BreakerState:
    # A call, not the property: mypy would otherwise narrow it across state changes.
    return breaker.state


def make_breaker(
    clock: FakeClock,
    *,
    jitter: float = 1.0,
    failure_threshold: int = 3,
    base_s: float = 1.0,
    max_s: float = 8.0,
) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=failure_threshold,
        cooldown_base_s=base_s,
        cooldown_max_s=max_s,
        clock=clock,
        random=lambda: jitter,
    )


def trip(breaker: CircuitBreaker, failures: int) -> None:
    for _ in range(failures):
        assert breaker.allow()
        breaker.record_failure()


def test_stays_closed_below_threshold_and_success_resets_the_count() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    trip(breaker, 2)
    assert state(breaker) is BreakerState.CLOSED
    breaker.record_success()
    assert breaker.consecutive_failures == 0
    # Two more failures after the success still do not reach the threshold of 3.
    trip(breaker, 2)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.allow()


def test_opens_after_threshold_consecutive_failures_and_refuses_calls() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    trip(breaker, 3)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.retry_after_s == pytest.approx(1.0)
    assert not breaker.allow()
    clock.advance(0.999)
    assert not breaker.allow()
    assert breaker.retry_after_s == pytest.approx(0.001)
    assert state(breaker) is BreakerState.OPEN


def test_after_cooldown_exactly_one_trial_is_allowed() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    trip(breaker, 3)
    clock.advance(1.0)
    assert breaker.retry_after_s == 0.0
    assert breaker.allow()
    assert state(breaker) is BreakerState.HALF_OPEN
    assert not breaker.allow()  # the trial is in flight
    assert not breaker.allow()


def test_successful_trial_closes_and_resets_the_cooldown_growth() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    trip(breaker, 3)
    clock.advance(1.0)
    assert breaker.allow()
    breaker.record_failure()  # second opening: cooldown 2 s
    clock.advance(2.0)
    assert breaker.allow()
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_opens == 0
    # A new outage starts again from the base cooldown, not from 4 s.
    trip(breaker, 3)
    assert breaker.retry_after_s == pytest.approx(1.0)


def test_cooldown_doubles_per_failed_trial_up_to_the_cap() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, base_s=1.0, max_s=8.0)
    trip(breaker, 3)
    cooldowns = []
    for _ in range(6):
        cooldowns.append(breaker.retry_after_s)
        clock.advance(breaker.retry_after_s)
        assert breaker.allow()
        breaker.record_failure()
        assert state(breaker) is BreakerState.OPEN
    assert cooldowns == pytest.approx([1.0, 2.0, 4.0, 8.0, 8.0, 8.0])


def test_full_jitter_scales_the_cooldown_ceiling() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, jitter=0.25, base_s=2.0, max_s=100.0)
    trip(breaker, 3)
    assert breaker.retry_after_s == pytest.approx(0.5)  # 0.25 * 2 s
    clock.advance(0.5)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.retry_after_s == pytest.approx(1.0)  # 0.25 * 4 s


def test_a_zero_jitter_cooldown_lets_the_trial_through_at_once() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, jitter=0.0)
    trip(breaker, 3)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.allow()
    assert state(breaker) is BreakerState.HALF_OPEN


def test_outcomes_reported_while_open_are_ignored() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    trip(breaker, 3)
    until = breaker.retry_after_s
    breaker.record_success()  # a straggler admitted before the opening
    assert state(breaker) is BreakerState.OPEN
    breaker.record_failure()
    assert breaker.retry_after_s == pytest.approx(until)
    assert breaker.consecutive_opens == 1


def test_threshold_of_one_opens_on_the_first_failure() -> None:
    breaker = make_breaker(FakeClock(), failure_threshold=1)
    trip(breaker, 1)
    assert state(breaker) is BreakerState.OPEN


def test_backoff_helper_is_bounded_for_huge_attempt_numbers() -> None:
    assert full_jitter_backoff_s(1, base_s=0.5, max_s=10.0, random=lambda: 1.0) == 0.5
    assert full_jitter_backoff_s(3, base_s=0.5, max_s=10.0, random=lambda: 0.5) == 1.0
    assert full_jitter_backoff_s(10_000, base_s=0.5, max_s=10.0, random=lambda: 1.0) == 10.0
    with pytest.raises(ValueError, match="attempt"):
        full_jitter_backoff_s(0, base_s=0.5, max_s=10.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"cooldown_base_s": 0.0}, "cooldown_base_s"),
        ({"cooldown_base_s": 5.0, "cooldown_max_s": 1.0}, "cooldown_max_s"),
    ],
)
def test_rejects_invalid_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_call_records_outcomes_and_refuses_while_open() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, failure_threshold=2)
    calls: list[str] = []

    async def ok() -> str:
        calls.append("ok")
        return "done"

    async def broken() -> str:
        calls.append("broken")
        raise ConnectionError("broker unreachable")

    async def scenario() -> None:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await breaker.call(broken)
        assert state(breaker) is BreakerState.OPEN
        with pytest.raises(CircuitOpenError) as refused:
            await breaker.call(ok)
        assert refused.value.retry_after_s == pytest.approx(1.0)
        assert refused.value.retriable
        clock.advance(1.0)
        assert await breaker.call(ok) == "done"
        assert state(breaker) is BreakerState.CLOSED

    asyncio.run(scenario())
    # The refused call never ran.
    assert calls == ["broken", "broken", "ok"]


def test_a_cancelled_trial_reopens_instead_of_wedging_half_open() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, failure_threshold=1)

    async def hangs() -> None:
        await asyncio.sleep(3600)

    async def scenario() -> None:
        trip(breaker, 1)
        clock.advance(1.0)
        task = asyncio.create_task(breaker.call(hangs))
        await asyncio.sleep(0)
        assert state(breaker) is BreakerState.HALF_OPEN
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert state(breaker) is BreakerState.OPEN
    assert breaker.consecutive_opens == 2
