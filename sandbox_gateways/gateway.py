"""One sandbox gateway process: the SDK's worker plus test-card behaviour and a health port."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from aiokafka import AIOKafkaConsumer
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from gateway_sdk import CallbackSecret, CardData, GatewayRequest, GatewayResult, get_format
from gateway_sdk.runtime import (
    CallbackClient,
    GatewayWorker,
    RequestIdLogFilter,
    connect,
    result_for,
)
from gateway_sdk.sealing import load_private_key
from payrail_common.grpcserver import create_server
from payrail_common.logs import configure_logging

log = logging.getLogger("sandbox_gateways")

APPROVE = "4242424242424242"
DECLINES = {
    "4000000000000002": ("card_declined", "the card was declined"),
    "4000000000009995": ("insufficient_funds", "the card has insufficient funds"),
}
NEVER_ANSWERS = "4000000000000119"


@dataclass(frozen=True)
class SandboxSettings:
    gateway_id: str
    wire_format: str
    port: int
    kafka_bootstrap: str
    callback_target: str
    private_key_file: Path
    secret_file: Path
    latency_ms: int
    # Results ready within linger_ms of each other share one ReportResults call (at most
    # batch_max; 1: every result alone, with ReportResult).
    linger_ms: float = 5.0
    batch_max: int = 100

    @classmethod
    def from_env(
        cls, gateway_id: str, wire_format: str, port_var: str, port: int
    ) -> SandboxSettings:
        keys = Path(os.environ.get("PAYRAIL_SANDBOX_KEYS_DIR", ".data/keys"))
        return cls(
            gateway_id=gateway_id,
            wire_format=wire_format,
            port=int(os.environ.get(port_var, str(port))),
            kafka_bootstrap=os.environ.get("PAYRAIL_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            callback_target=os.environ.get("PAYRAIL_CALLBACK_TARGET", "127.0.0.1:50051"),
            private_key_file=keys / f"{gateway_id}.x25519",
            secret_file=keys / f"{gateway_id}.secret",
            latency_ms=int(os.environ.get("PAYRAIL_SANDBOX_LATENCY_MS", "20")),
            linger_ms=float(os.environ.get("PAYRAIL_SANDBOX_LINGER_MS", "5")),
            batch_max=int(os.environ.get("PAYRAIL_SANDBOX_BATCH_MAX", "100")),
        )


def decide(request: GatewayRequest, card: CardData | None) -> GatewayResult | None:
    """Test-card behaviour; wallet-funded purchases (no card) are approved."""
    number = "" if card is None else card.number
    if number == NEVER_ANSWERS:
        return None
    if number in DECLINES:
        code, message = DECLINES[number]
        return result_for(request, approved=False, failure_code=code, failure_message=message)
    return result_for(request, approved=True, gateway_reference=f"sbx_{request.request_id}")


async def serve(settings: SandboxSettings) -> None:
    wire_format = get_format(settings.wire_format)
    key = load_private_key(base64.b64decode(settings.private_key_file.read_text().strip()))
    secrets = [CallbackSecret.from_base64(settings.secret_file.read_text().strip())]

    async def charge(request: GatewayRequest, card: CardData | None) -> GatewayResult | None:
        await asyncio.sleep(settings.latency_ms / 1000)
        return decide(request, card)

    # payrail's server shell: health, reflection, and the call guard (a malformed health
    # check is INVALID_ARGUMENT, never UNKNOWN naming a parser exception).
    handle = create_server(host="127.0.0.1", port=settings.port, registrars=(), service_names=())
    health = handle.health
    consumer = AIOKafkaConsumer(
        f"gateway.{settings.gateway_id}.requests",
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.gateway_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    channel = connect(settings.callback_target)
    worker = GatewayWorker(
        consumer=consumer,
        wire_format=wire_format,
        private_key=key,
        callbacks=CallbackClient(
            channel, gateway_id=settings.gateway_id, wire_format=wire_format, secrets=secrets
        ),
        charge=charge,
        linger_ms=settings.linger_ms,
        batch_max=settings.batch_max,
    )
    await consumer.start()
    await handle.start()
    log.info("sandbox gateway %s (%s) consuming", settings.gateway_id, settings.wire_format)
    task = asyncio.create_task(worker.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    health_task = asyncio.create_task(_mirror_health(health, worker))
    done, _ = await asyncio.wait(
        {task, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    task.cancel()
    health_task.cancel()
    await handle.stop(2)
    await consumer.stop()
    await channel.close()
    if task in done and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


async def _mirror_health(health: HealthServicer, worker: GatewayWorker) -> None:
    """``payrail.dependency.payrail`` is NOT_SERVING while the worker waits for payrail
    or Kafka to come back."""
    name = "payrail.dependency.payrail"
    while True:
        waiting = worker.waiting
        await health.set(
            name,
            health_pb2.HealthCheckResponse.NOT_SERVING
            if waiting
            else health_pb2.HealthCheckResponse.SERVING,
        )
        await asyncio.sleep(2.0)


def configure_logs(gateway_id: str, stream: TextIO | None = None) -> None:
    """payrail's JSON log lines with card-number redaction: a sandbox opens sealed card
    data, so a PAN in a message or a traceback must never reach its log."""
    configure_logging(gateway_id, os.environ.get("PAYRAIL_LOG_LEVEL", "INFO"), stream)
    # The request id payrail sent with the request being handled, on every line.
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdLogFilter())


def main(gateway_id: str, wire_format: str, port_var: str, port: int) -> int:
    configure_logs(gateway_id)
    asyncio.run(serve(SandboxSettings.from_env(gateway_id, wire_format, port_var, port)))
    return 0
