"""The gateway SDK's primitives behind payment_svc's GatewayCrypto port."""

from __future__ import annotations

from collections.abc import Sequence

from gateway_sdk import formats, signing
from gateway_sdk.sealing import CardData, seal_card
from payment_svc.service.processing import CardPlaintext, DecodedResult
from payment_svc.service.results import BatchResult


class SdkGatewayCrypto:
    def verify(self, payload: bytes, header: str, secrets: Sequence[bytes], now: int) -> None:
        signing.verify(payload, header, secrets, now=now)

    def decode_result(self, wire_format: str, payload: bytes) -> DecodedResult:
        result = formats.get(wire_format).decode_result(payload)
        return DecodedResult(
            event_id=result.event_id,
            payment_id=result.payment_id,
            approved=result.outcome == "APPROVED",
            failure_code=result.failure_code,
            failure_message=result.failure_message,
            gateway_reference=result.gateway_reference,
        )

    def decode_results(self, wire_format: str, payload: bytes) -> Sequence[BatchResult]:
        return [
            BatchResult(
                event_id=result.event_id,
                payment_id=result.payment_id,
                approved=result.outcome == "APPROVED",
                failure_code=result.failure_code,
                failure_message=result.failure_message,
                gateway_reference=result.gateway_reference,
            )
            for result in formats.get(wire_format).decode_results(payload)
        ]

    def seal_card(self, public_key: bytes, card: CardPlaintext, payment_id: str) -> bytes:
        data = CardData(
            number=card.number,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            cvc=card.cvc or None,
            holder_name=card.holder_name,
        )
        return seal_card(public_key, data, payment_id=payment_id).to_bytes()
