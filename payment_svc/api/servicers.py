"""payment_svc's PaymentService: protobuf <-> use cases only (CallbackService and the
internal PaymentOpsService are in api/ops.py).

gateway_svc forwards the public calls here unchanged; the caller is the principal the
authentication interceptor verified from the forwarded access token.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from payment_svc.api.errors import mapped_errors
from payment_svc.domain.errors import ValidationFailed
from payment_svc.proto_mapping import command_from_pb, list_filters_from_pb, payment_to_pb
from payment_svc.service.payments import Payments
from payment_svc.service.ports import PageCursor
from payment_svc.service.verification import Verifications
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.authn import current_principal
from payrail_common.fields import FieldViolation
from payrail_common.pagetokens import NOT_ISSUED, PageTokenError, PageTokens
from payrail_common.tracing import send_response_headers

# Response metadata marking a CreatePayment answered from an earlier identical request.
REPLAY_HEADER = "x-payrail-idempotent-replay"


# The page tokens of ListPayments (payrail_common.pagetokens): signed, for the caller and
# the request's filters only, for an hour.
LIST_SCOPE = "payrail.payments.v1.PaymentService/ListPayments"


def _invalid(field: str, description: str) -> ValidationFailed:
    return ValidationFailed([FieldViolation(field, description)])


def _filters(request: pb.ListPaymentsRequest) -> tuple[int, int]:
    return (int(request.status), int(request.kind))


def encode_page_token(
    tokens: PageTokens, user_id: str, cursor: PageCursor, request: pb.ListPaymentsRequest
) -> str:
    """Opaque to clients; bound to the caller and the filters it was issued for."""
    return tokens.issue(
        scope=LIST_SCOPE,
        user_id=user_id,
        filters=_filters(request),
        cursor=(cursor.create_time.isoformat(), cursor.payment_id),
    )


def decode_page_token(
    tokens: PageTokens, user_id: str, request: pb.ListPaymentsRequest
) -> PageCursor | None:
    """The cursor of a token issued to this caller for these filters; else the request
    is INVALID_ARGUMENT on page_token, before any query."""
    if not request.page_token:
        return None
    try:
        when, payment_id = tokens.open(
            request.page_token,
            scope=LIST_SCOPE,
            user_id=user_id,
            filters=_filters(request),
            arity=2,
        )
    except PageTokenError as exc:
        raise _invalid("page_token", str(exc)) from None
    # Issued here, so well-formed; checked anyway before it reaches a query.
    try:
        create_time = datetime.fromisoformat(str(when))
        canonical_id = str(uuid.UUID(str(payment_id)))
    except ValueError:
        raise _invalid("page_token", NOT_ISSUED) from None
    if create_time.tzinfo is None or canonical_id != payment_id:
        raise _invalid("page_token", NOT_ISSUED)
    return PageCursor(create_time, canonical_id)


class PaymentServicer(payments_pb2_grpc.PaymentServiceServicer):
    def __init__(
        self, payments: Payments, verifications: Verifications, page_tokens: PageTokens
    ) -> None:
        self._payments = payments
        self._verifications = verifications
        self._page_tokens = page_tokens

    async def CreatePayment(
        self, request: pb.CreatePaymentRequest, context: Any
    ) -> pb.CreatePaymentResponse:
        async with mapped_errors(context):
            created = await self._payments.create(
                command_from_pb(current_principal().user_id, request)
            )
        if created.replayed:
            await send_response_headers(context, ((REPLAY_HEADER, "true"),))
        return pb.CreatePaymentResponse(payment=payment_to_pb(created.payment))

    async def GetPayment(
        self, request: pb.GetPaymentRequest, context: Any
    ) -> pb.GetPaymentResponse:
        async with mapped_errors(context):
            view = await self._payments.get(current_principal().user_id, request.payment_id)
        return pb.GetPaymentResponse(payment=payment_to_pb(view))

    async def ListPayments(
        self, request: pb.ListPaymentsRequest, context: Any
    ) -> pb.ListPaymentsResponse:
        async with mapped_errors(context):
            if request.page_size < 0:
                raise _invalid("page_size", "must not be negative")
            status, kind = list_filters_from_pb(request)
            user_id = current_principal().user_id
            page, next_cursor = await self._payments.list(
                user_id,
                page_size=request.page_size,
                after=decode_page_token(self._page_tokens, user_id, request),
                status=status,
                kind=kind,
            )
        token = ""
        if next_cursor is not None:
            token = encode_page_token(self._page_tokens, user_id, next_cursor, request)
        return pb.ListPaymentsResponse(
            payments=[payment_to_pb(view) for view in page], next_page_token=token
        )

    async def CancelPayment(
        self, request: pb.CancelPaymentRequest, context: Any
    ) -> pb.CancelPaymentResponse:
        async with mapped_errors(context):
            view = await self._payments.cancel(current_principal().user_id, request.payment_id)
        return pb.CancelPaymentResponse(payment=payment_to_pb(view))

    async def VerifyPayment(
        self, request: pb.VerifyPaymentRequest, context: Any
    ) -> pb.VerifyPaymentResponse:
        async with mapped_errors(context):
            view = await self._verifications.answer(
                current_principal().user_id, request.payment_id, request.code, request.decline
            )
        return pb.VerifyPaymentResponse(payment=payment_to_pb(view))

    async def WatchPayment(
        self, request: pb.WatchPaymentRequest, context: Any
    ) -> AsyncIterator[pb.WatchPaymentResponse]:
        async with mapped_errors(context):
            async for view in self._payments.watch(current_principal().user_id, request.payment_id):
                yield pb.WatchPaymentResponse(payment=payment_to_pb(view))

    async def GetBalance(
        self, request: pb.GetBalanceRequest, context: Any
    ) -> pb.GetBalanceResponse:
        async with mapped_errors(context):
            balances = await self._payments.balances(
                current_principal().user_id, request.currency_code or None
            )
        return pb.GetBalanceResponse(
            balances=[
                pb.Balance(
                    currency_code=b.currency_code,
                    available_minor=b.available_minor,
                    held_minor=b.held_minor,
                )
                for b in balances
            ]
        )
