"""console_svc's composition root: the edge channel, the HTTP app and the health server.

Why aiohttp: the console must bridge a server-streaming gRPC call (WatchPayment) to the
browser as it happens, and the services are asyncio throughout (grpc.aio); aiohttp is a
mature, well-kept asyncio HTTP server with streaming responses, cookies and middlewares
built in and no framework around them, so a handful of middlewares (security headers,
CSRF, sessions) and server-rendered Jinja2 templates (autoescaped) are the whole stack.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from aiohttp import web

from console_svc import customer, operator, presenting
from console_svc.config import Settings
from console_svc.session import SessionCodec
from console_svc.upstream import Edge
from console_svc.web import (
    CONSOLE,
    Console,
    csrf_middleware,
    headers_middleware,
    session_middleware,
)
from payrail_common.dependencies import grpc_health_check
from payrail_common.grpcserver import ServerHandle, create_server
from payrail_common.keys import read_secret_file
from payrail_common.probes import DependencyMonitor, Probe

HERE = Path(__file__).resolve().parent
# Request bodies are small forms; anything bigger is refused by aiohttp (413).
CLIENT_MAX_BYTES = 64 * 1024


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(presenting.filters())
    return env


def create_app(settings: Settings, edge: Edge, codec: SessionCodec) -> web.Application:
    app = web.Application(
        middlewares=[headers_middleware, session_middleware, csrf_middleware],
        client_max_size=CLIENT_MAX_BYTES,
    )
    app[CONSOLE] = Console(
        edge=edge,
        codec=codec,
        templates=templates(),
        # The __Host- prefix makes browsers insist on Secure, Path=/ and no Domain.
        cookie_name="__Host-payrail" if settings.cookie_secure else "payrail_console",
        cookie_secure=settings.cookie_secure,
        watch_max_s=settings.watch_max_s,
    )
    app.router.add_routes(customer.routes)
    app.router.add_routes(operator.routes)
    app.router.add_static("/static/", HERE / "static", append_version=False)
    return app


async def build(settings: Settings) -> ServerHandle:
    """Wire the console; serve HTTP at once; return the (health-only) gRPC server."""
    codec = SessionCodec(
        read_secret_file(Path(settings.cookie_key_file)), max_age_s=settings.session_max_age_s
    )
    edge = Edge(settings.gateway_target, deadline_s=settings.rpc_deadline_ms / 1000)
    runner = web.AppRunner(
        create_app(settings, edge, codec),
        access_log=None,
        shutdown_timeout=float(settings.shutdown_grace_s),
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        await edge.close()
        raise
    handle = create_server(host=settings.host, port=settings.port, registrars=[], service_names=())
    # The console is useless without the edge: it is NOT_SERVING while the edge is.
    handle.monitor = DependencyMonitor(
        handle.health, [Probe("gateway_svc", grpc_health_check(edge.channel))]
    )
    handle.on_stop.extend([edge.close, runner.cleanup])
    return handle
