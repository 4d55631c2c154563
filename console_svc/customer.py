"""Customer pages: sign-up and sign-in, balances, payments (form, list, live page,
step-up verification), loyalty and benefit tips."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping

import grpc
from aiohttp import web

from console_svc import presenting
from console_svc.forms import FORM, errors_by_field, parse_payment_form
from console_svc.money import CURRENCY_DIGITS
from console_svc.session import Session
from console_svc.upstream import UpstreamError
from console_svc.web import (
    console,
    error_page,
    now_s,
    redirect,
    render,
    session_of,
    set_session,
    signed_in,
    token,
)
from payrail.auth.v1 import auth_pb2
from payrail.insights.v1 import insights_pb2
from payrail.payments.v1 import payments_pb2

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

PAGE_SIZE = 20
_REGISTER_FIELDS = {"email", "password", "first_name", "last_name"}


async def _form(request: web.Request) -> dict[str, str]:
    posted = await request.post()
    return {k: v for k, v in posted.items() if isinstance(v, str)}


def _retry_text(exc: UpstreamError) -> str:
    return "Too many attempts from here; wait a few minutes and try again."


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    raise redirect("/dashboard" if session is not None and session.signed_in else "/login")


@routes.get("/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    return render(
        request, "login.html", next=presenting.safe_next(request.query.get("next", "/dashboard"))
    )


async def _sign_in(request: web.Request, email: str, password: str) -> None:
    """Log in through the edge and put the tokens and profile into a new session."""
    c = console(request)
    reply = await c.edge.call(
        c.edge.auth.Login, auth_pb2.LoginRequest(email=email, password=password)
    )
    profile = await c.edge.call(
        c.edge.auth.GetProfile, auth_pb2.GetProfileRequest(), token=reply.access_token
    )
    current = session_of(request) or Session.anonymous(now_s())
    set_session(
        request,
        current.signed_in_as(
            access_token=reply.access_token,
            refresh_token=reply.refresh_token,
            access_expires_at=now_s() + reply.access_token_expires_in_seconds,
            user_id=profile.user_id,
            email=profile.email,
            display_name=f"{profile.first_name} {profile.last_name}".strip() or profile.email,
            role="admin" if profile.role == auth_pb2.ROLE_ADMIN else "customer",
            now_s=now_s(),
        ),
    )


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    email, password = form.get("email", "").strip(), form.get("password", "")
    target = presenting.safe_next(form.get("next", "/dashboard"))
    try:
        await _sign_in(request, email, password)
    except UpstreamError as exc:
        if exc.code == grpc.StatusCode.UNAUTHENTICATED:
            message = "That e-mail and password do not match an account."
        elif exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            message = _retry_text(exc)
        else:
            message = exc.message
        return render(
            request, "login.html", http_status=400, error=message, email=email, next=target
        )
    raise redirect(target)


@routes.get("/register")
async def register_page(request: web.Request) -> web.StreamResponse:
    return render(request, "register.html", values={}, errors={})


@routes.post("/register")
async def register(request: web.Request) -> web.StreamResponse:
    c = console(request)
    form = await _form(request)
    values = {k: form.get(k, "").strip() for k in ("email", "first_name", "last_name")}
    password = form.get("password", "")
    errors: dict[str, str] = {}
    if password != form.get("password_confirm", ""):
        errors["password_confirm"] = "the two passwords differ"  # noqa: S105 - a message
    if not errors:
        try:
            await c.edge.call(
                c.edge.auth.Register,
                auth_pb2.RegisterRequest(password=password, **values),
            )
        except UpstreamError as exc:
            if exc.code == grpc.StatusCode.INVALID_ARGUMENT and exc.violations:
                for path, description in exc.violations:
                    errors[path if path in _REGISTER_FIELDS else FORM] = description
            elif exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                errors[FORM] = _retry_text(exc)
            else:
                errors[FORM] = exc.message
    if errors:
        return render(request, "register.html", http_status=400, values=values, errors=errors)
    try:
        await _sign_in(request, values["email"], password)
    except UpstreamError:
        # The platform answers a taken address exactly like a new one; only a login shows
        # which it was, and the owner of a taken address has been told by e-mail.
        return render(
            request,
            "login.html",
            notice="If that address was new, your account is ready: log in.",
            email=values["email"],
            next="/dashboard",
        )
    raise redirect("/dashboard")


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    c = console(request)
    session = session_of(request)
    if session is not None and session.signed_in:
        try:
            await c.edge.call(
                c.edge.auth.Logout, auth_pb2.LogoutRequest(), token=session.access_token
            )
        except UpstreamError as exc:
            log.info("logout upstream failed", extra={"code": exc.code.name})
    set_session(request, Session.anonymous(now_s()))
    raise redirect("/login")


@routes.get("/dashboard")
@signed_in
async def dashboard(request: web.Request) -> web.StreamResponse:
    c = console(request)
    balances, recent = await asyncio.gather(
        c.edge.call(
            c.edge.payments.GetBalance, payments_pb2.GetBalanceRequest(), token=token(request)
        ),
        c.edge.call(
            c.edge.payments.ListPayments,
            payments_pb2.ListPaymentsRequest(page_size=5),
            token=token(request),
        ),
    )
    return render(request, "dashboard.html", balances=balances.balances, payments=recent.payments)


def _new_form_values() -> dict[str, str]:
    return {
        "idempotency_key": str(uuid.uuid4()),
        "kind": "deposit",
        "currency": "USD",
        "funding_source": "card",
    }


@routes.get("/payments/new")
@signed_in
async def new_payment(request: web.Request) -> web.StreamResponse:
    values = _new_form_values()
    kind = request.query.get("kind", "")
    if kind in ("deposit", "withdrawal", "purchase"):
        values["kind"] = kind
    return render(request, "payment_new.html", values=values, errors={}, currencies=CURRENCY_DIGITS)


def _form_echo(form: Mapping[str, str]) -> dict[str, str]:
    """What to put back into the form after an error: never the card number or CVC."""
    return {k: v for k, v in form.items() if k not in ("card_number", "card_cvc", "csrf_token")}


@routes.post("/payments")
@signed_in
async def create_payment(request: web.Request) -> web.StreamResponse:
    c = console(request)
    form = await _form(request)
    parsed = parse_payment_form(form)
    try:
        if not parsed.request.idempotency_key:
            raise UpstreamError(grpc.StatusCode.INVALID_ARGUMENT, "reload the form")
        reply = await c.edge.call(
            c.edge.payments.CreatePayment, parsed.request, token=token(request)
        )
    except UpstreamError as exc:
        if exc.code == grpc.StatusCode.UNAUTHENTICATED:
            raise
        errors = errors_by_field(exc.violations, parsed.errors)
        if not errors:
            errors[FORM] = exc.message
        values = _form_echo(form)
        if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
            # Refused for good (e.g. insufficient funds): a new try is a new payment.
            values["idempotency_key"] = str(uuid.uuid4())
        return render(
            request,
            "payment_new.html",
            http_status=400,
            values=values,
            errors=errors,
            currencies=CURRENCY_DIGITS,
        )
    raise redirect(f"/payments/{reply.payment.payment_id}")


@routes.get("/payments")
@signed_in
async def list_payments(request: web.Request) -> web.StreamResponse:
    c = console(request)
    status_name = request.query.get("status", "")
    kind_name = request.query.get("kind", "")
    page_token = request.query.get("page_token", "")
    listing = await c.edge.call(
        c.edge.payments.ListPayments,
        payments_pb2.ListPaymentsRequest(
            page_size=PAGE_SIZE,
            page_token=page_token,
            status=presenting.STATUS_FILTERS.get(
                status_name, payments_pb2.PAYMENT_STATUS_UNSPECIFIED
            ),
            kind=presenting.KIND_FILTERS.get(kind_name, payments_pb2.PAYMENT_KIND_UNSPECIFIED),
        ),
        token=token(request),
    )
    return render(
        request,
        "payments.html",
        payments=listing.payments,
        next_page_token=listing.next_page_token,
        status=status_name,
        kind=kind_name,
        first_page=not page_token,
        statuses=presenting.STATUS_FILTERS,
        kinds=presenting.KIND_FILTERS,
    )


def _valid_id(payment_id: str) -> str:
    try:
        return str(uuid.UUID(payment_id))
    except ValueError:
        raise web.HTTPNotFound() from None


@routes.get("/payments/{payment_id}")
@signed_in
async def payment_page(request: web.Request) -> web.StreamResponse:
    c = console(request)
    payment_id = _valid_id(request.match_info["payment_id"])
    reply = await c.edge.call(
        c.edge.payments.GetPayment,
        payments_pb2.GetPaymentRequest(payment_id=payment_id),
        token=token(request),
    )
    return render(
        request,
        "payment.html",
        payment=reply.payment,
        final=reply.payment.status in presenting.FINAL_STATUSES,
        verify_error=request.query.get("verify_error", ""),
    )


def payment_json(payment: payments_pb2.Payment) -> str:
    """One timeline entry as the page's script reads it."""
    return json.dumps(
        {
            "payment_id": payment.payment_id,
            "status": presenting.status_key(payment.status),
            "status_label": presenting.status_label(payment.status),
            "version": payment.version,
            "time": presenting.iso_time(payment.update_time),
            "final": payment.status in presenting.FINAL_STATUSES,
            "failure_code": payment.failure_code,
            "failure_message": payment.failure_message,
            "verification_reason": payment.verification_reason,
            "verified": payment.verified,
        }
    )


