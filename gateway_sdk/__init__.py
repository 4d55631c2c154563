"""payrail gateway SDK: the pure core a payment-gateway author builds on.

It decodes the requests payrail publishes on ``gateway.<gateway_id>.requests`` in the
gateway's wire format (``formats``), opens the card sealed to the gateway's X25519 key
(``sealing``), encodes the outcome (or a batch of outcomes) and signs it for
``CallbackService/ReportResult`` (``ReportResults`` for a batch) (``signing``). It does
no network I/O: bring your own Kafka consumer and gRPC channel (or use ``runtime``).
docs/callbacks.md specifies the signature and the envelope for other languages.

The shape of a gateway::

    import time, grpc
    from aiokafka import AIOKafkaConsumer
    import gateway_sdk as sdk
    from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc

    GATEWAY_ID = "sandbox-json"
    FORMAT = sdk.get_format("json")
    KEY = sdk.load_private_key(open("gateway.key", "rb").read())
    SECRETS = [sdk.CallbackSecret.from_base64(open("gateway.secret").read())]

    async def run() -> None:
        consumer = AIOKafkaConsumer(f"gateway.{GATEWAY_ID}.requests", group_id=GATEWAY_ID,
                                    bootstrap_servers="localhost:9092", enable_auto_commit=False)
        await consumer.start()
        try:
            async with grpc.aio.insecure_channel("localhost:50051") as channel:
                stub = callbacks_pb2_grpc.CallbackServiceStub(channel)
                async for message in consumer:
                    request = FORMAT.decode_request(message.value)
                    card = (None if request.sealed_card is None else sdk.unseal_card(
                        KEY, request.sealed_card, payment_id=request.payment_id))
                    approved = charge(card, request.amount_minor, request.currency_code)
                    payload = FORMAT.encode_result(sdk.GatewayResult(
                        event_id=f"{request.request_id}/result", payment_id=request.payment_id,
                        outcome="APPROVED" if approved else "DECLINED",
                        failure_code="" if approved else "card_declined",
                        occur_time=int(time.time())))
                    signed = sdk.signature_metadata(payload, SECRETS, timestamp=int(time.time()))
                    await stub.ReportResult(
                        callbacks_pb2.ReportResultRequest(gateway_id=GATEWAY_ID, payload=payload),
                        metadata=signed, timeout=5)
                    await consumer.commit()
        finally:
            await consumer.stop()

Deriving ``event_id`` from ``request_id`` makes a re-delivered request report the same
event, which payrail drops as a duplicate.
"""

from __future__ import annotations

from gateway_sdk import formats
from gateway_sdk.formats import get as get_format
from gateway_sdk.formats.base import (
    BATCH_ENCODED_MAX_BYTES,
    BATCH_RESULTS_MAX,
    FormatError,
    GatewayMerchant,
    GatewayRequest,
    GatewayResult,
    MaskedCard,
    WireFormat,
)
from gateway_sdk.sealing import (
    CardData,
    SealedCard,
    SealingError,
    generate_key_pair,
    load_private_key,
    load_public_key,
    private_key_to_pem,
    public_key_to_pem,
    public_key_to_raw,
    seal,
    seal_card,
    unseal,
    unseal_card,
)
from gateway_sdk.signing import (
    SIGNATURE_HEADER,
    TOLERANCE_S,
    CallbackSecret,
    ParsedSignature,
    SignatureError,
    SignatureVerifier,
    parse_header,
    sign,
    sign_with_secrets,
    signature_metadata,
    verify,
)

__all__ = [
    "BATCH_ENCODED_MAX_BYTES",
    "BATCH_RESULTS_MAX",
    "SIGNATURE_HEADER",
    "TOLERANCE_S",
    "CallbackSecret",
    "CardData",
    "FormatError",
    "GatewayMerchant",
    "GatewayRequest",
    "GatewayResult",
    "MaskedCard",
    "ParsedSignature",
    "SealedCard",
    "SealingError",
    "SignatureError",
    "SignatureVerifier",
    "WireFormat",
    "formats",
    "generate_key_pair",
    "get_format",
    "load_private_key",
    "load_public_key",
    "parse_header",
    "private_key_to_pem",
    "public_key_to_pem",
    "public_key_to_raw",
    "seal",
    "seal_card",
    "sign",
    "sign_with_secrets",
    "signature_metadata",
    "unseal",
    "unseal_card",
    "verify",
]
