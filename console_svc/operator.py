"""Operator pages (admin role only): payments across users and a payment's whole story,
the gateway registry, dead letters, the benefit catalog, the platform's health and the
audit trail of operator actions. Every change goes through an admin RPC of the edge,
which checks the role again and records the action."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp

from console_svc import presenting
from console_svc.upstream import UpstreamError
from console_svc.web import console, operators_only, redirect, render, token
from payrail.admin.v1 import admin_pb2 as apb
from payrail.insights.v1 import insights_pb2 as ipb
from payrail.payments.v1 import payments_pb2 as pb

routes = web.RouteTableDef()

PAGE_SIZE = 25
_BRANDS: dict[str, Any] = {
    name.removeprefix("CARD_BRAND_").lower(): value
    for name, value in pb.CardBrand.items()
    if value != pb.CARD_BRAND_UNSPECIFIED
}
_REWARDS = {"cashback": ipb.REWARD_KIND_CASHBACK, "points": ipb.REWARD_KIND_POINTS}


async def _form(request: web.Request) -> dict[str, str]:
    posted = await request.post()
    return {k: v for k, v in posted.items() if isinstance(v, str)}


def _utc(text: str) -> Timestamp | None:
    """A ``YYYY-MM-DDTHH:MM`` (or date) typed as UTC → Timestamp; None when empty/bad."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment.replace(tzinfo=moment.tzinfo or dt.UTC))
    return stamp


@routes.get("/ops")
@operators_only
async def ops_home(request: web.Request) -> web.StreamResponse:
    return render(request, "ops_home.html")


@routes.get("/ops/payments")
@operators_only
async def ops_payments(request: web.Request) -> web.StreamResponse:
    c = console(request)
    q = request.query
    search = apb.SearchPaymentsRequest(
        page_size=PAGE_SIZE,
        page_token=q.get("page_token", ""),
        payment_id=q.get("payment_id", "").strip(),
        user_id=q.get("user_id", "").strip(),
        gateway_id=q.get("gateway_id", "").strip(),
        status=presenting.STATUS_FILTERS.get(q.get("status", ""), pb.PAYMENT_STATUS_UNSPECIFIED),
        kind=presenting.KIND_FILTERS.get(q.get("kind", ""), pb.PAYMENT_KIND_UNSPECIFIED),
    )
    for field, name in (("create_time_from", "from"), ("create_time_to", "to")):
        stamp = _utc(q.get(name, ""))
        if stamp is not None:
            getattr(search, field).CopyFrom(stamp)
    error = ""
    payments: list[apb.AdminPayment] = []
    next_token = ""
    try:
        found = await c.edge.call(c.edge.payment_admin.SearchPayments, search, token=token(request))
        payments, next_token = list(found.payments), found.next_page_token
    except UpstreamError as exc:
        if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        error = "; ".join(f"{f}: {d}" for f, d in exc.violations) or exc.message
    params = {k: v for k, v in q.items() if k != "page_token" and v}
    return render(
        request,
        "ops_payments.html",
        payments=payments,
        next_page_token=next_token,
        query=params,
        error=error,
        statuses=presenting.STATUS_FILTERS,
        kinds=presenting.KIND_FILTERS,
    )


@routes.get("/ops/payments/{payment_id}")
@operators_only
async def ops_payment_story(request: web.Request) -> web.StreamResponse:
    c = console(request)
    try:
        payment_id = str(uuid.UUID(request.match_info["payment_id"]))
    except ValueError:
        raise web.HTTPNotFound() from None
    story = await c.edge.call(
        c.edge.payment_admin.GetPaymentStory,
        apb.GetPaymentStoryRequest(payment_id=payment_id),
        token=token(request),
    )
    risk: apb.GetRiskDecisionResponse | None = None
    risk_error = ""
    try:
        risk = await c.edge.call(
            c.edge.processing_admin.GetRiskDecision,
            apb.GetRiskDecisionRequest(payment_id=payment_id),
            token=token(request),
        )
    except UpstreamError as exc:
        if exc.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            raise
        risk_error = (
            "No risk decision recorded (not assessed yet, or never)."
            if exc.code == grpc.StatusCode.NOT_FOUND
            else exc.message
        )
    return render(request, "ops_story.html", story=story, risk=risk, risk_error=risk_error)


@routes.get("/ops/gateways")
@operators_only
async def ops_gateways(request: web.Request) -> web.StreamResponse:
    c = console(request)
    found = await c.edge.call(
        c.edge.payment_admin.ListGateways, apb.ListGatewaysRequest(), token=token(request)
    )
    return render(
        request, "ops_gateways.html", gateways=found.gateways, error=request.query.get("error", "")
    )


