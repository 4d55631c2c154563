"""docs/vectors/gateway-vectors.json, recomputed by the Python SDK.

The same file is recomputed by the Go SDK (sdk/go, ``go test``) and the TypeScript SDK
(sdk/ts, ``npm test``); a change in any implementation that breaks interoperability
fails all three. Here the file is also checked against docs/callbacks.md and the
encoders it was written from (``python -m tools.vectors``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_sdk import formats
from gateway_sdk.formats.base import FormatError
from gateway_sdk.sealing import SealedCard, load_private_key, unseal, unseal_card
from gateway_sdk.signing import SignatureError, sign_with_secrets, verify
from tools import vectors

FILE = vectors.OUT
VECTORS: dict[str, Any] = json.loads(FILE.read_text("utf-8"))


def named(section: str) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in VECTORS[section]]


def test_the_file_is_current() -> None:
    """What docs/callbacks.md and the encoders give today, byte for byte."""
    assert FILE.read_text("utf-8") == vectors.render(), "run `python -m tools.vectors`"


def test_every_section_has_vectors() -> None:
    assert {v["result"] for v in VECTORS["signature"]} == {
        "accept",
        "refuse stale",
        "refuse mismatch",
    }
    assert {v["format"] for v in VECTORS["batch_signature"]} == set(formats.names())
    assert {r["format"] for r in VECTORS["requests"]} == set(formats.names())
    assert {r["format"] for r in VECTORS["results"]} == set(formats.names())
    assert {r["what"] for r in VECTORS["refused"]} == {"request", "result"}


def _check_signature(vector: dict[str, Any]) -> None:
    secrets = [bytes.fromhex(h) for h in vector["secrets_hex"]]
    payload = bytes.fromhex(vector["payload_hex"])
    assert sign_with_secrets(payload, secrets, timestamp=vector["timestamp"]) == vector["header"]
    delivered = bytes.fromhex(vector.get("delivered_payload_hex", vector["payload_hex"]))
    if vector["result"] == "accept":
        for secret in secrets:
            verify(delivered, vector["header"], [secret], now=vector["now"])
        return
    with pytest.raises(SignatureError) as refused:
        verify(delivered, vector["header"], secrets, now=vector["now"])
    assert f"refuse {refused.value.reason}" == vector["result"]


@pytest.mark.parametrize("vector", named("signature"))
def test_signature_vector(vector: dict[str, Any]) -> None:
    _check_signature(vector)


@pytest.mark.parametrize("vector", named("batch_signature"))
def test_batch_signature_vector(vector: dict[str, Any]) -> None:
    wire = formats.get(vector["format"])
    results = wire.decode_results(bytes.fromhex(vector["payload_hex"]))
    assert [
        {"event_id": r.event_id, "payment_id": r.payment_id, "outcome": r.outcome} for r in results
    ] == vector["results"]
    _check_signature(vector)


def test_seal_vector_opens() -> None:
    seal = VECTORS["seal"]
    key = load_private_key(bytes.fromhex(seal["recipient_private_key_hex"]))
    plaintext = unseal(
        key,
        bytes.fromhex(seal["envelope_hex"]),
        associated_data=seal["associated_data_text"].encode(),
    )
    assert plaintext == bytes.fromhex(seal["plaintext_hex"])


@pytest.mark.parametrize("vector", named("requests"))
def test_request_vector_decodes(vector: dict[str, Any]) -> None:
    request = formats.get(vector["format"]).decode_request(bytes.fromhex(vector["payload_hex"]))
    fields = vector["fields"]
    assert request.request_id == fields["request_id"]
    assert request.payment_id == fields["payment_id"]
    assert request.attempt == fields["attempt"]
    assert request.kind == fields["kind"]
    assert request.amount_minor == int(fields["amount_minor"])
    assert request.currency_code == fields["currency_code"]
    assert request.callback_deadline == fields["callback_deadline"]
    assert request.description == fields["description"]
    if fields["merchant"] is None:
        assert request.merchant is None
    else:
        assert request.merchant is not None
        assert request.merchant.name == fields["merchant"]["name"]
        assert request.merchant.category_code == fields["merchant"]["category_code"]
    if fields["sealed_card_base64"] is None:
        assert request.sealed_card is None
        return
    assert request.card is not None
    assert request.card.masked_number == fields["card"]["masked_number"]
    assert request.sealed_card is not None
    assert request.sealed_card.to_base64() == fields["sealed_card_base64"]
    # Every SDK opens this card with the seal vector's key, to the same document.
    seal = VECTORS["seal"]
    card = unseal_card(
        load_private_key(bytes.fromhex(seal["recipient_private_key_hex"])),
        SealedCard.from_base64(fields["sealed_card_base64"]),
        payment_id=request.payment_id,
    )
    assert card.to_json_bytes() == bytes.fromhex(seal["plaintext_hex"])


@pytest.mark.parametrize("vector", named("results"))
def test_result_vector_decodes_and_encodes(vector: dict[str, Any]) -> None:
    wire = formats.get(vector["format"])
    payload = bytes.fromhex(vector["payload_hex"])
    result = wire.decode_result(payload)
    fields = vector["fields"]
    assert {
        "event_id": result.event_id,
        "payment_id": result.payment_id,
        "outcome": result.outcome,
        "failure_code": result.failure_code,
        "failure_message": result.failure_message,
        "gateway_reference": result.gateway_reference,
        "occur_time": result.occur_time,
    } == fields
    assert wire.encode_result(result) == payload


@pytest.mark.parametrize("vector", named("refused"))
def test_refused_vector(vector: dict[str, Any]) -> None:
    wire = formats.get(vector["format"])
    decode = wire.decode_request if vector["what"] == "request" else wire.decode_result
    with pytest.raises(FormatError):
        decode(bytes.fromhex(vector["payload_hex"]))
