"""PaymentAdminService: operators' view across users and the gateway registry.

Forwarded by the edge like PaymentService (token and edge assertion checked by the
interceptor); the admin role is checked here again, so the internal port refuses a
customer's token even if the edge were bypassed. Only protobuf ↔ query mapping lives
here; the SQL is in adapters/admin_queries.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

import grpc

from payment_svc.adapters.admin_queries import AdminQueries, PaymentFilter, SearchCursor
from payment_svc.proto_mapping import payment_to_pb, timestamp
from payrail.admin.v1 import admin_pb2 as apb
from payrail.admin.v1 import admin_pb2_grpc
from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2 as pb
from payrail_common.authn import current_principal
from payrail_common.fields import FieldViolation
from payrail_common.reasons import Reason
from payrail_common.rpcerrors import abort

ADMIN_ROLE = "admin"
PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100
PRIORITY_LIMIT = 1_000_000


async def _invalid(context: Any, field: str, description: str) -> None:
    await abort(
        context,
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{field} {description}",
        reason=Reason.VALIDATION_FAILED,
        violations=[FieldViolation(field, description)],
    )


async def require_admin(context: Any) -> None:
    if current_principal().role != ADMIN_ROLE:
        await abort(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            "operators only: the admin role is required",
            reason=Reason.ADMIN_ROLE_REQUIRED,
        )


async def _uuid(context: Any, field: str, value: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        await _invalid(context, field, "must be a UUID")
        raise  # abort() raised already


def _encode_cursor(cursor: SearchCursor) -> str:
    raw = json.dumps([cursor.create_time.isoformat(), str(cursor.payment_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str) -> SearchCursor:
    """ValueError for anything that is not a token this service issued."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        moment, payment_id = json.loads(raw)
        return SearchCursor(datetime.fromisoformat(moment), uuid.UUID(payment_id))
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ValueError("not a page token") from exc


def _enum_name(enum: Any, prefix: str, number: int) -> str | None:
    if number == 0:
        return None
    return str(enum.Name(number)).removeprefix(prefix)


def _gateway_to_pb(row: Any) -> apb.Gateway:
    return apb.Gateway(
        gateway_id=row["id"],
        wire_format=row["wire_format"],
        topic=row["topic"],
        kinds=list(row["kinds"]),
        currency_codes=list(row["currency_codes"]),
        priority=row["priority"],
        enabled=row["enabled"],
        callback_timeout_seconds=row["callback_timeout_seconds"],
        create_time=timestamp(row["create_time"]),
    )


def _event_to_pb(row: Any) -> apb.PaymentEventRecord:
    record = apb.PaymentEventRecord(
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        topic=row["topic"],
        create_time=timestamp(row["create_time"]),
    )
    if row["sent_time"] is not None:
        record.publish_time.CopyFrom(timestamp(row["sent_time"]))
    event = events_pb2.PaymentEvent()
    try:
        event.ParseFromString(bytes(row["payload"]))
    except Exception:
        return record
    record.version = event.version
    which = event.WhichOneof("kind")
    if which == "created":
        record.status = event.created.payment.status
    elif which == "status_changed":
        record.previous_status = event.status_changed.previous_status
        record.status = event.status_changed.payment.status
    elif which == "verified":
        record.status = event.verified.payment.status
    return record


