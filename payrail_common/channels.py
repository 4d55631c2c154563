"""The one way a payrail service opens a gRPC channel to another payrail service.

Reconnect backoff is short and capped: the default (up to 120 s between attempts) would
keep a caller failing for minutes after its upstream came back from a restart, and every
upstream here is a local, restartable process. Retries are off at the channel level:
callers retry by meaning (payrail_common.faults) with their own deadlines.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from payrail_common.tracing import RequestIdClientInterceptor

__all__ = ["RECONNECT_BACKOFF_MAX_MS", "internal_channel"]

RECONNECT_BACKOFF_MIN_MS = 200
RECONNECT_BACKOFF_MAX_MS = 2_000


def internal_channel(
    target: str, *, interceptors: Sequence[grpc.aio.ClientInterceptor] = ()
) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MIN_MS),
            ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MIN_MS),
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
        ],
        # Every call carries the request id it is made on behalf of (tracing).
        interceptors=[RequestIdClientInterceptor(), *interceptors],
    )
