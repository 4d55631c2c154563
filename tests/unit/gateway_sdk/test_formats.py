"""Wire formats: round trips, strict decoding, safe XML, and no readable card number in
any encoded request."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway_sdk import formats
from gateway_sdk.formats import json_format, protobuf_format, soap_format
from gateway_sdk.formats.base import (
    ENCODED_MAX_BYTES,
    FormatError,
    GatewayMerchant,
    GatewayRequest,
    GatewayResult,
    MaskedCard,
    WireFormat,
)
from gateway_sdk.sealing import CardData, generate_key_pair, seal_card, unseal_card
from payrail.callbacks.v1 import callbacks_pb2

PAN = "4242424242424242"
CVC = "937"
HOLDER = "Jane Müller"
PAYMENT_ID = "6f1c2a4e-0b1d-4c55-9a2e-3f4b5c6d7e8f"
FORMAT_NAMES = ("json", "soap", "protobuf")


@pytest.fixture(scope="module")
def gateway_key() -> X25519PrivateKey:
    return generate_key_pair()[0]


def make_request(private_key: X25519PrivateKey, **changes: Any) -> GatewayRequest:
    card = CardData(number=PAN, exp_month=12, exp_year=2030, cvc=CVC, holder_name=HOLDER)
    request = GatewayRequest(
        request_id=f"{PAYMENT_ID}:1",
        payment_id=PAYMENT_ID,
        attempt=1,
        kind="PURCHASE",
        amount_minor=1999,
        currency_code="EUR",
        card=MaskedCard(brand="VISA", masked_number="424242******4242"),
        sealed_card=seal_card(private_key.public_key(), card, payment_id=PAYMENT_ID),
        merchant=GatewayMerchant(
            merchant_id="m-17",
            name='Café "Zürich" & <Bar>',
            category_code="5812",
            country_code="CH",
            city="Zürich",
        ),
        callback_deadline=1_700_000_030,
        description="table 4\n\tthank you \u2013 €",
    )
    return dataclasses.replace(request, **changes)


def approved() -> GatewayResult:
    return GatewayResult(
        event_id="evt_0001",
        payment_id=PAYMENT_ID,
        outcome="APPROVED",
        gateway_reference="ref-42",
        occur_time=1_700_000_000,
    )


def declined() -> GatewayResult:
    return GatewayResult(
        event_id="evt_0002",
        payment_id=PAYMENT_ID,
        outcome="DECLINED",
        failure_code="card_declined",
        failure_message="Karte abgelehnt \u2013 Zürich\n€",
        occur_time=1_700_000_100,
    )


def reason_of(call: Any, *args: Any) -> str:
    with pytest.raises(FormatError) as caught:
        call(*args)
    return caught.value.reason


# ------------------------------------------------------------------------ round trips


def test_registry() -> None:
    assert formats.names() == FORMAT_NAMES
    for name in FORMAT_NAMES:
        assert formats.get(name).name == name
    assert formats.get("json").content_type == "application/json"
    assert formats.get("soap").content_type.startswith("text/xml")
    assert formats.get("protobuf").content_type == "application/x-protobuf"
    assert reason_of(formats.get, "xml") == "unknown_format"


@pytest.mark.parametrize("name", FORMAT_NAMES)
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"kind": "DEPOSIT", "merchant": None, "description": ""},
        {"kind": "PURCHASE", "card": None, "sealed_card": None},  # wallet-funded
        {"card": MaskedCard(brand="UNSPECIFIED", masked_number=""), "sealed_card": None},
        {"merchant": GatewayMerchant()},
        {"attempt": 2**31 - 1, "amount_minor": 2**63 - 1, "callback_deadline": 0},
    ],
    ids=["purchase", "deposit", "wallet", "unspecified-card", "empty-merchant", "limits"],
)
def test_request_round_trip(
    name: str, changes: dict[str, Any], gateway_key: X25519PrivateKey
) -> None:
    wire = formats.get(name)
    request = make_request(gateway_key, **changes)
    encoded = wire.encode_request(request)
    assert wire.decode_request(encoded) == request
    # Encoding is deterministic: the same request is the same bytes.
    assert wire.encode_request(wire.decode_request(encoded)) == encoded


@pytest.mark.parametrize("name", FORMAT_NAMES)
@pytest.mark.parametrize("result", [approved(), declined()], ids=["approved", "declined"])
def test_result_round_trip(name: str, result: GatewayResult) -> None:
    wire = formats.get(name)
    encoded = wire.encode_result(result)
    assert wire.decode_result(encoded) == result
    assert wire.encode_result(wire.decode_result(encoded)) == encoded


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_encoded_requests_never_carry_a_readable_card(
    name: str, gateway_key: X25519PrivateKey
) -> None:
    wire = formats.get(name)
    request = make_request(gateway_key)
    encoded = wire.encode_request(request)
    for secret in (PAN, "4242 4242 4242 4242", "4242-4242-4242-4242", HOLDER):
        assert secret.encode() not in encoded
        assert secret.encode("utf-16-le") not in encoded
    # The longest run of digits anywhere is far shorter than a card number.
    assert max(len(run) for run in re.findall(rb"[0-9]+", encoded)) < 12
    # ... and yet the gateway gets the whole card back with its key.
    decoded = wire.decode_request(encoded)
    assert decoded.sealed_card is not None
    card = unseal_card(gateway_key, decoded.sealed_card, payment_id=decoded.payment_id)
    assert (card.number, card.cvc, card.holder_name) == (PAN, CVC, HOLDER)


def test_a_masked_card_cannot_hold_a_full_number() -> None:
    for masked in (PAN, "4242424242**4242", "424242******42424", "******"):
        with pytest.raises(FormatError, match=r"card\.masked_number"):
            MaskedCard(brand="VISA", masked_number=masked)
    assert MaskedCard(brand="AMERICAN_EXPRESS", masked_number="378282*****0005")


def test_protobuf_requests_are_the_json_bytes(gateway_key: X25519PrivateKey) -> None:
    request = make_request(gateway_key)
    assert protobuf_format.FORMAT.encode_request(request) == json_format.FORMAT.encode_request(
        request
    )
    assert protobuf_format.REQUEST_CONTENT_TYPE == "application/json"


def test_json_encoding_is_canonical(gateway_key: X25519PrivateKey) -> None:
    encoded = json_format.FORMAT.encode_result(approved())
    assert encoded == (
        b'{"event_id":"evt_0001","failure_code":"","failure_message":"",'
        b'"gateway_reference":"ref-42","occur_time":1700000000,"outcome":"APPROVED",'
        b'"payment_id":"6f1c2a4e-0b1d-4c55-9a2e-3f4b5c6d7e8f"}'
    )
    document = json.loads(json_format.FORMAT.encode_request(make_request(gateway_key)))
    assert list(document) == sorted(document)


def test_protobuf_result_is_the_contract_message() -> None:
    encoded = protobuf_format.FORMAT.encode_result(declined())
    message = callbacks_pb2.GatewayResult.FromString(encoded)
    assert message.outcome == callbacks_pb2.OUTCOME_DECLINED
    assert message.occur_time.seconds == 1_700_000_100
    assert message.failure_code == "card_declined"


def test_soap_is_a_soap_1_1_envelope_in_our_namespace(gateway_key: X25519PrivateKey) -> None:
    encoded = soap_format.FORMAT.encode_request(make_request(gateway_key))
    assert encoded.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert b'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"' in encoded
    assert b'xmlns:pr="urn:payrail:gateway:v1"' in encoded
    assert b"<soap:Body><pr:GatewayRequest>" in encoded
    assert '<pr:name>Café "Zürich" &amp; &lt;Bar&gt;</pr:name>'.encode() in encoded


# ------------------------------------------------------------------- refusing garbage


GARBAGE = [
    b"",
    b"\x00",
    b"\xff\xfe\xfd",
    b"null",
    b"[]",
    b'"text"',
    b"<a/>",
    b"not a message at all",
    b"\x0a\xff\xff\xff\xff\xff",
]


@pytest.mark.parametrize("name", FORMAT_NAMES)
@pytest.mark.parametrize("data", GARBAGE)
def test_decoders_refuse_garbage(name: str, data: bytes) -> None:
    wire = formats.get(name)
    with pytest.raises(FormatError):
        wire.decode_request(data)
    with pytest.raises(FormatError):
        wire.decode_result(data)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_decoders_refuse_oversized_input(name: str) -> None:
    wire = formats.get(name)
    data = b" " * (ENCODED_MAX_BYTES + 1)
    assert reason_of(wire.decode_request, data) == "oversized"
    assert reason_of(wire.decode_result, data) == "oversized"


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_decoders_refuse_results_as_requests_and_back(
    name: str, gateway_key: X25519PrivateKey
) -> None:
    wire = formats.get(name)
    with pytest.raises(FormatError):
        wire.decode_request(wire.encode_result(approved()))
    with pytest.raises(FormatError):
        wire.decode_result(wire.encode_request(make_request(gateway_key)))


def json_request(private_key: X25519PrivateKey) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        json_format.FORMAT.encode_request(make_request(private_key))
    )
    return document


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("attempt", "1", "attempt"),
        ("attempt", 1.0, "attempt"),
        ("attempt", True, "attempt"),
        ("attempt", 0, "attempt"),
        ("attempt", 2**31, "attempt"),
        ("amount_minor", "1999", "amount_minor"),
        ("amount_minor", -5, "amount_minor"),
        ("amount_minor", 0, "amount_minor"),
        ("amount_minor", 2**63, "amount_minor"),
        ("kind", "REFUND", "kind"),
        ("kind", 1, "kind"),
        ("currency_code", "usd", "currency_code"),
        ("currency_code", "EURO", "currency_code"),
        ("payment_id", "", "payment_id"),
        ("payment_id", 42, "payment_id"),
        ("request_id", "has space", "request_id"),
        ("callback_deadline", "soon", "callback_deadline"),
        ("callback_deadline", -1, "callback_deadline"),
        ("description", None, "description"),
        ("description", "x" * 501, "description"),
        ("description", "bell\x07", "description"),
        ("card", [], "card"),
        ("card", {"brand": "VISA"}, "card.masked_number"),
        ("card", {"brand": "VISA", "masked_number": PAN}, "card.masked_number"),
        ("sealed_card", 12, "sealed_card"),
        ("sealed_card", "not base64!", "sealed_card"),
        ("sealed_card", "AQID", "sealed_card"),
        ("merchant", "m-17", "merchant"),
        ("merchant", {"merchant_id": "m"}, "merchant.name"),
    ],
)
def test_json_refuses_ill_typed_fields(
    path: str, value: Any, field: str, gateway_key: X25519PrivateKey
) -> None:
    document = json_request(gateway_key)
    document[path] = value
    with pytest.raises(FormatError) as caught:
        json_format.FORMAT.decode_request(json.dumps(document).encode())
    assert caught.value.field == field
    if isinstance(value, str) and len(value) > 4:
        assert value not in str(caught.value)


@pytest.mark.parametrize(
    "key",
    [
        "request_id",
        "payment_id",
        "attempt",
        "kind",
        "amount_minor",
        "currency_code",
        "callback_deadline",
    ],
)
def test_json_refuses_missing_fields(key: str, gateway_key: X25519PrivateKey) -> None:
    document = json_request(gateway_key)
    del document[key]
    with pytest.raises(FormatError) as caught:
        json_format.FORMAT.decode_request(json.dumps(document).encode())
    assert (caught.value.reason, caught.value.field) == ("missing_field", key)


def test_json_optional_parts_may_be_absent_and_unknown_keys_are_ignored(
    gateway_key: X25519PrivateKey,
) -> None:
    document = json_request(gateway_key)
    for key in ("card", "sealed_card", "merchant", "description"):
        del document[key]
    document["added_in_a_later_version"] = {"x": 1}
    request = json_format.FORMAT.decode_request(json.dumps(document).encode())
    assert (request.card, request.sealed_card, request.merchant, request.description) == (
        None,
        None,
        None,
        "",
    )


@pytest.mark.parametrize(
    "data",
    [
        b'{"event_id":"a","event_id":"b"}',  # duplicate key
        b'{"occur_time":NaN}',
        b'{"occur_time":Infinity}',
        b"\xef\xbb\xbf{}",  # BOM
        b"[" * 5_000 + b"]" * 5_000,
        b'{"event_id":"\xff"}',
    ],
    ids=["duplicate", "nan", "infinity", "bom", "deep", "bad-utf8"],
)
def test_json_refuses_malformed_documents(data: bytes) -> None:
    assert reason_of(json_format.FORMAT.decode_result, data) == "malformed"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"occur_time": "1700000000"}, "occur_time"),
        ({"occur_time": 1.7e9}, "occur_time"),
        ({"outcome": "MAYBE"}, "outcome"),
        ({"outcome": "approved"}, "outcome"),
        ({"failure_code": "card_declined"}, "failure_code"),  # approved with a failure
        ({"outcome": "DECLINED"}, "failure_code"),  # declined without a reason
        ({"failure_code": "has space", "outcome": "DECLINED"}, "failure_code"),
        ({"gateway_reference": 42}, "gateway_reference"),
        ({"event_id": ""}, "event_id"),
    ],
)
def test_json_refuses_bad_results(changes: dict[str, Any], field: str) -> None:
    document = json.loads(json_format.FORMAT.encode_result(approved()))
    document.update(changes)
    with pytest.raises(FormatError) as caught:
        json_format.FORMAT.decode_result(json.dumps(document).encode())
    assert caught.value.field == field


# ------------------------------------------------------------------------------- SOAP

_ENVELOPE = (
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns:pr="urn:payrail:gateway:v1"><soap:Body>{body}</soap:Body></soap:Envelope>'
)


def soap_result(**fields: str) -> bytes:
    values = {
        "event_id": "evt_0001",
        "payment_id": PAYMENT_ID,
        "outcome": "APPROVED",
        "occur_time": "1700000000",
    }
    values.update(fields)
    inner = "".join(f"<pr:{k}>{v}</pr:{k}>" for k, v in values.items())
    return _ENVELOPE.format(body=f"<pr:GatewayResult>{inner}</pr:GatewayResult>").encode()


def test_soap_hand_written_result_decodes() -> None:
    result = soap_format.FORMAT.decode_result(soap_result())
    assert result == dataclasses.replace(approved(), gateway_reference="")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&lol3;</soap:Body></soap:Envelope>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&xxe;</soap:Body></soap:Envelope>"""

