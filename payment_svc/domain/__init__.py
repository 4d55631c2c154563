"""payment_svc's pure domain: money, cards, the payment state machine, CreatePayment
validation and the error hierarchy.

Imports only the standard library and payrail_common's plain value types
(``FieldViolation``); no I/O, no protobuf. The api layer maps protobuf to these types and
these errors to gRPC statuses.
"""

from payment_svc.domain.cards import (
    BRAND_LENGTHS,
    CVC_LENGTHS,
    CardBrand,
    CardInput,
    PanSecret,
    Secret,
    contains_card_number,
    detect_brand,
    is_expired,
    luhn_valid,
    mask_pan,
    normalize_card_number,
)
from payment_svc.domain.errors import (
    DecryptionFailed,
    DomainError,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidTransition,
    NotFound,
    ValidationFailed,
)
from payment_svc.domain.money import (
    CURRENCIES,
    DEFAULT_MAX_MINOR_BY_CURRENCY,
    AmountLimits,
    Currency,
    Money,
    select_currencies,
)
from payment_svc.domain.status import (
    INITIAL_VERSION,
    TERMINAL,
    FundingSource,
    PaymentKind,
    PaymentStatus,
    can_transition,
    is_terminal,
    next_version,
)
from payment_svc.domain.validation import (
    CreatePaymentCommand,
    Merchant,
    effective_funding_source,
    request_fingerprint,
    validate_create_payment,
)
from payrail_common.fields import FieldViolation

__all__ = [
    "BRAND_LENGTHS",
    "CURRENCIES",
    "CVC_LENGTHS",
    "DEFAULT_MAX_MINOR_BY_CURRENCY",
    "INITIAL_VERSION",
    "TERMINAL",
    "AmountLimits",
    "CardBrand",
    "CardInput",
    "CreatePaymentCommand",
    "Currency",
    "DecryptionFailed",
    "DomainError",
    "FieldViolation",
    "FundingSource",
    "IdempotencyKeyReused",
    "InsufficientFunds",
    "InvalidTransition",
    "Merchant",
    "Money",
    "NotFound",
    "PanSecret",
    "PaymentKind",
    "PaymentStatus",
    "Secret",
    "ValidationFailed",
    "can_transition",
    "contains_card_number",
    "detect_brand",
    "effective_funding_source",
    "is_expired",
    "is_terminal",
    "luhn_valid",
    "mask_pan",
    "next_version",
    "normalize_card_number",
    "request_fingerprint",
    "select_currencies",
    "validate_create_payment",
]
