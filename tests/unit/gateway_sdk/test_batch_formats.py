"""Batches of results (CallbackService/ReportResults) in every wire format: round trips in
order, the bounds (1 to 500 results, 1 MiB), strict decoding of every result inside, and
XML still refused any document type declaration."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gateway_sdk import formats
from gateway_sdk.formats import json_format, protobuf_format, soap_format
from gateway_sdk.formats.base import (
    BATCH_ENCODED_MAX_BYTES,
    BATCH_RESULTS_MAX,
    ENCODED_MAX_BYTES,
    FormatError,
    GatewayResult,
)
from payrail.callbacks.v1 import callbacks_pb2

PAYMENT_ID = "6f1c2a4e-0b1d-4c55-9a2e-3f4b5c6d7e8f"
FORMAT_NAMES = ("json", "soap", "protobuf")


def result(index: int, *, approved: bool = True) -> GatewayResult:
    return GatewayResult(
        event_id=f"evt_{index:04d}",
        payment_id=PAYMENT_ID,
        outcome="APPROVED" if approved else "DECLINED",
        failure_code="" if approved else "card_declined",
        failure_message="" if approved else "Karte abgelehnt \u2013 Zürich\n€ <&>",
        gateway_reference=f"ref-{index}" if approved else "",
        occur_time=1_700_000_000 + index,
    )


MIXED = (result(1), result(2, approved=False), result(3))


def reason_of(call: object, data: object) -> tuple[str, str]:
    with pytest.raises(FormatError) as caught:
        call(data)  # type: ignore[operator]
    return caught.value.reason, caught.value.field


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_round_trip_keeps_every_result_in_order(name: str) -> None:
    wire = formats.get(name)
    assert wire.decode_results(wire.encode_results(MIXED)) == MIXED
    assert wire.decode_results(wire.encode_results([result(9)])) == (result(9),)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_a_batch_may_be_far_larger_than_one_message(name: str) -> None:
    wire = formats.get(name)
    batch = tuple(result(i, approved=i % 3 != 0) for i in range(BATCH_RESULTS_MAX))
    encoded = wire.encode_results(batch)
    assert ENCODED_MAX_BYTES < len(encoded) <= BATCH_ENCODED_MAX_BYTES
    assert wire.decode_results(encoded) == batch


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_encoders_refuse_an_empty_or_too_long_batch(name: str) -> None:
    wire = formats.get(name)
    assert reason_of(wire.encode_results, []) == ("invalid_field", "results")
    too_many = [result(i) for i in range(BATCH_RESULTS_MAX + 1)]
    assert reason_of(wire.encode_results, too_many) == ("invalid_field", "results")
    with pytest.raises(TypeError):
        wire.encode_results(result(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        wire.encode_results([result(1), object()])  # type: ignore[list-item]


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_an_encoding_over_the_byte_bound_is_refused_so_the_sender_splits(name: str) -> None:
    wire = formats.get(name)
    # The longest text fields in 4-byte characters: over 2.5 KiB per result.
    clef = "\U0001d11e"
    big = dataclasses.replace(
        result(1, approved=False), failure_message=clef * 500, gateway_reference=clef * 128
    )
    assert reason_of(wire.encode_results, [big] * BATCH_RESULTS_MAX)[0] == "oversized"
    assert wire.decode_results(wire.encode_results([big] * 100)) == (big,) * 100


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_decoders_refuse_oversized_input_before_parsing(name: str) -> None:
    wire = formats.get(name)
    assert reason_of(wire.decode_results, b"x" * (BATCH_ENCODED_MAX_BYTES + 1))[0] == "oversized"


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_one_result_and_a_batch_are_not_each_other(name: str) -> None:
    wire = formats.get(name)
    with pytest.raises(FormatError):
        wire.decode_results(wire.encode_result(result(1)))
    if name != "protobuf":  # protobuf cannot tell them apart by shape: see below
        with pytest.raises(FormatError):
            wire.decode_result(wire.encode_results([result(1)]))


def test_protobuf_batch_is_the_contract_message() -> None:
    encoded = protobuf_format.FORMAT.encode_results(MIXED)
    batch = callbacks_pb2.GatewayResultBatch.FromString(encoded)
    assert [r.event_id for r in batch.results] == ["evt_0001", "evt_0002", "evt_0003"]
    assert batch.results[1].outcome == callbacks_pb2.OUTCOME_DECLINED
    assert encoded == callbacks_pb2.GatewayResultBatch(
        results=[protobuf_format.result_to_pb(r) for r in MIXED]
    ).SerializeToString(deterministic=True)


def test_protobuf_refuses_an_empty_batch_and_a_bad_result_inside() -> None:
    assert reason_of(protobuf_format.FORMAT.decode_results, b"") == ("invalid_field", "results")
    message = callbacks_pb2.GatewayResultBatch(
        results=[protobuf_format.result_to_pb(r) for r in MIXED]
    )
    message.results[2].ClearField("occur_time")
    data = message.SerializeToString()
    assert reason_of(protobuf_format.FORMAT.decode_results, data) == (
        "missing_field",
        "occur_time",
    )
    assert reason_of(protobuf_format.FORMAT.decode_results, b"\xff\xff") == ("malformed", "")


# ------------------------------------------------------------------------------- json


def test_json_batch_is_an_object_with_a_results_list() -> None:
    encoded = json_format.FORMAT.encode_results(MIXED[:2])
    assert encoded == json_format.dumps(
        {"results": [json_format.result_to_document(r) for r in MIXED[:2]]}
    )
    assert encoded.startswith(b'{"results":[{"event_id":"evt_0001","failure_code":""')


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"results":[]}', ("invalid_field", "results")),
        (b'{"results":{}}', ("invalid_field", "results")),
        (b'{"results":["x"]}', ("invalid_field", "results")),
        (b'{"results":null}', ("invalid_field", "results")),
        (b"{}", ("missing_field", "results")),
        (b"[]", ("malformed", "")),
        (b'{"results":[],"results":[]}', ("malformed", "")),
    ],
)
def test_json_refuses_batches_of_the_wrong_shape(data: bytes, expected: tuple[str, str]) -> None:
    assert reason_of(json_format.FORMAT.decode_results, data) == expected


def test_json_checks_every_result_and_ignores_unknown_keys() -> None:
    document = json.loads(json_format.FORMAT.encode_results(MIXED))
    document["sent_by"] = "gateway v2"
    document["results"][0]["added_later"] = 1
    data = json.dumps(document).encode()
    assert json_format.FORMAT.decode_results(data) == MIXED
    document["results"][1]["occur_time"] = "1700000000"
    data = json.dumps(document).encode()
    assert reason_of(json_format.FORMAT.decode_results, data) == ("invalid_field", "occur_time")


def test_json_refuses_too_many_results() -> None:
    one = json_format.result_to_document(result(1))
    data = json.dumps({"results": [one] * (BATCH_RESULTS_MAX + 1)}).encode()
    assert len(data) < BATCH_ENCODED_MAX_BYTES
    assert reason_of(json_format.FORMAT.decode_results, data) == ("invalid_field", "results")


# ------------------------------------------------------------------------------- soap

_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns:pr="urn:payrail:gateway:v1"><soap:Body>{body}</soap:Body></soap:Envelope>'
)


def soap_batch(*inner: str) -> bytes:
    return _ENVELOPE.format(
        body=f"<pr:GatewayResultBatch>{''.join(inner)}</pr:GatewayResultBatch>"
    ).encode()


def soap_result(event_id: str = "evt_0001", outcome: str = "APPROVED") -> str:
    return (
        f"<pr:GatewayResult><pr:event_id>{event_id}</pr:event_id>"
        f"<pr:payment_id>{PAYMENT_ID}</pr:payment_id><pr:outcome>{outcome}</pr:outcome>"
        "<pr:occur_time>1700000001</pr:occur_time></pr:GatewayResult>"
    )


def test_soap_batch_is_one_element_holding_the_results() -> None:
    encoded = soap_format.FORMAT.encode_results(MIXED)
    assert encoded.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<soap:Envelope ")
    assert b"<soap:Body><pr:GatewayResultBatch><pr:GatewayResult><pr:event_id>evt_0001" in encoded
    assert encoded.count(b"<pr:GatewayResult>") == 3
    assert encoded.endswith(b"</pr:GatewayResultBatch></soap:Body></soap:Envelope>")


def test_soap_hand_written_batch_decodes_and_ignores_other_namespaces() -> None:
    data = soap_batch(
        soap_result("a"), '<x:note xmlns:x="urn:x">ignored</x:note>', "\n  ", soap_result("b")
    )
    decoded = soap_format.FORMAT.decode_results(data)
    assert [r.event_id for r in decoded] == ["a", "b"]
    assert decoded[0] == GatewayResult(
        event_id="a", payment_id=PAYMENT_ID, outcome="APPROVED", occur_time=1_700_000_001
    )


BATCH_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
""" + soap_batch(soap_result("&lol2;")).split(b"?>", 1)[1]


