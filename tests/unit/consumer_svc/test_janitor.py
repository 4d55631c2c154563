"""The janitor's loop: an unreachable payment_svc is waited out, anything else propagates."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import grpc
import pytest

from consumer_svc.janitor import Janitor
from payrail.internal.v1 import payment_ops_pb2 as ops

pytestmark = pytest.mark.asyncio(loop_scope="session")


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "test")


class FlakyOps:
    """Sweep answers with the given errors first, then succeeds (empty passes)."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors
        self.calls = 0
        self.succeeded = asyncio.Event()

    async def Sweep(self, request: ops.SweepRequest, **_: float) -> ops.SweepResponse:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.succeeded.set()
        return ops.SweepResponse()


def janitor(stub: FlakyOps) -> Janitor:
    return Janitor(
        ops_stub=cast(Any, stub), processor=cast(Any, None), interval_s=0.01, batch_max=5
    )


async def test_an_unreachable_payment_svc_is_logged_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub = FlakyOps([rpc_error(grpc.StatusCode.UNAVAILABLE), ConnectionRefusedError()])
    loop = janitor(stub)
    with caplog.at_level(logging.WARNING, logger="consumer_svc.janitor"):
        task = asyncio.create_task(loop._run())
        await asyncio.wait_for(stub.succeeded.wait(), timeout=5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    warnings = [r for r in caplog.records if r.getMessage() == "janitor pass failed; retrying"]
    assert [getattr(r, "error", "") for r in warnings] == [
        "grpc UNAVAILABLE",
        "ConnectionRefusedError",
    ]
    assert stub.calls == 3


async def test_a_permanent_error_ends_the_pass_for_the_supervisor() -> None:
    stub = FlakyOps([rpc_error(grpc.StatusCode.PERMISSION_DENIED)])
    with pytest.raises(grpc.aio.AioRpcError):
        await asyncio.wait_for(janitor(stub)._run(), timeout=5)
    stub = FlakyOps([ValueError("a bug")])
    with pytest.raises(ValueError, match="a bug"):
        await asyncio.wait_for(janitor(stub)._run(), timeout=5)