@routes.post("/ops/gateways/{gateway_id}")
@operators_only
async def ops_update_gateway(request: web.Request) -> web.StreamResponse:
    c = console(request)
    form = await _form(request)
    update = apb.UpdateGatewayRequest(gateway_id=request.match_info["gateway_id"])
    if form.get("enabled") in ("true", "false"):
        update.enabled = form["enabled"] == "true"
    if form.get("priority", "").strip():
        try:
            update.priority = int(form["priority"])
        except ValueError:
            raise redirect("/ops/gateways?error=priority+must+be+a+whole+number") from None
    try:
        await c.edge.call(c.edge.payment_admin.UpdateGateway, update, token=token(request))
    except UpstreamError as exc:
        if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        raise redirect("/ops/gateways?error=" + "+".join(exc.message.split())) from None
    raise redirect("/ops/gateways")


@routes.get("/ops/dead-letters")
@operators_only
async def ops_dead_letters(request: web.Request) -> web.StreamResponse:
    c = console(request)
    error_contains = request.query.get("error_contains", "")
    found = await c.edge.call(
        c.edge.processing_admin.ListDeadLetters,
        apb.ListDeadLettersRequest(error_contains=error_contains, page_size=100),
        token=token(request),
    )
    return render(
        request,
        "ops_dead_letters.html",
        letters=list(reversed(found.letters)),
        total=found.total_count,
        error_contains=error_contains,
        message=request.query.get("message", ""),
    )


@routes.post("/ops/dead-letters/redrive")
@operators_only
async def ops_redrive(request: web.Request) -> web.StreamResponse:
    c = console(request)
    form = await _form(request)
    try:
        await c.edge.call(
            c.edge.processing_admin.RedriveDeadLetter,
            apb.RedriveDeadLetterRequest(
                letter_id=form.get("letter_id", ""),
                reason=form.get("reason", "").strip(),
                again=form.get("again") == "on",
            ),
            token=token(request),
        )
    except UpstreamError as exc:
        if exc.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            raise
        raise redirect("/ops/dead-letters?message=" + "+".join(exc.message.split())) from None
    raise redirect("/ops/dead-letters?message=re-driven+" + form.get("letter_id", ""))


@routes.get("/ops/catalog")
@operators_only
async def ops_catalog(request: web.Request) -> web.StreamResponse:
    c = console(request)
    found = await c.edge.call(
        c.edge.catalog.ListBenefits, ipb.ListBenefitsRequest(), token=token(request)
    )
    return render(
        request,
        "ops_catalog.html",
        benefits=found.benefits,
        brands=_BRANDS,
        error=request.query.get("error", ""),
    )


@routes.post("/ops/catalog")
@operators_only
async def ops_catalog_change(request: web.Request) -> web.StreamResponse:
    c = console(request)
    form = await _form(request)
    brand = _BRANDS.get(form.get("brand", ""), pb.CARD_BRAND_UNSPECIFIED)
    category = form.get("category_code", "").strip()
    try:
        if form.get("action") == "delete":
            await c.edge.call(
                c.edge.catalog.DeleteBenefit,
                ipb.DeleteBenefitRequest(brand=brand, category_code=category),
                token=token(request),
            )
        else:
            rate = form.get("rate_bps", "").strip()
            await c.edge.call(
                c.edge.catalog.PutBenefit,
                ipb.PutBenefitRequest(
                    benefit=ipb.Benefit(
                        brand=brand,
                        category_code=category,
                        reward_kind=_REWARDS.get(
                            form.get("reward_kind", ""), ipb.REWARD_KIND_UNSPECIFIED
                        ),
                        rate_bps=int(rate) if rate.isdigit() and len(rate) < 7 else 0,
                        description=form.get("description", "").strip(),
                    )
                ),
                token=token(request),
            )
    except UpstreamError as exc:
        if exc.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            raise
        text = "; ".join(f"{f}: {d}" for f, d in exc.violations) or exc.message
        raise redirect("/ops/catalog?error=" + "+".join(text.split())) from None
    raise redirect("/ops/catalog")


@routes.get("/ops/health")
@operators_only
async def ops_health(request: web.Request) -> web.StreamResponse:
    c = console(request)
    found = await c.edge.call(
        c.edge.operator.GetPlatformHealth, apb.GetPlatformHealthRequest(), token=token(request)
    )
    return render(request, "ops_health.html", health=found)


@routes.get("/ops/audit")
@operators_only
async def ops_audit(request: web.Request) -> web.StreamResponse:
    c = console(request)
    page_token = request.query.get("page_token", "")
    found = await c.edge.call(
        c.edge.operator.ListOperatorActions,
        apb.ListOperatorActionsRequest(page_size=50, page_token=page_token),
        token=token(request),
    )
    return render(
        request,
        "ops_audit.html",
        actions=found.actions,
        next_page_token=found.next_page_token,
        first_page=not page_token,
    )
