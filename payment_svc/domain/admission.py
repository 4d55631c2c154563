"""Admission control for new payments: a pure rule over the latest backlog reading."""

from __future__ import annotations

from dataclasses import dataclass

from payment_svc.domain.errors import ProcessingBacklog


@dataclass(frozen=True)
class BacklogPolicy:
    # PENDING payments (accepted, not yet taken up by the processing pipeline) above
    # which new payments are refused; 0 turns the rule off.
    pending_max: int = 2000
    # How often the backlog is read; also the retry delay suggested to a refused client.
    check_interval_s: float = 0.5

    def __post_init__(self) -> None:
        if self.pending_max < 0:
            raise ValueError("pending_max must not be negative")
        if self.check_interval_s <= 0:
            raise ValueError("check_interval_s must be positive")


def admit(policy: BacklogPolicy, pending: int | None) -> None:
    """Raise ProcessingBacklog when the last reading is at or above the bound. No reading
    yet (or the last one failed) admits: PostgreSQL being down fails the write anyway."""
    if policy.pending_max == 0 or pending is None or pending < policy.pending_max:
        return
    raise ProcessingBacklog(pending, policy.pending_max, retry_after_s=policy.check_interval_s)
