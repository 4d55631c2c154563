"""One log line per lifecycle step of a payment, written where the step happens.

Each line says which step (``payment created``, ``payment dispatched``, ``payment
completed``...), and carries the payment id, the user id, the kind, the status it is in
now, the gateway and attempt once dispatched, the gateway's reference once it reported,
and the outcome (its failure code when it did not complete). Never card data: the view
holds only the masked card, and it is not logged. The request id is added by the log
filter (payrail_common.tracing), so one ``grep`` follows a payment across services.
"""

from __future__ import annotations

import logging
from typing import Any

from payment_svc.service.ports import PaymentView

log = logging.getLogger("payrail.lifecycle")


def fields(view: PaymentView) -> dict[str, Any]:
    """The log fields that identify a payment and where it stands."""
    found: dict[str, Any] = {
        "payment_id": view.payment_id,
        "user_id": view.user_id,
        "kind": view.kind.value,
        "status": view.status.value,
        "version": view.version,
    }
    if view.gateway_id:
        found["gateway_id"] = view.gateway_id
        found["attempt"] = view.attempt
    if view.gateway_reference:
        found["gateway_reference"] = view.gateway_reference
    if view.failure_code:
        found["outcome"] = view.failure_code
    return found


def step(name: str, view: PaymentView, **extra: Any) -> None:
    """Log ``payment <name>`` for ``view`` (plus ``extra`` fields, never card data)."""
    if log.isEnabledFor(logging.INFO):
        log.info(f"payment {name}", extra={**fields(view), **extra})
