"""The process entry point shared by every service's ``__main__``.

Reads the settings, configures logging, starts the Prometheus endpoint, lets the
service's composition root build its server, and serves until SIGTERM/SIGINT. A failure
to start (bad configuration, a dependency that never came up, a port in use) is one
clear log line and exit code 1, not a stack trace on the console.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from prometheus_client import start_http_server

from payrail_common.config import ConfigError
from payrail_common.grpcserver import ServerHandle, serve
from payrail_common.logs import configure_logging

log = logging.getLogger(__name__)


class ServiceSettings(Protocol):
    """What the runtime needs from any service's settings."""

    @property
    def host(self) -> str: ...
    @property
    def metrics_port(self) -> int: ...
    @property
    def shutdown_grace_s(self) -> int: ...
    @property
    def log_level(self) -> str: ...


S = TypeVar("S", bound=ServiceSettings)


def run_service(
    name: str, load: Callable[[], S], build: Callable[[S], Awaitable[ServerHandle]]
) -> int:
    """Run one service process to completion; return its exit code."""
    try:
        settings = load()
    except ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    configure_logging(name, settings.log_level)

    async def main() -> None:
        handle = await build(settings)
        await serve(handle, grace_s=settings.shutdown_grace_s)

    try:
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.host)
        asyncio.run(main())
    except (ConfigError, TimeoutError, OSError) as exc:
        log.error("failed to start", extra={"error": str(exc)})
        return 1
    return 0
