"""Payment kinds, funding sources, and the status state machine with its version counter.

    PENDING               → REQUIRES_VERIFICATION | PROCESSING | CANCELED | DENIED | EXPIRED
                            | FAILED (nothing can process it, e.g. no gateway route)
    REQUIRES_VERIFICATION → PROCESSING | CANCELED | DENIED | EXPIRED
    PROCESSING            → COMPLETED | FAILED

Terminal statuses never change. Every accepted change bumps the payment's version, which
travels on every event so that consumers can drop updates older than what they hold.
Enum values mirror the protobuf names without their prefix (``PAYMENT_STATUS_PENDING`` →
``"PENDING"``); the ``_UNSPECIFIED`` zero values have no member here, they map to None.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from payment_svc.domain.errors import InvalidTransition

# A new payment starts here; the first change makes it 2.
INITIAL_VERSION = 1
# Versions are stored as bigint and sent as int64.
VERSION_MAX = 2**63 - 1


class PaymentKind(StrEnum):
    """Which way money moves."""

    DEPOSIT = "DEPOSIT"  # card → the user's wallet
    WITHDRAWAL = "WITHDRAWAL"  # the user's wallet → card
    PURCHASE = "PURCHASE"  # card or wallet → merchant


class FundingSource(StrEnum):
    """What pays for a purchase."""

    CARD = "CARD"
    WALLET = "WALLET"


class PaymentStatus(StrEnum):
    """A payment's place in its lifecycle."""

    PENDING = "PENDING"
    REQUIRES_VERIFICATION = "REQUIRES_VERIFICATION"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DENIED = "DENIED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"


TERMINAL: frozenset[PaymentStatus] = frozenset(
    {
        PaymentStatus.COMPLETED,
        PaymentStatus.FAILED,
        PaymentStatus.DENIED,
        PaymentStatus.CANCELED,
        PaymentStatus.EXPIRED,
    }
)

# Before dispatch a payment can still be stopped by its owner, by risk, or by the clock.
_STOPPED_BEFORE_DISPATCH = frozenset(
    {PaymentStatus.CANCELED, PaymentStatus.DENIED, PaymentStatus.EXPIRED}
)

_ALLOWED: Mapping[PaymentStatus, frozenset[PaymentStatus]] = MappingProxyType(
    {
        PaymentStatus.PENDING: frozenset(
            {PaymentStatus.REQUIRES_VERIFICATION, PaymentStatus.PROCESSING, PaymentStatus.FAILED}
        )
        | _STOPPED_BEFORE_DISPATCH,
        PaymentStatus.REQUIRES_VERIFICATION: frozenset({PaymentStatus.PROCESSING})
        | _STOPPED_BEFORE_DISPATCH,
        # Once a gateway has it, only the gateway's answer (or the janitor declaring it
        # lost, which is a FAILED) ends it.
        PaymentStatus.PROCESSING: frozenset({PaymentStatus.COMPLETED, PaymentStatus.FAILED}),
        **{status: frozenset[PaymentStatus]() for status in TERMINAL},
    }
)


def is_terminal(status: PaymentStatus) -> bool:
    return status in TERMINAL


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    """The state machine allows ``current`` → ``target``. Staying put is not a change."""
    return target in _ALLOWED[current]


def next_version(current: PaymentStatus, target: PaymentStatus, version: int) -> int:
    """The version after moving ``current`` → ``target``; raises InvalidTransition when
    the move is not allowed (including any move out of a terminal status)."""
    if not INITIAL_VERSION <= version < VERSION_MAX:
        raise ValueError(f"version must be between {INITIAL_VERSION} and {VERSION_MAX - 1}")
    if not can_transition(current, target):
        raise InvalidTransition(current.value, target.value)
    return version + 1


__all__ = [
    "INITIAL_VERSION",
    "TERMINAL",
    "VERSION_MAX",
    "FundingSource",
    "PaymentKind",
    "PaymentStatus",
    "can_transition",
    "is_terminal",
    "next_version",
]
