"""Admission control for new payments: a pure rule over the latest backlog reading."""

from __future__ import annotations

from dataclasses import dataclass

from payment_svc.domain.errors import ProcessingBacklog


@dataclass(frozen=True)
class BacklogPolicy:
    # Accepted payments not yet final and not waiting for their owner (PENDING or
    # PROCESSING) at which new payments are refused; 0 turns the rule off. About 15 s of
    # work for the pipeline measured in docs/performance.md.
    unsettled_max: int = 1000
    # How often the backlog is read; also the retry delay suggested to a refused client.
    check_interval_s: float = 0.5

    def __post_init__(self) -> None:
        if self.unsettled_max < 0:
            raise ValueError("unsettled_max must not be negative")
        if self.check_interval_s <= 0:
            raise ValueError("check_interval_s must be positive")


def admit(policy: BacklogPolicy, unsettled: int | None) -> None:
    """Raise ProcessingBacklog when the last reading is at or above the bound. No reading
    yet (or the last one failed) admits: PostgreSQL being down fails the write anyway."""
    if policy.unsettled_max == 0 or unsettled is None or unsettled < policy.unsettled_max:
        return
    raise ProcessingBacklog(unsettled, policy.unsettled_max, retry_after_s=policy.check_interval_s)