DOCTYPE_ONLY = b'<!DOCTYPE soap:Envelope SYSTEM "http://attacker.example/x.dtd">' + soap_result()


@pytest.mark.parametrize("data", [BILLION_LAUGHS, XXE, DOCTYPE_ONLY], ids=["laughs", "xxe", "dtd"])
def test_soap_refuses_document_type_declarations(data: bytes) -> None:
    assert reason_of(soap_format.FORMAT.decode_result, data) == "forbidden_markup"
    assert reason_of(soap_format.FORMAT.decode_request, data) == "forbidden_markup"


@pytest.mark.parametrize(
    "data",
    [
        b"<!DOCTYPE r []>" + soap_result(),  # even an empty internal subset
        "\ufeff".encode() + DOCTYPE_ONLY,  # after a byte order mark
        b"<?xml version='1.0' encoding='utf-8'?>\n<!DOCTYPE\n r\n SYSTEM 'x.dtd'>" + soap_result(),
    ],
    ids=["empty", "bom", "spread"],
)
def test_soap_refuses_every_shape_of_dtd(data: bytes) -> None:
    # The parser itself (defusedxml, forbid_dtd) refuses it, whatever its spelling.
    assert reason_of(soap_format.FORMAT.decode_result, data) == "forbidden_markup"


