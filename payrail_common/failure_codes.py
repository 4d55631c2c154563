"""The catalogue of ``Payment.failure_code`` values payrail sets (standard library only).

A payment that ends FAILED, DENIED, EXPIRED or CANCELED says why twice: ``failure_code``,
a stable lower-snake-case code a client can program against, and ``failure_message``,
for people. Every code payrail itself, its risk rules and its sandbox gateways set is
here, with the final status it comes with and who sets it; the producers use these
constants (the gateway SDK, which imports nothing of payrail, repeats its one code and a
test checks it). docs/errors.md is the reference table; a test keeps the two equal.

A real gateway may report decline codes of its own (``[A-Za-z0-9_.:-]``, at most 64
characters, see gateway_sdk.formats): they reach ``failure_code`` unchanged, with FAILED.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# Final statuses (payment_svc.domain.status.PaymentStatus values).
FAILED: Final = "FAILED"
DENIED: Final = "DENIED"
EXPIRED_STATUS: Final = "EXPIRED"
CANCELED: Final = "CANCELED"

# A gateway declined.
CARD_DECLINED: Final = "card_declined"
INSUFFICIENT_FUNDS: Final = "insufficient_funds"
CARD_UNREADABLE: Final = "card_unreadable"
DECLINED: Final = "declined"
# payment_svc and its janitor.
GATEWAY_TIMEOUT: Final = "gateway_timeout"
CARD_UNAVAILABLE: Final = "card_unavailable"
EXPIRED: Final = "expired"
CANCELED_BY_USER: Final = "canceled_by_user"
# consumer_svc's processor.
NO_ROUTE: Final = "no_route"
# The risk rules that deny (the rule's name is the code).
VELOCITY: Final = "velocity"
WITHDRAWAL_CARD: Final = "withdrawal_card"
# Step-up verification.
VERIFICATION_FAILED: Final = "verification_failed"
DECLINED_BY_OWNER: Final = "declined_by_owner"
VERIFICATION_EXPIRED: Final = "verification_expired"


@dataclass(frozen=True)
class FailureCodeInfo:
    # The payment's final status with this code.
    status: str
    # One line: what happened.
    meaning: str
    # Which component sets it.
    set_by: str


CATALOGUE: Final[Mapping[str, FailureCodeInfo]] = {
    CARD_DECLINED: FailureCodeInfo(
        FAILED, "the gateway declined the card", "the gateway (sandbox: 4000 0000 0000 0002)"
    ),
    INSUFFICIENT_FUNDS: FailureCodeInfo(
        FAILED,
        "the gateway declined: the card has insufficient funds",
        "the gateway (sandbox: 4000 0000 0000 9995)",
    ),
    CARD_UNREADABLE: FailureCodeInfo(
        FAILED,
        "the gateway could not open the sealed card data it was sent",
        "the gateway SDK (gateway_sdk.runtime)",
    ),
    DECLINED: FailureCodeInfo(
        FAILED,
        "the gateway declined without giving a code of its own",
        "payment_svc, applying a gateway's result",
    ),
    GATEWAY_TIMEOUT: FailureCodeInfo(
        FAILED,
        "the gateway did not answer within its callback timeout, on every attempt",
        "payment_svc's sweep (consumer_svc's janitor)",
    ),
    CARD_UNAVAILABLE: FailureCodeInfo(
        FAILED,
        "the vaulted card could not be read (its key is gone or the row is damaged)",
        "payment_svc, at dispatch",
    ),
    NO_ROUTE: FailureCodeInfo(
        FAILED,
        "no enabled gateway supports the payment's kind and currency",
        "consumer_svc's processor",
    ),
    VELOCITY: FailureCodeInfo(
        DENIED,
        "too many payments with this card or by this user in the velocity window",
        "consumer_svc's risk rules",
    ),
    WITHDRAWAL_CARD: FailureCodeInfo(
        DENIED,
        "a withdrawal to a card that has not funded the wallet",
        "consumer_svc's risk rules",
    ),
    VERIFICATION_FAILED: FailureCodeInfo(
        DENIED, "too many wrong step-up verification codes", "payment_svc (VerifyPayment)"
    ),
    DECLINED_BY_OWNER: FailureCodeInfo(
        DENIED,
        "the owner declined the payment at step-up verification",
        "payment_svc (VerifyPayment)",
    ),
    VERIFICATION_EXPIRED: FailureCodeInfo(
        DENIED,
        "the owner did not answer the step-up verification in time",
        "payment_svc (VerifyPayment, or the sweep of consumer_svc's janitor)",
    ),
    EXPIRED: FailureCodeInfo(
        EXPIRED_STATUS,
        "the payment waited too long before dispatch (PENDING, or verified but never dispatched)",
        "payment_svc's sweep (consumer_svc's janitor)",
    ),
    CANCELED_BY_USER: FailureCodeInfo(
        CANCELED, "its owner canceled the payment before dispatch", "payment_svc (CancelPayment)"
    ),
}


__all__ = ["CATALOGUE", "FailureCodeInfo"]
