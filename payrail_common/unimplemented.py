"""The honest answer for an RPC whose feature has not been built yet."""

from __future__ import annotations

from typing import NoReturn

import grpc


async def abort_unimplemented(context: grpc.aio.ServicerContext, rpc: str) -> NoReturn:
    """Answer UNIMPLEMENTED, naming the RPC; never a fake success."""
    await context.abort(
        grpc.StatusCode.UNIMPLEMENTED, f"{rpc} is not available yet in this payrail version"
    )
    raise AssertionError("context.abort() returned")  # abort always raises
