"""The ``soap`` wire format: a SOAP 1.1 envelope, UTF-8, payrail's own namespace.

A request (white space added here for reading; the encoder emits none)::

    <?xml version='1.0' encoding='utf-8'?>
    <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
                   xmlns:pr="urn:payrail:gateway:v1">
      <soap:Body>
        <pr:GatewayRequest>
          <pr:request_id>...</pr:request_id> <pr:payment_id>...</pr:payment_id>
          <pr:attempt>1</pr:attempt> <pr:kind>DEPOSIT</pr:kind>
          <pr:amount_minor>1000</pr:amount_minor> <pr:currency_code>USD</pr:currency_code>
          <pr:card><pr:brand>VISA</pr:brand>
                   <pr:masked_number>424242******4242</pr:masked_number></pr:card>
          <pr:sealed_card>base64 envelope</pr:sealed_card>
          <pr:merchant><pr:merchant_id/><pr:name/><pr:category_code/>
                       <pr:country_code/><pr:city/></pr:merchant>
          <pr:callback_deadline>1700000030</pr:callback_deadline>
          <pr:description/>
        </pr:GatewayRequest>
      </soap:Body>
    </soap:Envelope>

``card``, ``sealed_card`` and ``merchant`` are left out when there is none. A result is
``<pr:GatewayResult>`` with ``event_id``, ``payment_id``, ``outcome``, ``failure_code``,
``failure_message``, ``gateway_reference`` and ``occur_time`` (unix seconds) children.
A batch of results is ``<pr:GatewayResultBatch>`` holding 1 to 500 ``<pr:GatewayResult>``
elements, each exactly as above, applied in document order::

    <soap:Envelope ...><soap:Body><pr:GatewayResultBatch>
      <pr:GatewayResult>...</pr:GatewayResult> <pr:GatewayResult>...</pr:GatewayResult>
    </pr:GatewayResultBatch></soap:Body></soap:Envelope>

Inside the batch, elements of another namespace are ignored like unknown fields, and any
other element of payrail's namespace is refused.
Element names and values are those of the ``json`` format; integers are decimal
without sign or leading zeros; text is never trimmed.

Parsing is expat through defusedxml's ElementTree, the maintained hardening of the
standard library's parser: the input is bounded and must be UTF-8, and any document type
declaration is refused (``forbid_dtd``) as soon as the parser meets it, as are entity
declarations and external references (so no XXE and no "billion laughs"). Unknown
elements are ignored, duplicates refused; a ``soap:Header`` entry with
``mustUnderstand="1"`` is refused because nothing here understands one.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Final

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as defused_et

from gateway_sdk.formats.base import (
    BATCH_ENCODED_MAX_BYTES,
    ENCODED_MAX_BYTES,
    FormatError,
    GatewayMerchant,
    GatewayRequest,
    GatewayResult,
    MaskedCard,
    as_outcome,
    check_batch,
    check_encoded,
)
from gateway_sdk.sealing import SealedCard, SealingError

SOAP_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
NAMESPACE: Final = "urn:payrail:gateway:v1"
CONTENT_TYPE: Final = "text/xml; charset=utf-8"
_ENV = f"{{{SOAP_ENV_NS}}}"
_PR = f"{{{NAMESPACE}}}"
_MERCHANT_KEYS = ("merchant_id", "name", "category_code", "country_code", "city")
_INT_RE = re.compile(r"0|[1-9][0-9]{0,18}")
_XML_DECL_ENCODING_RE = re.compile(
    r"\A\ufeff?<\?xml[^>]*?\sencoding\s*=\s*([\"'])([A-Za-z0-9._-]*)\1"
)


# -------------------------------------------------------------------------- encoding


def _add(parent: ET.Element, name: str, text: str | int) -> None:
    # Prefixed names with the xmlns declarations on the root: valid namespaced XML
    # without touching ElementTree's process-wide prefix registry.
    ET.SubElement(parent, f"pr:{name}").text = str(text)


def _envelope(message: str) -> tuple[ET.Element, ET.Element]:
    root = ET.Element("soap:Envelope", {"xmlns:soap": SOAP_ENV_NS, "xmlns:pr": NAMESPACE})
    body = ET.SubElement(root, "soap:Body")
    return root, ET.SubElement(body, f"pr:{message}")


def _serialize(root: ET.Element, *, max_bytes: int = ENCODED_MAX_BYTES) -> bytes:
    return check_encoded(
        ET.tostring(root, encoding="utf-8", xml_declaration=True), max_bytes=max_bytes
    )


# -------------------------------------------------------------------------- decoding


def _parse(data: bytes, *, max_bytes: int = ENCODED_MAX_BYTES) -> ET.Element:
    check_encoded(data, max_bytes=max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("malformed") from None
    declared = _XML_DECL_ENCODING_RE.match(text)
    if declared is not None and declared.group(2).lower() not in ("utf-8", "utf8"):
        raise FormatError("malformed")
    try:
        return defused_et.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException:  # DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
        raise FormatError("forbidden_markup") from None
    except ET.ParseError:
        raise FormatError("malformed") from None


def _message(data: bytes, name: str, *, max_bytes: int = ENCODED_MAX_BYTES) -> ET.Element:
    root = _parse(data, max_bytes=max_bytes)
    if root.tag != f"{_ENV}Envelope":
        raise FormatError("malformed", "Envelope")
    children = list(root)
    if children and children[0].tag == f"{_ENV}Header":
        for entry in children[0]:
            if entry.get(f"{_ENV}mustUnderstand", "0") == "1":
                raise FormatError("malformed", "Header")
        children = children[1:]
    if len(children) != 1 or children[0].tag != f"{_ENV}Body":
        raise FormatError("malformed", "Body")
    body = list(children[0])
    if len(body) != 1 or body[0].tag != f"{_PR}{name}":
        # A soap:Fault, another message or several: not what this decoder reads.
        raise FormatError("malformed", name)
    return body[0]


def _fields(element: ET.Element, path: str) -> Mapping[str, ET.Element]:
    found: dict[str, ET.Element] = {}
    for child in element:
        if not isinstance(child.tag, str) or not child.tag.startswith(_PR):
            continue  # another namespace: an extension this version does not read
        local = child.tag[len(_PR) :]
        if local in found:
            raise FormatError("malformed", f"{path}{local}")
        found[local] = child
    return found


def _text(
    fields: Mapping[str, ET.Element], key: str, path: str, *, default: str | None = None
) -> str:
    element = fields.get(key)
    if element is None:
        if default is None:
            raise FormatError("missing_field", path)
        return default
    if len(element):
        raise FormatError("invalid_field", path)
    return element.text or ""


def _int(fields: Mapping[str, ET.Element], key: str, path: str) -> int:
    value = _text(fields, key, path)
    if not _INT_RE.fullmatch(value):
        raise FormatError("invalid_field", path)
    return int(value)


class SoapFormat:
    """See the module docstring for the exact shape."""

    name: Final = "soap"
    content_type: Final = CONTENT_TYPE

    def encode_request(self, request: GatewayRequest) -> bytes:
        if not isinstance(request, GatewayRequest):
            raise TypeError("encode_request takes a GatewayRequest")
        root, message = _envelope("GatewayRequest")
        _add(message, "request_id", request.request_id)
        _add(message, "payment_id", request.payment_id)
        _add(message, "attempt", request.attempt)
        _add(message, "kind", request.kind)
        _add(message, "amount_minor", request.amount_minor)
        _add(message, "currency_code", request.currency_code)
        if request.card is not None:
            card = ET.SubElement(message, "pr:card")
            _add(card, "brand", request.card.brand)
            _add(card, "masked_number", request.card.masked_number)
        if request.sealed_card is not None:
            _add(message, "sealed_card", request.sealed_card.to_base64())
        if request.merchant is not None:
            merchant = ET.SubElement(message, "pr:merchant")
            for key in _MERCHANT_KEYS:
                _add(merchant, key, getattr(request.merchant, key))
        _add(message, "callback_deadline", request.callback_deadline)
        _add(message, "description", request.description)
        return _serialize(root)

    def decode_request(self, data: bytes) -> GatewayRequest:
        fields = _fields(_message(data, "GatewayRequest"), "")
        card = None
        if "card" in fields:
            card_fields = _fields(fields["card"], "card.")
            card = MaskedCard(
                brand=_text(card_fields, "brand", "card.brand"),
                masked_number=_text(card_fields, "masked_number", "card.masked_number"),
            )
        merchant = None
        if "merchant" in fields:
            merchant_fields = _fields(fields["merchant"], "merchant.")
            merchant = GatewayMerchant(
                **{key: _text(merchant_fields, key, f"merchant.{key}") for key in _MERCHANT_KEYS}
            )
        sealed = None
        if "sealed_card" in fields:
            try:
                sealed = SealedCard.from_base64(_text(fields, "sealed_card", "sealed_card"))
            except SealingError:
                raise FormatError("invalid_field", "sealed_card") from None
        return GatewayRequest(
            request_id=_text(fields, "request_id", "request_id"),
            payment_id=_text(fields, "payment_id", "payment_id"),
            attempt=_int(fields, "attempt", "attempt"),
            kind=_text(fields, "kind", "kind"),
            amount_minor=_int(fields, "amount_minor", "amount_minor"),
            currency_code=_text(fields, "currency_code", "currency_code"),
            card=card,
            sealed_card=sealed,
            merchant=merchant,
            callback_deadline=_int(fields, "callback_deadline", "callback_deadline"),
            description=_text(fields, "description", "description", default=""),
        )

    def encode_result(self, result: GatewayResult) -> bytes:
        if not isinstance(result, GatewayResult):
            raise TypeError("encode_result takes a GatewayResult")
        root, message = _envelope("GatewayResult")
        _add_result(message, result)
        return _serialize(root)

    def decode_result(self, data: bytes) -> GatewayResult:
        return _result(_message(data, "GatewayResult"))

    def encode_results(self, results: Sequence[GatewayResult]) -> bytes:
        batch = check_batch(results)
        root, message = _envelope("GatewayResultBatch")
        for result in batch:
            _add_result(ET.SubElement(message, "pr:GatewayResult"), result)
        return _serialize(root, max_bytes=BATCH_ENCODED_MAX_BYTES)

    def decode_results(self, data: bytes) -> tuple[GatewayResult, ...]:
        batch = _message(data, "GatewayResultBatch", max_bytes=BATCH_ENCODED_MAX_BYTES)
        decoded = []
        for child in batch:
            if not isinstance(child.tag, str) or not child.tag.startswith(_PR):
                continue  # another namespace: an extension this version does not read
            if child.tag != f"{_PR}GatewayResult":
                raise FormatError("malformed", "results")
            decoded.append(_result(child))
        return check_batch(decoded)


def _add_result(message: ET.Element, result: GatewayResult) -> None:
    _add(message, "event_id", result.event_id)
    _add(message, "payment_id", result.payment_id)
    _add(message, "outcome", result.outcome)
    _add(message, "failure_code", result.failure_code)
    _add(message, "failure_message", result.failure_message)
    _add(message, "gateway_reference", result.gateway_reference)
    _add(message, "occur_time", result.occur_time)


def _result(element: ET.Element) -> GatewayResult:
    fields = _fields(element, "")
    outcome = as_outcome(_text(fields, "outcome", "outcome"))
    return GatewayResult(
        event_id=_text(fields, "event_id", "event_id"),
        payment_id=_text(fields, "payment_id", "payment_id"),
        outcome=outcome,
        failure_code=_text(fields, "failure_code", "failure_code", default=""),
        failure_message=_text(fields, "failure_message", "failure_message", default=""),
        gateway_reference=_text(fields, "gateway_reference", "gateway_reference", default=""),
        occur_time=_int(fields, "occur_time", "occur_time"),
    )


FORMAT: Final = SoapFormat()

__all__ = ["CONTENT_TYPE", "FORMAT", "NAMESPACE", "SOAP_ENV_NS", "SoapFormat"]