@pytest.mark.parametrize(
    "data",
    [
        BATCH_LAUGHS,
        b'<!DOCTYPE r SYSTEM "http://attacker.example/x.dtd">' + soap_batch(soap_result()),
        b"<!DOCTYPE r []>" + soap_batch(soap_result()),
    ],
    ids=["laughs", "external", "empty"],
)
def test_soap_batch_refuses_document_type_declarations(data: bytes) -> None:
    assert reason_of(soap_format.FORMAT.decode_results, data)[0] == "forbidden_markup"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (soap_batch(), ("invalid_field", "results")),
        (soap_batch(soap_result(), "<pr:Other/>"), ("malformed", "results")),
        (soap_batch(soap_result(outcome="maybe")), ("invalid_field", "outcome")),
        (soap_batch(soap_result(event_id="")), ("missing_field", "event_id")),
        (
            _ENVELOPE.format(body=soap_result()).encode(),
            ("malformed", "GatewayResultBatch"),
        ),
        (
            _ENVELOPE.format(
                body=f"<pr:GatewayResultBatch>{soap_result()}</pr:GatewayResultBatch>" * 2
            ).encode(),
            ("malformed", "GatewayResultBatch"),
        ),
    ],
    ids=["empty", "stranger", "outcome", "event-id", "single", "two-batches"],
)
def test_soap_refuses_bad_batches(data: bytes, expected: tuple[str, str]) -> None:
    assert reason_of(soap_format.FORMAT.decode_results, data) == expected


def test_every_format_implements_the_batch_interface() -> None:
    for name in FORMAT_NAMES:
        for method in ("encode_results", "decode_results"):
            assert callable(getattr(formats.get(name), method))
