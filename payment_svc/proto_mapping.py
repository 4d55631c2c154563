"""protobuf <-> payment domain, in one place: used by the servicers (api/) and by the
outbox event encoder (adapters/), so the wire shape of a payment is defined once."""

from __future__ import annotations

import uuid
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from payment_svc.domain.cards import CardBrand, CardInput, Secret
from payment_svc.domain.errors import ValidationFailed
from payment_svc.domain.money import Money
from payment_svc.domain.status import FundingSource, PaymentKind, PaymentStatus
from payment_svc.domain.validation import CreatePaymentCommand, Merchant, unrecognized_value
from payment_svc.service.ports import PaymentView
from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2 as pb


def _enum_to_pb(prefix: str, value: str | None) -> str:
    """The protobuf enum value name (constructors accept names): PAYMENT_STATUS_PENDING."""
    return f"{prefix}{'UNSPECIFIED' if value is None else value}"


def _enum_from_pb(
    enum_type: object, prefix: str, number: int, *, field: str, unknown: list[str]
) -> str | None:
    """The domain value name for a protobuf enum number; None for the zero value. A
    number the contract does not define (an open enum accepts any int32 on the wire)
    appends ``field`` to ``unknown`` and maps to None: the domain then refuses it by name,
    instead of it passing silently as "unspecified"."""
    if number == 0:
        return None
    try:
        name: str = enum_type.Name(number)  # type: ignore[attr-defined]
    except ValueError:
        unknown.append(field)
        return None
    return name.removeprefix(prefix)


def status_to_pb(status: PaymentStatus) -> str:
    return _enum_to_pb("PAYMENT_STATUS_", status.value)


def list_filters_from_pb(
    request: pb.ListPaymentsRequest,
) -> tuple[PaymentStatus | None, PaymentKind | None]:
    """ListPayments' (status, kind) filters, None meaning any; ValidationFailed naming
    each filter whose number the contract does not define."""
    unknown: list[str] = []
    status = _enum_from_pb(
        pb.PaymentStatus, "PAYMENT_STATUS_", request.status, field="status", unknown=unknown
    )
    kind = _enum_from_pb(
        pb.PaymentKind, "PAYMENT_KIND_", request.kind, field="kind", unknown=unknown
    )
    if unknown:
        raise ValidationFailed([unrecognized_value(field) for field in unknown])
    return (
        None if status is None else PaymentStatus(status),
        None if kind is None else PaymentKind(kind),
    )


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def command_from_pb(user_id: str, request: pb.CreatePaymentRequest) -> CreatePaymentCommand:
    """The domain command; field presence (card, merchant) and enum numbers the contract
    does not define are kept, values are not judged."""
    card = None
    if request.HasField("card"):
        card = CardInput(
            number=Secret(request.card.number),
            exp_month=request.card.exp_month,
            exp_year=request.card.exp_year,
            cvc=Secret(request.card.cvc),
            holder_name=request.card.holder_name,
        )
    merchant = None
    if request.HasField("merchant"):
        m = request.merchant
        merchant = Merchant(
            merchant_id=m.merchant_id,
            name=m.name,
            category_code=m.category_code,
            country_code=m.country_code,
            city=m.city,
            latitude=m.latitude,
            longitude=m.longitude,
        )
    unknown: list[str] = []
    kind = _enum_from_pb(
        pb.PaymentKind, "PAYMENT_KIND_", request.kind, field="kind", unknown=unknown
    )
    funding = _enum_from_pb(
        pb.FundingSource,
        "FUNDING_SOURCE_",
        request.funding_source,
        field="funding_source",
        unknown=unknown,
    )
    return CreatePaymentCommand(
        user_id=user_id,
        idempotency_key=request.idempotency_key,
        kind=None if kind is None else PaymentKind(kind),
        amount=Money(request.amount.currency_code, request.amount.amount_minor),
        card=card,
        merchant=merchant,
        description=request.description,
        funding_source=None if funding is None else FundingSource(funding),
        unrecognized=frozenset(unknown),
    )


def payment_to_pb(view: PaymentView) -> pb.Payment:
    message = pb.Payment(
        payment_id=view.payment_id,
        kind=_enum_to_pb("PAYMENT_KIND_", view.kind.value),
        status=status_to_pb(view.status),
        amount=pb.Money(
            currency_code=view.amount.currency_code, amount_minor=view.amount.amount_minor
        ),
        failure_code=view.failure_code,
        failure_message=view.failure_message,
        version=view.version,
        create_time=timestamp(view.create_time),
        update_time=timestamp(view.update_time),
        description=view.description,
        verification_reason=view.verification_reason,
        verified=view.verified,
        gateway_id=view.gateway_id,
        gateway_reference=view.gateway_reference,
        attempt=view.attempt,
        funding_source=_enum_to_pb(
            "FUNDING_SOURCE_",
            None if view.funding_source is None else view.funding_source.value,
        ),
    )
    if view.card is not None:
        brand: CardBrand | None = view.card.brand
        message.card.CopyFrom(
            pb.CardSummary(
                brand=_enum_to_pb("CARD_BRAND_", None if brand is None else brand),
                masked_number=view.card.masked_number,
                exp_month=view.card.exp_month,
                exp_year=view.card.exp_year,
            )
        )
    if view.merchant is not None:
        m = view.merchant
        message.merchant.CopyFrom(
            pb.Merchant(
                merchant_id=m.merchant_id,
                name=m.name,
                category_code=m.category_code,
                country_code=m.country_code,
                city=m.city,
                latitude=m.latitude,
                longitude=m.longitude,
            )
        )
    return message


def _event(view: PaymentView, **kind: object) -> tuple[str, bytes]:
    """(event id, serialized PaymentEvent) for the view, with the given oneof member."""
    event_id = str(uuid.uuid4())
    event = events_pb2.PaymentEvent(
        event_id=event_id,
        payment_id=view.payment_id,
        version=view.version,
        occur_time=timestamp(view.update_time),
        user_id=view.user_id,
        **kind,  # type: ignore[arg-type]
    )
    return event_id, event.SerializeToString()


def created_event(view: PaymentView, card_fingerprint: str | None) -> tuple[str, bytes]:
    """An event announcing a new payment."""
    return _event(
        view,
        created=events_pb2.PaymentCreated(
            payment=payment_to_pb(view), card_fingerprint=card_fingerprint or ""
        ),
    )


def status_changed_event(view: PaymentView, previous: PaymentStatus) -> tuple[str, bytes]:
    """An event announcing a status change."""
    return _event(
        view,
        status_changed=events_pb2.PaymentStatusChanged(
            previous_status=status_to_pb(previous), payment=payment_to_pb(view)
        ),
    )


def verified_event(view: PaymentView) -> tuple[str, bytes]:
    """An event announcing that the owner passed step-up verification."""
    return _event(view, verified=events_pb2.PaymentVerified(payment=payment_to_pb(view)))
