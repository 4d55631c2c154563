"""Client channel settings shared by every target."""

from __future__ import annotations

from typing import Any

import grpc


def channel_options(index: int) -> list[tuple[str, Any]]:
    """Options that give each channel its own TCP connection.

    grpc shares subchannels (connections) between channels with equal arguments; a
    private pool per channel makes N channels N connections, which is what lets the
    kernel spread them over several server processes sharing a port (SO_REUSEPORT).
    """
    return [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.primary_user_agent", f"payrail-bench/{index}"),
        ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ]


def code_name(exc: grpc.aio.AioRpcError) -> str:
    code = exc.code()
    return str(code.name) if isinstance(code, grpc.StatusCode) else str(code)
