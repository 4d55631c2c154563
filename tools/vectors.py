"""Write docs/vectors/gateway-vectors.json: the one machine-readable set of gateway test
vectors that the Python, Go and TypeScript SDK test suites all recompute.

``python -m tools.vectors`` (or ``--check``, which exits 1 when the file would change).

What goes in:

- ``signature`` and ``batch_signature``: the signing vectors published in
  docs/callbacks.md (its ``signature-vector`` and ``batch-signature-vector`` blocks),
  field for field, secrets and payloads as hex;
- ``seal``: the sealing vector of docs/callbacks.md (fixed keys and nonce, every
  intermediate value);
- ``requests``: one gateway request per wire format and per shape (card payment, wallet
  purchase with merchant), as the exact bytes payrail puts on the gateway's topic, with
  the fields an SDK must decode from them; the card ones carry the seal vector's
  envelope, so every SDK opens the same card with the seal vector's private key;
- ``results``: single results per wire format, as the exact bytes payrail's encoder
  writes, with their fields (a decoder must accept them; an encoder may order JSON keys
  or XML declarations differently, so only decoding is normative);
- ``refused``: payloads every decoder must refuse, with the reason.

The bytes come from the Python SDK's encoders, which are the reference implementation;
the Python suite (tests/unit/gateway_sdk/test_vectors.py) decodes them independently of
this script and checks the file against the markdown, so the three languages and the
documentation cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from gateway_sdk import formats
from gateway_sdk.formats.base import GatewayMerchant, GatewayRequest, GatewayResult, MaskedCard
from gateway_sdk.sealing import SealedCard

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "callbacks.md"
OUT = ROOT / "docs" / "vectors" / "gateway-vectors.json"

# Keys a block may repeat; every other key appears once.
_LISTS = {"secret_hex": "secrets_hex", "result_item": "results"}


def doc_blocks(info: str, text: str) -> list[dict[str, Any]]:
    """The fenced blocks of docs/callbacks.md with this info string, as JSON objects."""
    blocks = re.findall(rf"^```{re.escape(info)}\n(.*?)^```$", text, re.M | re.S)
    out = []
    for block in blocks:
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(": ")
            if not sep:
                raise SystemExit(f"unparseable vector line {line!r} in a {info} block")
            if key in _LISTS:
                if key == "result_item":
                    event_id, payment_id, outcome = value.split(" ")
                    item: Any = {"event_id": event_id, "payment_id": payment_id, "outcome": outcome}
                else:
                    item = value
                fields.setdefault(_LISTS[key], []).append(item)
            elif key in ("timestamp", "now"):
                fields[key] = int(value)
            else:
                fields[key] = value
        out.append(fields)
    return out


def _request_fields(request: GatewayRequest) -> dict[str, Any]:
    return {
        "request_id": request.request_id,
        "payment_id": request.payment_id,
        "attempt": request.attempt,
        "kind": request.kind,
        "amount_minor": str(request.amount_minor),
        "currency_code": request.currency_code,
        "card": None
        if request.card is None
        else {"brand": request.card.brand, "masked_number": request.card.masked_number},
        "sealed_card_base64": None
        if request.sealed_card is None
        else request.sealed_card.to_base64(),
        "merchant": None
        if request.merchant is None
        else {
            "merchant_id": request.merchant.merchant_id,
            "name": request.merchant.name,
            "category_code": request.merchant.category_code,
            "country_code": request.merchant.country_code,
            "city": request.merchant.city,
        },
        "callback_deadline": request.callback_deadline,
        "description": request.description,
    }


def _result_fields(result: GatewayResult) -> dict[str, Any]:
    return {
        "event_id": result.event_id,
        "payment_id": result.payment_id,
        "outcome": result.outcome,
        "failure_code": result.failure_code,
        "failure_message": result.failure_message,
        "gateway_reference": result.gateway_reference,
        "occur_time": result.occur_time,
    }


def sample_requests(seal: dict[str, Any]) -> list[GatewayRequest]:
    sealed = SealedCard.from_bytes(bytes.fromhex(seal["envelope_hex"]))
    return [
        GatewayRequest(
            request_id="5b0f8e2c-3d4a-4b6c-9e1f-0a2b3c4d5e6f",
            payment_id=seal["associated_data_text"],
            attempt=1,
            kind="DEPOSIT",
            amount_minor=12_345,
            currency_code="EUR",
            card=MaskedCard(brand="VISA", masked_number="424242******4242"),
            sealed_card=sealed,
            callback_deadline=1_700_000_900,
            description='Einzahlung \u2013 März <1> & "2"',
        ),
        GatewayRequest(
            request_id="7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
            payment_id="0b6e1f3a-5c2d-4e8f-9a1b-2c3d4e5f6a7b",
            attempt=2,
            kind="PURCHASE",
            amount_minor=9_223_372_036_854_775_807,
            currency_code="JPY",
            merchant=GatewayMerchant(
                merchant_id="m-77",
                name="Café Zürich",
                category_code="5812",
                country_code="CH",
                city="Zürich",
            ),
            callback_deadline=1_700_001_000,
        ),
    ]


def sample_results() -> list[GatewayResult]:
    return [
        GatewayResult(
            event_id="evt_0201",
            payment_id="6f1c2a4e-0b1d-4c55-9a2e-3f4b5c6d7e8f",
            outcome="APPROVED",
            gateway_reference="ref-201",
            occur_time=1_700_000_800,
        ),
        GatewayResult(
            event_id="evt_0202",
            payment_id="0b6e1f3a-5c2d-4e8f-9a1b-2c3d4e5f6a7b",
            outcome="DECLINED",
            failure_code="insufficient_funds",
            failure_message="Fonds insuffisants <pour> « 10 € » & plus",
            occur_time=1_700_000_801,
        ),
    ]


_SOAP_WITH_DTD = (
    b"<?xml version='1.0' encoding='utf-8'?>\n"
    b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
    b' xmlns:pr="urn:payrail:gateway:v1"><soap:Body><pr:GatewayResult>'
    b"<pr:event_id>&e;</pr:event_id></pr:GatewayResult></soap:Body></soap:Envelope>"
)


def refused() -> list[dict[str, Any]]:
    """Payloads every decoder refuses (``what`` is ``request`` or ``result``)."""
    return [
        {
            "name": "soap-dtd",
            "format": "soap",
            "what": "result",
            "payload_hex": _SOAP_WITH_DTD.hex(),
        },
        {
            "name": "json-not-an-object",
            "format": "json",
            "what": "result",
            "payload_hex": b'["evt_1"]'.hex(),
        },
        {
            "name": "json-approved-with-failure-code",
            "format": "json",
            "what": "result",
            "payload_hex": json.dumps(
                {
                    "event_id": "evt_1",
                    "failure_code": "card_declined",
                    "failure_message": "",
                    "gateway_reference": "",
                    "occur_time": 1700000000,
                    "outcome": "APPROVED",
                    "payment_id": "p-1",
                },
                separators=(",", ":"),
                sort_keys=True,
            )
            .encode()
            .hex(),
        },
        {
            "name": "protobuf-truncated",
            "format": "protobuf",
            "what": "result",
            "payload_hex": "0a08657674",
        },
        {
            "name": "json-request-full-card-number",
            "format": "json",
            "what": "request",
            "payload_hex": json.dumps(
                {
                    "amount_minor": 100,
                    "attempt": 1,
                    "callback_deadline": 1700000900,
                    "card": {"brand": "VISA", "masked_number": "4242424242424242"},
                    "currency_code": "USD",
                    "description": "",
                    "kind": "DEPOSIT",
                    "merchant": None,
                    "payment_id": "p-1",
                    "request_id": "r-1",
                    "sealed_card": None,
                },
                separators=(",", ":"),
                sort_keys=True,
            )
            .encode()
            .hex(),
        },
    ]


def build() -> dict[str, Any]:
    text = DOC.read_text("utf-8")
    (seal,) = doc_blocks("seal-vector", text)
    requests = []
    for name in ("json", "soap", "protobuf"):
        wire = formats.get(name)
        for request in sample_requests(seal):
            data = wire.encode_request(request)
            requests.append(
                {
                    "name": f"{name}-{request.kind.lower()}",
                    "format": name,
                    "payload_hex": data.hex(),
                    "fields": _request_fields(wire.decode_request(data)),
                }
            )
    results = []
    for name in ("json", "soap", "protobuf"):
        wire = formats.get(name)
        for result in sample_results():
            data = wire.encode_result(result)
            results.append(
                {
                    "name": f"{name}-{result.outcome.lower()}",
                    "format": name,
                    "payload_hex": data.hex(),
                    "fields": _result_fields(wire.decode_result(data)),
                }
            )
    return {
        "about": (
            "payrail gateway test vectors; see docs/callbacks.md (the normative text) and "
            "tools/vectors.py (what each section means). Written by `python -m tools.vectors`."
        ),
        "signature": doc_blocks("signature-vector", text),
        "batch_signature": doc_blocks("batch-signature-vector", text),
        "seal": seal,
        "requests": requests,
        "results": results,
        "refused": refused(),
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text("utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run `python -m tools.vectors`")
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, "utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