def test_soap_refuses_undeclared_entities() -> None:
    data = soap_result(event_id="&undefined;")
    assert reason_of(soap_format.FORMAT.decode_result, data) == "malformed"


def test_soap_keeps_character_references_and_text_exact() -> None:
    data = soap_result(gateway_reference="  a&amp;b&#233;  ")
    assert soap_format.FORMAT.decode_result(data).gateway_reference == "  a&bé  "


def test_soap_refuses_oversize_before_parsing() -> None:
    data = soap_result(gateway_reference="x" * ENCODED_MAX_BYTES)
    assert reason_of(soap_format.FORMAT.decode_result, data) == "oversized"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<?xml version='1.0' encoding='ISO-8859-1'?>" + soap_result(), "malformed"),
        ("<?xml version='1.0' encoding='latin-1'?><a>é</a>".encode("latin-1"), "malformed"),
        (soap_result().replace(b"soap:Envelope", b"soap:Envelop"), "malformed"),
        (soap_result().replace(b"schemas.xmlsoap.org", b"example.org"), "malformed"),
        (soap_result().replace(b"urn:payrail:gateway:v1", b"urn:other"), "malformed"),
        (
            _ENVELOPE.format(
                body="<soap:Fault><faultcode>soap:Server</faultcode></soap:Fault>"
            ).encode(),
            "malformed",
        ),
        (soap_result().replace(b"</soap:Body>", b"</soap:Body><soap:Body/>"), "malformed"),
        (soap_result(occur_time="01700000000"), "invalid_field"),
        (soap_result(occur_time="-1"), "invalid_field"),
        (soap_result(occur_time=" 1700000000"), "invalid_field"),
        (soap_result(occur_time="1.7e9"), "invalid_field"),
        (soap_result(occur_time="<pr:x>1</pr:x>"), "invalid_field"),
        (soap_result(outcome="approved"), "invalid_field"),
        (soap_result(event_id=""), "missing_field"),
        (
            soap_result().replace(
                b"<pr:outcome>", b"<pr:outcome>DECLINED</pr:outcome><pr:outcome>"
            ),
            "malformed",
        ),
        (soap_result().replace(b"<pr:occur_time>1700000000</pr:occur_time>", b""), "missing_field"),
    ],
)
def test_soap_refuses_bad_documents(data: bytes, reason: str) -> None:
    assert reason_of(soap_format.FORMAT.decode_result, data) == reason