class PaymentAdminServicer(admin_pb2_grpc.PaymentAdminServiceServicer):
    def __init__(self, queries: AdminQueries) -> None:
        self._queries = queries

    async def SearchPayments(
        self, request: apb.SearchPaymentsRequest, context: Any
    ) -> apb.SearchPaymentsResponse:
        await require_admin(context)
        size = request.page_size or PAGE_SIZE_DEFAULT
        if not 1 <= size <= PAGE_SIZE_MAX:
            await _invalid(context, "page_size", f"must be 1 to {PAGE_SIZE_MAX}")
        after = None
        if request.page_token:
            try:
                after = _decode_cursor(request.page_token)
            except ValueError:
                await _invalid(context, "page_token", "is not a token from a previous page")
        try:
            status = _enum_name(pb.PaymentStatus, "PAYMENT_STATUS_", request.status)
            kind = _enum_name(pb.PaymentKind, "PAYMENT_KIND_", request.kind)
        except ValueError:
            await _invalid(context, "status", "is not a known value")
            raise
        where = PaymentFilter(
            payment_id=await _uuid(context, "payment_id", request.payment_id),
            user_id=await _uuid(context, "user_id", request.user_id),
            status=status,
            kind=kind,
            gateway_id=request.gateway_id or None,
            create_time_from=(
                request.create_time_from.ToDatetime()
                if request.HasField("create_time_from")
                else None
            ),
            create_time_to=(
                request.create_time_to.ToDatetime() if request.HasField("create_time_to") else None
            ),
        )
        views = await self._queries.search(where, after=after, limit=size + 1)
        response = apb.SearchPaymentsResponse(
            payments=[
                apb.AdminPayment(payment=payment_to_pb(v), user_id=v.user_id) for v in views[:size]
            ]
        )
        if len(views) > size:
            last = views[size - 1]
            response.next_page_token = _encode_cursor(
                SearchCursor(last.create_time, uuid.UUID(last.payment_id))
            )
        return response

    async def GetPaymentStory(
        self, request: apb.GetPaymentStoryRequest, context: Any
    ) -> apb.GetPaymentStoryResponse:
        await require_admin(context)
        payment_id = await _uuid(context, "payment_id", request.payment_id)
        if payment_id is None:
            await _invalid(context, "payment_id", "is required")
            raise AssertionError("unreachable")
        story = await self._queries.story(payment_id)
        if story is None:
            await abort(
                context, grpc.StatusCode.NOT_FOUND, "no such payment", reason=Reason.NOT_FOUND
            )
            raise AssertionError("unreachable")
        response = apb.GetPaymentStoryResponse(
            payment=apb.AdminPayment(
                payment=payment_to_pb(story.payment), user_id=story.payment.user_id
            ),
            events=[_event_to_pb(row) for row in story.events],
            gateway_results=[
                apb.GatewayResult(
                    event_id=r["event_id"],
                    gateway_id=r["gateway_id"],
                    outcome=r["outcome"],
                    apply_time=timestamp(r["apply_time"]),
                )
                for r in story.results
            ],
        )
        if story.dispatch is not None:
            d = story.dispatch
            response.dispatch.CopyFrom(
                apb.Dispatch(
                    gateway_id=d["gateway_id"],
                    attempt_count=d["attempt"],
                    callback_deadline=timestamp(d["callback_deadline"]),
                    update_time=timestamp(d["update_time"]),
                )
            )
        if story.verification is not None:
            v = story.verification
            response.verification.CopyFrom(
                apb.Verification(
                    issue_time=timestamp(v["issue_time"]),
                    expire_time=timestamp(v["expire_time"]),
                    failed_attempts=v["failed_attempts"],
                    outcome=v["outcome"] or "",
                )
            )
            if v["answer_time"] is not None:
                response.verification.answer_time.CopyFrom(timestamp(v["answer_time"]))
        for entry in story.entries:
            response.ledger_entries.append(
                apb.LedgerEntry(
                    entry_id=entry["id"],
                    description=entry["description"],
                    create_time=timestamp(entry["create_time"]),
                    postings=[
                        apb.Posting(
                            account_purpose=p["purpose"],
                            account_owner_user_id=(
                                "" if p["owner_user_id"] is None else str(p["owner_user_id"])
                            ),
                            amount=pb.Money(
                                currency_code=p["currency_code"].strip(),
                                amount_minor=p["amount_minor"],
                            ),
                        )
                        for p in story.postings
                        if p["entry_id"] == entry["id"]
                    ],
                )
            )
        return response

    async def ListGateways(
        self, request: apb.ListGatewaysRequest, context: Any
    ) -> apb.ListGatewaysResponse:
        await require_admin(context)
        return apb.ListGatewaysResponse(
            gateways=[_gateway_to_pb(row) for row in await self._queries.gateways()]
        )

    async def UpdateGateway(
        self, request: apb.UpdateGatewayRequest, context: Any
    ) -> apb.UpdateGatewayResponse:
        await require_admin(context)
        if not request.gateway_id:
            await _invalid(context, "gateway_id", "is required")
        priority = request.priority if request.HasField("priority") else None
        if priority is not None and not -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT:
            await _invalid(context, "priority", f"must be within ±{PRIORITY_LIMIT}")
        row = await self._queries.update_gateway(
            request.gateway_id,
            enabled=request.enabled if request.HasField("enabled") else None,
            priority=priority,
        )
        if row is None:
            await abort(
                context, grpc.StatusCode.NOT_FOUND, "no such gateway", reason=Reason.NOT_FOUND
            )
        return apb.UpdateGatewayResponse(gateway=_gateway_to_pb(row))
