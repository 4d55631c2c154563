"""The ``json`` wire format: UTF-8 JSON objects, sorted keys, no insignificant white space.

A request::

    {"amount_minor":1000,"attempt":1,"callback_deadline":1700000030,
     "card":{"brand":"VISA","masked_number":"424242******4242"},"currency_code":"USD",
     "description":"","kind":"DEPOSIT","merchant":null,"payment_id":"...",
     "request_id":"...","sealed_card":"<base64 envelope>"}

``card``, ``sealed_card`` and ``merchant`` are ``null`` (or absent) when there is none;
``merchant`` is an object of five strings (``merchant_id``, ``name``, ``category_code``,
``country_code``, ``city``). A result::

    {"event_id":"...","failure_code":"","failure_message":"","gateway_reference":"...",
     "occur_time":1700000000,"outcome":"APPROVED","payment_id":"..."}

``failure_code``, ``failure_message`` and ``gateway_reference`` may be absent (empty).
A batch of results is an object whose ``results`` key holds a list of 1 to 500 result
objects, applied in list order::

    {"results":[{"event_id":"...",...},{"event_id":"...",...}]}

Decoding is strict: integers are JSON integers (not ``1.0``, not ``"1"``, not ``true``),
strings are strings, a key appears at most once, NaN and Infinity are refused. Unknown
keys are ignored so payrail can add fields without breaking deployed gateways.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from gateway_sdk.formats.base import (
    BATCH_ENCODED_MAX_BYTES,
    ENCODED_MAX_BYTES,
    FormatError,
    GatewayMerchant,
    GatewayRequest,
    GatewayResult,
    MaskedCard,
    check_batch,
    check_batch_encoded,
    check_encoded,
)
from gateway_sdk.sealing import SealedCard, SealingError

CONTENT_TYPE: Final = "application/json"
_MERCHANT_KEYS = ("merchant_id", "name", "category_code", "country_code", "city")


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKey
        document[key] = value
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON numbers")


def dumps(document: Mapping[str, Any]) -> bytes:
    """The canonical encoding: sorted keys, compact, UTF-8, no NaN."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def loads_object(data: bytes, *, max_bytes: int = ENCODED_MAX_BYTES) -> dict[str, Any]:
    """A bounded (``max_bytes``), strict parse of one JSON object."""
    check_encoded(data, max_bytes=max_bytes)
    try:
        document = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_refuse_constant,
        )
    except _DuplicateKey:
        # Not named: the key is input, and input never reaches an error message.
        raise FormatError("malformed") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FormatError("malformed") from None
    if not isinstance(document, dict):
        raise FormatError("malformed")
    return document


def _field(document: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in document:
        raise FormatError("missing_field", path)
    return document[key]


def _object(value: Any, path: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FormatError("invalid_field", path)
    return value


def request_to_document(request: GatewayRequest) -> dict[str, Any]:
    if not isinstance(request, GatewayRequest):
        raise TypeError("encode_request takes a GatewayRequest")
    card = request.card
    merchant = request.merchant
    return {
        "request_id": request.request_id,
        "payment_id": request.payment_id,
        "attempt": request.attempt,
        "kind": request.kind,
        "amount_minor": request.amount_minor,
        "currency_code": request.currency_code,
        "card": None
        if card is None
        else {"brand": card.brand, "masked_number": card.masked_number},
        "sealed_card": None if request.sealed_card is None else request.sealed_card.to_base64(),
        "merchant": None
        if merchant is None
        else {key: getattr(merchant, key) for key in _MERCHANT_KEYS},
        "callback_deadline": request.callback_deadline,
        "description": request.description,
    }


def request_from_document(document: Mapping[str, Any]) -> GatewayRequest:
    card_doc = _object(document.get("card"), "card")
    card = None
    if card_doc is not None:
        card = MaskedCard(
            brand=_field(card_doc, "brand", "card.brand"),
            masked_number=_field(card_doc, "masked_number", "card.masked_number"),
        )
    merchant_doc = _object(document.get("merchant"), "merchant")
    merchant = None
    if merchant_doc is not None:
        merchant = GatewayMerchant(
            **{key: _field(merchant_doc, key, f"merchant.{key}") for key in _MERCHANT_KEYS}
        )
    sealed_text = document.get("sealed_card")
    sealed = None
    if sealed_text is not None:
        if not isinstance(sealed_text, str):
            raise FormatError("invalid_field", "sealed_card")
        try:
            sealed = SealedCard.from_base64(sealed_text)
        except SealingError:
            raise FormatError("invalid_field", "sealed_card") from None
    return GatewayRequest(
        request_id=_field(document, "request_id", "request_id"),
        payment_id=_field(document, "payment_id", "payment_id"),
        attempt=_field(document, "attempt", "attempt"),
        kind=_field(document, "kind", "kind"),
        amount_minor=_field(document, "amount_minor", "amount_minor"),
        currency_code=_field(document, "currency_code", "currency_code"),
        card=card,
        sealed_card=sealed,
        merchant=merchant,
        callback_deadline=_field(document, "callback_deadline", "callback_deadline"),
        description=document.get("description", ""),
    )


def result_to_document(result: GatewayResult) -> dict[str, Any]:
    if not isinstance(result, GatewayResult):
        raise TypeError("encode_result takes a GatewayResult")
    return {
        "event_id": result.event_id,
        "payment_id": result.payment_id,
        "outcome": result.outcome,
        "failure_code": result.failure_code,
        "failure_message": result.failure_message,
        "gateway_reference": result.gateway_reference,
        "occur_time": result.occur_time,
    }


def result_from_document(document: Mapping[str, Any]) -> GatewayResult:
    return GatewayResult(
        event_id=_field(document, "event_id", "event_id"),
        payment_id=_field(document, "payment_id", "payment_id"),
        outcome=_field(document, "outcome", "outcome"),
        failure_code=document.get("failure_code", ""),
        failure_message=document.get("failure_message", ""),
        gateway_reference=document.get("gateway_reference", ""),
        occur_time=_field(document, "occur_time", "occur_time"),
    )


def results_from_document(document: Mapping[str, Any]) -> tuple[GatewayResult, ...]:
    items = _field(document, "results", "results")
    if not isinstance(items, list):
        raise FormatError("invalid_field", "results")
    decoded = []
    for item in items:
        if not isinstance(item, dict):
            raise FormatError("invalid_field", "results")
        decoded.append(result_from_document(item))
    return check_batch(decoded)


class JsonFormat:
    """See the module docstring for the exact shape."""

    name: Final = "json"
    content_type: Final = CONTENT_TYPE

    def encode_request(self, request: GatewayRequest) -> bytes:
        return check_encoded(dumps(request_to_document(request)))

    def decode_request(self, data: bytes) -> GatewayRequest:
        return request_from_document(loads_object(data))

    def encode_result(self, result: GatewayResult) -> bytes:
        return check_encoded(dumps(result_to_document(result)))

    def decode_result(self, data: bytes) -> GatewayResult:
        return result_from_document(loads_object(data))

    def encode_results(self, results: Sequence[GatewayResult]) -> bytes:
        batch = check_batch(results)
        return check_batch_encoded(dumps({"results": [result_to_document(r) for r in batch]}))

    def decode_results(self, data: bytes) -> tuple[GatewayResult, ...]:
        return results_from_document(loads_object(data, max_bytes=BATCH_ENCODED_MAX_BYTES))


FORMAT: Final = JsonFormat()

__all__ = ["CONTENT_TYPE", "FORMAT", "JsonFormat"]
