"""Baseline (a): a bare grpc.aio echo server, the ceiling of our gRPC stack on this box.

It runs as its own process (like any payrail service) on 127.0.0.1, has one unary
method that takes the bytes of a CreatePaymentRequest and answers with as many bytes as
a CreatePaymentResponse, with no interceptors, no authentication and no I/O, and is
driven by the same open-loop generator as the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from typing import Any

import grpc

from bench.channels import channel_options, code_name

METHOD = "/payrail.bench.v1.Echo/Echo"


def _handler(response: bytes) -> grpc.GenericRpcHandler:
    async def echo(request: bytes, context: Any) -> bytes:
        return response

    # No (de)serializers: the handler sees and returns raw bytes.
    method = grpc.unary_unary_rpc_method_handler(echo)
    return grpc.method_handlers_generic_handler("payrail.bench.v1.Echo", {"Echo": method})


async def serve(port: int, response_bytes: int) -> None:
    """Serve until SIGTERM/SIGINT; print ``PORT <n>`` on stdout once bound."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(b"\x00" * response_bytes),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"PORT {bound}", flush=True)  # noqa: T201 - the parent reads it
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


class EchoServerProcess:
    """The echo server as a child process (``python -m bench echo-server``)."""

    def __init__(self, response_bytes: int) -> None:
        self._response_bytes = response_bytes
        self._process: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self, timeout_s: float = 20.0) -> int:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench",
                "echo-server",
                "--response-bytes",
                str(self._response_bytes),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"echo server did not start (said {line!r})")
        self.port = int(line.split()[1])
        return self.port

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class EchoTarget:
    """Sends the request bytes to the echo server over several channels, round robin."""

    def __init__(self, port: int, request: bytes, *, channels: int, timeout_s: float) -> None:
        self._channels = [
            grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options(i))
            for i in range(channels)
        ]
        self._calls = [ch.unary_unary(METHOD) for ch in self._channels]
        self._request = request
        self._timeout_s = timeout_s

    async def send(self, index: int) -> str:
        call = self._calls[index % len(self._calls)]
        try:
            await call(self._request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            return code_name(exc)
        return "OK"

    async def close(self) -> None:
        for channel in self._channels:
            with contextlib.suppress(Exception):
                await channel.close()
