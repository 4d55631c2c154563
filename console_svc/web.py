"""The console's HTTP plumbing: sessions in and out of cookies, CSRF and security headers,
signing-in guards, rendering, and the page for an upstream error."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import jinja2
from aiohttp import web

from console_svc import presenting
from console_svc.security import SAFE_METHODS, SECURITY_HEADERS, csrf_refusal
from console_svc.session import Session, SessionCodec
from console_svc.upstream import Edge, UpstreamError
from payrail.auth.v1 import auth_pb2

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Refresh the access token when it has less than this left (a page makes a few calls).
REFRESH_MARGIN_S = 60


@dataclass(frozen=True)
class Console:
    """What every handler needs; stored on the application as ``app[CONSOLE]``."""

    edge: Edge
    codec: SessionCodec
    templates: jinja2.Environment
    cookie_name: str
    cookie_secure: bool
    watch_max_s: int


CONSOLE = web.AppKey("console", Console)


def console(request: web.Request) -> Console:
    return request.app[CONSOLE]


def now_s() -> int:
    return int(time.time())


def session_of(request: web.Request) -> Session | None:
    value: Session | None = request.get("session")
    return value


def set_session(request: web.Request, session: Session | None) -> None:
    """Replace the request's session; the response carries the new cookie (or clears it)."""
    request["session"] = session
    request["session_changed"] = True


def _write_cookie(request: web.Request, response: web.StreamResponse) -> None:
    c = console(request)
    session = session_of(request)
    if session is None:
        response.del_cookie(c.cookie_name, path="/")
        return
    response.set_cookie(
        c.cookie_name,
        c.codec.seal(session),
        path="/",
        max_age=c.codec.max_age_s,
        httponly=True,
        secure=c.cookie_secure,
        samesite="Strict",
    )


async def _refresh(request: web.Request, session: Session) -> Session | None:
    """A session whose access token has time left, or None when it cannot be renewed."""
    if session.access_expires_at - now_s() > REFRESH_MARGIN_S:
        return session
    c = console(request)
    try:
        reply = await c.edge.call(
            c.edge.auth.RefreshToken,
            auth_pb2.RefreshTokenRequest(refresh_token=session.refresh_token),
        )
    except UpstreamError as exc:
        if exc.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise
        return None
    set_session(
        request,
        session.with_tokens(
            reply.access_token,
            reply.refresh_token,
            now_s() + reply.access_token_expires_in_seconds,
        ),
    )
    return session_of(request)


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    c = console(request)
    raw = request.cookies.get(c.cookie_name, "")
    session = c.codec.open(raw, now_s=now_s()) if raw else None
    request["session"] = session
    request["session_changed"] = bool(raw) and session is None
    if session is not None and session.signed_in:
        try:
            fresh = await _refresh(request, session)
        except UpstreamError as exc:
            return error_page(request, exc, status=503)
        if fresh is None:
            set_session(request, Session.anonymous(now_s()))
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if request.get("session_changed"):
            _write_cookie(request, exc)
        raise
    if request.get("session_changed") and not response.prepared:
        _write_cookie(request, response)
    return response


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    c = console(request)
    session = session_of(request)
    presented = request.headers.get("X-CSRF-Token", "")
    if (
        not presented
        and request.method not in SAFE_METHODS
        and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.post()
        value = form.get("csrf_token", "")
        presented = value if isinstance(value, str) else ""
    reason = csrf_refusal(
        method=request.method,
        host=request.host,
        scheme="https" if c.cookie_secure else request.scheme,
        origin=request.headers.get("Origin", ""),
        fetch_site=request.headers.get("Sec-Fetch-Site", ""),
        has_session=session is not None,
        token_ok=session is not None and c.codec.csrf_ok(session, presented),
    )
    if reason:
        log.warning(
            "request refused",
            extra={
                "path": request.path,
                "reason": reason,
                "origin": request.headers.get("Origin", ""),
            },
        )
        return render(
            request,
            "error.html",
            http_status=403,
            title="Request refused",
            message="This form has expired or did not come from this console. "
            "Reload the page and try again.",
        )
    return await handler(request)


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
    return response


def render(
    request: web.Request, template: str, *, http_status: int = 200, **context: Any
) -> web.Response:
    c = console(request)
    session = session_of(request)
    if session is None:
        session = Session.anonymous(now_s())
        set_session(request, session)
    body = c.templates.get_template(template).render(
        session=session,
        csrf_token=c.codec.csrf_token(session),
        path=request.path,
        **context,
    )
    return web.Response(text=body, status=http_status, content_type="text/html", charset="utf-8")


def error_page(request: web.Request, exc: UpstreamError, *, status: int = 502) -> web.Response:
    if exc.code == grpc.StatusCode.NOT_FOUND:
        status = 404
    elif exc.code == grpc.StatusCode.PERMISSION_DENIED:
        status = 403
    return render(
        request, "error.html", status=status, title="Something went wrong", message=exc.message
    )


def redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


def signed_in(handler: Handler) -> Handler:
    """Pages for signed-in users; others are sent to the login page."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        session = session_of(request)
        if session is None or not session.signed_in:
            if request.method == "GET" and request.path != "/":
                raise redirect(f"/login?next={presenting.safe_next(request.path_qs)}")
            raise redirect("/login")
        try:
            return await handler(request)
        except UpstreamError as exc:
            if exc.code == grpc.StatusCode.UNAUTHENTICATED:
                set_session(request, Session.anonymous(now_s()))
                raise redirect("/login") from None
            return error_page(request, exc)

    return guarded


def operators_only(handler: Handler) -> Handler:
    """Operator pages: signed in with the admin role, or 403 for everyone else."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        session = session_of(request)
        if session is not None and session.signed_in and not session.is_admin:
            log.warning("operator page refused", extra={"path": request.path})
            return render(
                request,
                "error.html",
                http_status=403,
                title="Operators only",
                message="This page is for operators. Your account does not have that role.",
            )
        return await handler(request)

    return signed_in(guarded)


def token(request: web.Request) -> str:
    session = session_of(request)
    return session.access_token if session is not None else ""