@routes.get("/payments/{payment_id}/events")
@signed_in
async def payment_events(request: web.Request) -> web.StreamResponse:
    """WatchPayment bridged to server-sent events: one ``payment`` event per state."""
    c = console(request)
    payment_id = _valid_id(request.match_info["payment_id"])
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    stream = c.edge.stream(
        c.edge.payments.WatchPayment,
        payments_pb2.WatchPaymentRequest(payment_id=payment_id),
        token=token(request),
        timeout_s=c.watch_max_s,
    )
    await response.prepare(request)
    try:
        async for item in stream:
            await response.write(f"event: payment\ndata: {payment_json(item.payment)}\n\n".encode())
        await response.write(b"event: end\ndata: {}\n\n")
    except UpstreamError as exc:
        if exc.code != grpc.StatusCode.DEADLINE_EXCEEDED:
            data = json.dumps({"message": exc.message})
            await response.write(f"event: failure\ndata: {data}\n\n".encode())
    except ConnectionResetError:
        pass  # the browser went away
    return response


@routes.post("/payments/{payment_id}/verify")
@signed_in
async def verify_payment(request: web.Request) -> web.StreamResponse:
    c = console(request)
    payment_id = _valid_id(request.match_info["payment_id"])
    form = await _form(request)
    decline = form.get("decision", "") == "decline"
    try:
        await c.edge.call(
            c.edge.payments.VerifyPayment,
            payments_pb2.VerifyPaymentRequest(
                payment_id=payment_id, code=form.get("code", "").strip(), decline=decline
            ),
            token=token(request),
        )
    except UpstreamError as exc:
        if exc.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            message = exc.message
            left = exc.metadata.get("attempts_remaining")
            if exc.reason == "VERIFICATION_CODE_INVALID" or left is not None:
                message = "That code is not right." + (
                    f" {left} attempts left." if left is not None else ""
                )
            elif exc.violations:
                message = "; ".join(d for _, d in exc.violations)
            reply = await c.edge.call(
                c.edge.payments.GetPayment,
                payments_pb2.GetPaymentRequest(payment_id=payment_id),
                token=token(request),
            )
            return render(
                request,
                "payment.html",
                http_status=400,
                payment=reply.payment,
                final=reply.payment.status in presenting.FINAL_STATUSES,
                verify_error=message,
            )
        return error_page(request, exc)
    raise redirect(f"/payments/{payment_id}")


@routes.get("/insights")
@signed_in
async def insights(request: web.Request) -> web.StreamResponse:
    c = console(request)
    errors: list[str] = []
    standings: list[insights_pb2.MerchantStanding] = []
    tips: list[insights_pb2.BenefitTip] = []
    try:
        found = await c.edge.call(
            c.edge.insights.ListLoyaltyStandings,
            insights_pb2.ListLoyaltyStandingsRequest(page_size=50),
            token=token(request),
        )
        standings = list(found.standings)
        tipped = await c.edge.call(
            c.edge.insights.ListBenefitTips,
            insights_pb2.ListBenefitTipsRequest(page_size=50),
            token=token(request),
        )
        tips = list(tipped.tips)
    except UpstreamError as exc:
        if exc.code == grpc.StatusCode.UNAUTHENTICATED:
            raise
        errors.append(exc.message)
    return render(request, "insights.html", standings=standings, tips=tips, errors=errors)
