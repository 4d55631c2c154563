"""payment_svc's internal PaymentOpsService and the public CallbackService.

PaymentOpsService is for consumer_svc only: payment_svc's port is internal and
gateway_svc never forwards this service.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

from gateway_sdk.signing import SIGNATURE_HEADER
from payment_svc.api import callbacks
from payment_svc.api.errors import mapped_errors
from payment_svc.domain.errors import ValidationFailed
from payment_svc.domain.status import PaymentKind
from payment_svc.proto_mapping import payment_to_pb, timestamp
from payment_svc.service.processing import Dispatch, Processing
from payment_svc.service.processing_ports import DispatchItem, GatewayView, StaleCursor
from payment_svc.service.verification import Verifications
from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc
from payrail.internal.v1 import payment_ops_pb2 as ops
from payrail.internal.v1 import payment_ops_pb2_grpc
from payrail_common import tracing
from payrail_common.authn import metadata_value
from payrail_common.fields import FieldViolation

SWEEP_LIMIT_MAX = 1000
STALE_PAGE_SIZE_MAX = 1000


def encode_stale_token(cursor: StaleCursor | None) -> str:
    """Opaque page token of ListStalePending: where the previous page stopped."""
    if cursor is None:
        return ""
    raw = f"{cursor.update_time.isoformat()}|{cursor.payment_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_stale_token(token: str) -> StaleCursor | None:
    if not token:
        return None
    try:
        when, payment_id = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        cursor = StaleCursor(datetime.fromisoformat(when), str(uuid.UUID(payment_id)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(
            [FieldViolation("page_token", "is not a token this service issued")]
        ) from None
    if cursor.update_time.tzinfo is None:
        raise ValidationFailed([FieldViolation("page_token", "is not a token this service issued")])
    return cursor


def gateway_to_pb(gateway: GatewayView) -> ops.Gateway:
    return ops.Gateway(
        gateway_id=gateway.gateway_id,
        wire_format=gateway.wire_format,
        topic=gateway.topic,
        kinds=[f"PAYMENT_KIND_{PaymentKind(k).value}" for k in gateway.kinds],
        currency_codes=list(gateway.currency_codes),
        priority=gateway.priority,
        callback_timeout_seconds=gateway.callback_timeout_s,
    )


def dispatch_to_pb(dispatch: Dispatch) -> ops.BeginDispatchResponse:
    record = dispatch.record
    response = ops.BeginDispatchResponse(
        payment=payment_to_pb(record.payment),
        attempt=record.attempt,
        sealed_card=dispatch.sealed_card,
        dispatch=record.dispatch,
    )
    if record.gateway is not None:
        response.gateway.CopyFrom(gateway_to_pb(record.gateway))
    if record.callback_deadline is not None:
        response.callback_deadline.CopyFrom(timestamp(record.callback_deadline))
    return response


class PaymentOpsServicer(payment_ops_pb2_grpc.PaymentOpsServiceServicer):
    def __init__(self, processing: Processing, verifications: Verifications) -> None:
        self._processing = processing
        self._verifications = verifications

    async def ListGateways(
        self, request: ops.ListGatewaysRequest, context: Any
    ) -> ops.ListGatewaysResponse:
        async with mapped_errors(context):
            gateways = await self._processing.gateways()
        return ops.ListGatewaysResponse(gateways=[gateway_to_pb(g) for g in gateways])

    async def BeginDispatch(
        self, request: ops.BeginDispatchRequest, context: Any
    ) -> ops.BeginDispatchResponse:
        async with mapped_errors(context):
            dispatch = await self._processing.begin_dispatch(request.payment_id, request.gateway_id)
        return dispatch_to_pb(dispatch)

    async def BeginDispatches(
        self, request: ops.BeginDispatchesRequest, context: Any
    ) -> ops.BeginDispatchesResponse:
        async with mapped_errors(context):
            items = [
                DispatchItem(item.payment_id, item.gateway_id, tracing.accept(item.request_id))
                for item in request.items
            ]
            dispatches = await self._processing.begin_dispatches(items)
        return ops.BeginDispatchesResponse(
            items=[
                ops.BeginDispatchResponse(not_found=True) if d is None else dispatch_to_pb(d)
                for d in dispatches
            ]
        )

    async def Sweep(self, request: ops.SweepRequest, context: Any) -> ops.SweepResponse:
        async with mapped_errors(context):
            if not 1 <= request.limit <= SWEEP_LIMIT_MAX:
                raise ValidationFailed(
                    [FieldViolation("limit", f"must be between 1 and {SWEEP_LIMIT_MAX}")]
                )
            result = await self._processing.sweep(request.limit)
        return ops.SweepResponse(
            redispatches=[dispatch_to_pb(d) for d in result.redispatches],
            expired_count=len(result.expired),
            timed_out_count=len(result.timed_out),
        )

    async def ListStalePending(
        self, request: ops.ListStalePendingRequest, context: Any
    ) -> ops.ListStalePendingResponse:
        async with mapped_errors(context):
            violations = []
            if request.older_than_seconds < 1:
                violations.append(FieldViolation("older_than_seconds", "must be at least 1"))
            if not 1 <= request.page_size <= STALE_PAGE_SIZE_MAX:
                violations.append(
                    FieldViolation("page_size", f"must be between 1 and {STALE_PAGE_SIZE_MAX}")
                )
            if violations:
                raise ValidationFailed(violations)
            page = await self._processing.stale_pending(
                request.older_than_seconds,
                request.page_size,
                decode_stale_token(request.page_token),
            )
        return ops.ListStalePendingResponse(
            payments=[
                ops.StalePayment(
                    payment_id=p.payment_id,
                    event_id=p.event_id or "",
                    event=p.event or b"",
                    create_time=timestamp(p.create_time),
                )
                for p in page.payments
            ],
            next_page_token=encode_stale_token(page.next_cursor),
        )

    async def FailPayment(
        self, request: ops.FailPaymentRequest, context: Any
    ) -> ops.FailPaymentResponse:
        async with mapped_errors(context):
            view = await self._processing.fail(
                request.payment_id, request.failure_code, request.failure_message
            )
        return ops.FailPaymentResponse(payment=payment_to_pb(view))

    async def DenyPayment(
        self, request: ops.DenyPaymentRequest, context: Any
    ) -> ops.DenyPaymentResponse:
        async with mapped_errors(context):
            view = await self._verifications.deny(
                request.payment_id, request.failure_code, request.failure_message
            )
        return ops.DenyPaymentResponse(payment=payment_to_pb(view))

    async def RequireVerification(
        self, request: ops.RequireVerificationRequest, context: Any
    ) -> ops.RequireVerificationResponse:
        async with mapped_errors(context):
            challenge = await self._verifications.require(request.payment_id, request.reason)
        response = ops.RequireVerificationResponse(
            payment=payment_to_pb(challenge.payment), code=challenge.code
        )
        if challenge.expire_time is not None:
            response.expire_time.CopyFrom(timestamp(challenge.expire_time))
        return response


class CallbackServicer(callbacks_pb2_grpc.CallbackServiceServicer):
    def __init__(self, processing: Processing) -> None:
        self._processing = processing

    async def ReportResult(
        self, request: callbacks_pb2.ReportResultRequest, context: Any
    ) -> callbacks_pb2.ReportResultResponse:
        header = metadata_value(context, SIGNATURE_HEADER)
        async with mapped_errors(context):
            applied = await self._processing.report_result(
                request.gateway_id, request.payload, header
            )
        return callbacks_pb2.ReportResultResponse(
            payment_id=applied.payment.payment_id, duplicate=applied.duplicate
        )

    async def ReportResults(
        self, request: callbacks_pb2.ReportResultsRequest, context: Any
    ) -> callbacks_pb2.ReportResultsResponse:
        return await callbacks.report_results(self._processing, request, context)
