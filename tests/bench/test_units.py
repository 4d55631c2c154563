"""The benchmark's arithmetic and the server-side knobs it relies on, without a stack."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest

from bench.loadgen import run_open_loop
from bench.stats import PhaseRecorder, linear_slope, percentile, summarize_ms
from payrail_common.grpcserver import INFLIGHT_MAX_DEFAULT, ServerTuning, configure, create_server
from payrail_common.runtime import ProcessSettings


def test_nearest_rank_percentiles() -> None:
    values = sorted(float(v) for v in range(1, 1001))
    assert percentile(values, 50) == 500
    assert percentile(values, 99) == 990
    assert percentile(values, 99.9) == 999
    assert math.isnan(percentile([], 50))
    summary = summarize_ms([0.001, 0.002, 0.003])
    assert summary["p50_ms"] == pytest.approx(2.0)
    assert summary["max_ms"] == pytest.approx(3.0)


def test_slope_of_a_growing_backlog() -> None:
    assert linear_slope([(0, 0), (1, 10), (2, 20)]) == pytest.approx(10)
    assert linear_slope([(0, 5), (1, 5)]) == 0


def test_latency_counts_from_the_scheduled_time_when_the_server_stalls() -> None:
    """Open loop: a 300 ms stall shows as latency on every request scheduled during it,
    and the requests keep leaving on schedule (no coordinated omission)."""
    stalled = asyncio.Event()

    async def send(index: int) -> str:
        if index == 10:  # the server stalls everyone in flight for 0.3 s
            stalled.set()
        if stalled.is_set() and index < 40:
            await asyncio.sleep(0.3)
        return "OK"

    recorder = PhaseRecorder("t", offered_rate=100, warmup_s=0, duration_s=1)
    asyncio.run(run_open_loop(recorder, send, progress=False))
    assert len(recorder.samples) == 100
    slow = [s for s in recorder.samples if s.latency_s >= 0.29]
    assert len(slow) >= 25
    summary = recorder.summary()
    assert summary["latency"]["p99_ms"] >= 290
    assert summary["achieved_rate"] == pytest.approx(100, rel=0.05)


def test_process_settings_from_the_environment() -> None:
    env = {"PAYRAIL_PAYMENT_WORKERS": "3", "PAYRAIL_PAYMENT_INFLIGHT_MAX": "0"}
    settings = ProcessSettings.from_env("payment_svc", env)
    assert (settings.workers, settings.inflight_max, settings.worker_index) == (3, 0, 0)
    default = ProcessSettings.from_env("gateway_svc", {})
    assert default.workers == 1
    assert default.inflight_max == INFLIGHT_MAX_DEFAULT


def test_a_full_server_sheds_with_resource_exhausted_and_recovers() -> None:
    """inflight_max=2: the third concurrent call is refused at once, later ones pass."""
    release = asyncio.Event()

    async def slow(request: bytes, context: object) -> bytes:
        await release.wait()
        return b"ok"

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(slow)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("t.Slow", {"Call": handler}),)
        )

    async def scenario() -> None:
        configure(ServerTuning(inflight_max=2))
        try:
            handle = create_server(
                host="127.0.0.1", port=0, registrars=[register], service_names=()
            )
        finally:
            configure(ServerTuning())
        await handle.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
                call = channel.unary_unary("/t.Slow/Call")
                first = [asyncio.ensure_future(call(b"", timeout=5)) for _ in range(2)]
                await asyncio.sleep(0.3)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call(b"", timeout=5)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                release.set()
                assert await asyncio.gather(*first) == [b"ok", b"ok"]
                assert await call(b"", timeout=5) == b"ok"
        finally:
            await handle.stop(0)

    asyncio.run(scenario())


def test_bench_cards_are_luhn_valid_and_distinct() -> None:
    from bench.payrail_target import CARD, card_for_user
    from payment_svc.domain.cards import luhn_valid

    cards = [card_for_user(n) for n in range(500)]
    assert cards[0] == CARD
    assert len(set(cards)) == 500
    assert all(len(c) == 16 and luhn_valid(c) for c in cards)