def test_soap_ignores_unknown_elements_and_other_namespaces() -> None:
    data = soap_result(added_later="x").replace(
        b"<pr:GatewayResult>", b'<pr:GatewayResult><x:ext xmlns:x="urn:x">1</x:ext>'
    )
    assert soap_format.FORMAT.decode_result(data).event_id == "evt_0001"


def test_soap_headers_must_not_demand_understanding() -> None:
    header = (
        '<soap:Header><h:Trace xmlns:h="urn:h" soap:mustUnderstand="{}">1</h:Trace></soap:Header>'
    )
    for must, ok in (("0", True), ("1", False)):
        data = soap_result().replace(b"<soap:Body>", header.format(must).encode() + b"<soap:Body>")
        if ok:
            assert soap_format.FORMAT.decode_result(data).event_id == "evt_0001"
        else:
            assert reason_of(soap_format.FORMAT.decode_result, data) == "malformed"


def test_soap_pretty_printed_document_decodes(gateway_key: X25519PrivateKey) -> None:
    request = make_request(gateway_key)
    encoded = soap_format.FORMAT.encode_request(request)
    pretty = encoded.replace(b"><pr:", b">\n    <pr:").replace(b"><soap:", b">\n<soap:")
    assert pretty.count(b"\n") > 20
    assert soap_format.FORMAT.decode_request(pretty) == request


