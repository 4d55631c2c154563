"""Operator pages (admin role only)."""

from __future__ import annotations

from aiohttp import web

from console_svc.web import operators_only, render

routes = web.RouteTableDef()


@routes.get("/ops")
@operators_only
async def ops_home(request: web.Request) -> web.StreamResponse:
    return render(request, "ops_home.html")
