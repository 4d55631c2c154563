"""The ``protobuf`` wire format.

Results are ``payrail.callbacks.v1.GatewayResult`` in the protobuf binary encoding:
``outcome`` is the ``OUTCOME_*`` enum, ``occur_time`` a ``google.protobuf.Timestamp``
(sub-second ``nanos`` are accepted and dropped: payrail keeps whole seconds). A batch of
results is ``payrail.callbacks.v1.GatewayResultBatch``: ``repeated GatewayResult
results = 1``, 1 to 500 of them, applied in order.

Requests: payrail's contracts define no protobuf message for a gateway request, and
this SDK does not invent one outside ``protos/``. Until such a message exists, a
``protobuf`` gateway receives its requests **in the ``json`` format, byte for byte**
(see :mod:`gateway_sdk.formats.json_format`), and only its results are protobuf. When a
``GatewayRequest`` message lands in the contracts, this module is the one place to map it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from google.protobuf.message import DecodeError

from gateway_sdk.formats import json_format
from gateway_sdk.formats.base import (
    FormatError,
    GatewayRequest,
    GatewayResult,
    Outcome,
    check_batch,
    check_batch_encoded,
    check_encoded,
)
from payrail.callbacks.v1 import callbacks_pb2

CONTENT_TYPE: Final = "application/x-protobuf"
# The content type of the requests, which are JSON (see the module docstring).
REQUEST_CONTENT_TYPE: Final = json_format.CONTENT_TYPE

_TO_PB: Final = {
    "APPROVED": callbacks_pb2.OUTCOME_APPROVED,
    "DECLINED": callbacks_pb2.OUTCOME_DECLINED,
}
_FROM_PB: Final[dict[int, Outcome]] = {
    callbacks_pb2.OUTCOME_APPROVED: "APPROVED",
    callbacks_pb2.OUTCOME_DECLINED: "DECLINED",
}
_NANOS_MAX = 999_999_999


def result_to_pb(result: GatewayResult) -> callbacks_pb2.GatewayResult:
    if not isinstance(result, GatewayResult):
        raise TypeError("encode_result takes a GatewayResult")
    message = callbacks_pb2.GatewayResult(
        event_id=result.event_id,
        payment_id=result.payment_id,
        outcome=_TO_PB[result.outcome],
        failure_code=result.failure_code,
        failure_message=result.failure_message,
        gateway_reference=result.gateway_reference,
    )
    message.occur_time.seconds = result.occur_time
    return message


def result_from_pb(message: callbacks_pb2.GatewayResult) -> GatewayResult:
    outcome = _FROM_PB.get(message.outcome)
    if outcome is None:
        # OUTCOME_UNSPECIFIED, or a number this version does not know.
        raise FormatError("invalid_field", "outcome")
    if not message.HasField("occur_time"):
        raise FormatError("missing_field", "occur_time")
    if not 0 <= message.occur_time.nanos <= _NANOS_MAX:
        raise FormatError("invalid_field", "occur_time")
    return GatewayResult(
        event_id=message.event_id,
        payment_id=message.payment_id,
        outcome=outcome,
        failure_code=message.failure_code,
        failure_message=message.failure_message,
        gateway_reference=message.gateway_reference,
        occur_time=message.occur_time.seconds,
    )


class ProtobufFormat:
    """Protobuf results, JSON requests: see the module docstring."""

    name: Final = "protobuf"
    content_type: Final = CONTENT_TYPE

    def encode_request(self, request: GatewayRequest) -> bytes:
        return json_format.FORMAT.encode_request(request)

    def decode_request(self, data: bytes) -> GatewayRequest:
        return json_format.FORMAT.decode_request(data)

    def encode_result(self, result: GatewayResult) -> bytes:
        return check_encoded(result_to_pb(result).SerializeToString(deterministic=True))

    def decode_result(self, data: bytes) -> GatewayResult:
        check_encoded(data)
        try:
            message = callbacks_pb2.GatewayResult.FromString(data)
        except DecodeError:
            raise FormatError("malformed") from None
        return result_from_pb(message)

    def encode_results(self, results: Sequence[GatewayResult]) -> bytes:
        batch = callbacks_pb2.GatewayResultBatch(
            results=[result_to_pb(r) for r in check_batch(results)]
        )
        return check_batch_encoded(batch.SerializeToString(deterministic=True))

    def decode_results(self, data: bytes) -> tuple[GatewayResult, ...]:
        check_batch_encoded(data)
        try:
            batch = callbacks_pb2.GatewayResultBatch.FromString(data)
        except DecodeError:
            raise FormatError("malformed") from None
        return check_batch([result_from_pb(message) for message in batch.results])


FORMAT: Final = ProtobufFormat()

__all__ = ["CONTENT_TYPE", "FORMAT", "REQUEST_CONTENT_TYPE", "ProtobufFormat"]