# --------------------------------------------------------------------------- protobuf


def test_protobuf_refuses_unspecified_or_unknown_outcome() -> None:
    for outcome in (callbacks_pb2.OUTCOME_UNSPECIFIED, 7):
        message = protobuf_format.result_to_pb(approved())
        message.outcome = outcome  # type: ignore[assignment]
        data = message.SerializeToString()
        with pytest.raises(FormatError, match="outcome"):
            protobuf_format.FORMAT.decode_result(data)


def test_protobuf_refuses_missing_occur_time() -> None:
    message = protobuf_format.result_to_pb(approved())
    message.ClearField("occur_time")
    with pytest.raises(FormatError) as caught:
        protobuf_format.FORMAT.decode_result(message.SerializeToString())
    assert (caught.value.reason, caught.value.field) == ("missing_field", "occur_time")


def test_protobuf_drops_sub_second_precision() -> None:
    message = protobuf_format.result_to_pb(approved())
    message.occur_time.nanos = 999_999_999
    result = protobuf_format.FORMAT.decode_result(message.SerializeToString())
    assert result.occur_time == 1_700_000_000


def test_protobuf_refuses_an_empty_message() -> None:
    # proto3 cannot tell an absent field from an empty one: every rule still applies.
    with pytest.raises(FormatError):
        protobuf_format.FORMAT.decode_result(b"")


# ----------------------------------------------------------------------- the interface


def test_every_format_implements_the_interface() -> None:
    implementations: list[WireFormat] = [
        json_format.FORMAT,
        soap_format.FORMAT,
        protobuf_format.FORMAT,
    ]
    for implementation in implementations:
        for method in ("encode_request", "decode_request", "encode_result", "decode_result"):
            assert callable(getattr(implementation, method))


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_encoders_refuse_other_types(name: str) -> None:
    wire = formats.get(name)
    with pytest.raises(TypeError):
        wire.encode_result(object())  # type: ignore[arg-type]
    if name != "protobuf":
        with pytest.raises(TypeError):
            wire.encode_request(approved())  # type: ignore[arg-type]
