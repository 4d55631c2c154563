"""The callback signature: round trips, rotation, time window, tampering, strict header
parsing, constant-time comparison, and the published test vectors of docs/callbacks.md."""

from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
import re
from collections.abc import Sequence

import pytest

from gateway_sdk import formats, signing
from gateway_sdk.signing import (
    SIGNATURE_HEADER,
    TOLERANCE_S,
    CallbackSecret,
    SignatureError,
    SignatureVerifier,
    parse_header,
    sign,
    sign_with_secrets,
    signature_metadata,
    verify,
)
from tests.conftest import ROOT

SECRET = b"s" * 32
OTHER = b"o" * 32
PAYLOAD = b'{"event_id":"evt_1","outcome":"APPROVED"}'
NOW = 1_700_000_000


def reason(payload: bytes, header: str, secrets: Sequence[bytes], now: int = NOW) -> str:
    with pytest.raises(SignatureError) as caught:
        verify(payload, header, secrets, now=now)
    return caught.value.reason


def test_sign_produces_the_documented_header_shape() -> None:
    header = sign(PAYLOAD, SECRET, timestamp=NOW)
    assert re.fullmatch(r"t=1700000000,v1=[0-9a-f]{64}", header)
    expected = hmac.new(SECRET, b"1700000000." + PAYLOAD, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert SIGNATURE_HEADER == "x-payrail-signature"
    assert TOLERANCE_S == 300


def test_round_trip() -> None:
    verify(PAYLOAD, sign(PAYLOAD, SECRET, timestamp=NOW), [SECRET], now=NOW)


def test_callback_secret_signs_like_its_bytes() -> None:
    secret = CallbackSecret(SECRET)
    assert sign(PAYLOAD, secret, timestamp=NOW) == sign(PAYLOAD, SECRET, timestamp=NOW)
    verify(PAYLOAD, sign(PAYLOAD, SECRET, timestamp=NOW), [secret], now=NOW)


def test_signature_metadata_is_the_grpc_metadata_pair() -> None:
    assert signature_metadata(PAYLOAD, [SECRET], timestamp=NOW) == (
        (SIGNATURE_HEADER, sign(PAYLOAD, SECRET, timestamp=NOW)),
    )


def test_rotation_header_verifies_with_either_secret() -> None:
    header = sign_with_secrets(PAYLOAD, [SECRET, OTHER], timestamp=NOW)
    assert len(parse_header(header).signatures) == 2
    verify(PAYLOAD, header, [SECRET], now=NOW)
    verify(PAYLOAD, header, [OTHER], now=NOW)


def test_any_active_secret_is_accepted() -> None:
    header = sign(PAYLOAD, OTHER, timestamp=NOW)
    verify(PAYLOAD, header, [SECRET, OTHER], now=NOW)


def test_a_retired_secret_is_refused() -> None:
    assert reason(PAYLOAD, sign(PAYLOAD, OTHER, timestamp=NOW), [SECRET]) == "mismatch"


@pytest.mark.parametrize("skew_s", [-TOLERANCE_S, -1, 0, 1, TOLERANCE_S])
def test_within_tolerance_both_ways(skew_s: int) -> None:
    verify(PAYLOAD, sign(PAYLOAD, SECRET, timestamp=NOW), [SECRET], now=NOW + skew_s)


@pytest.mark.parametrize("skew_s", [-TOLERANCE_S - 1, TOLERANCE_S + 1, -86_400, 86_400])
def test_stale_both_ways(skew_s: int) -> None:
    header = sign(PAYLOAD, SECRET, timestamp=NOW)
    assert reason(PAYLOAD, header, [SECRET], now=NOW + skew_s) == "stale"


def test_custom_tolerance() -> None:
    header = sign(PAYLOAD, SECRET, timestamp=NOW)
    verify(PAYLOAD, header, [SECRET], now=NOW + 600, tolerance_s=600)
    with pytest.raises(SignatureError, match="stale"):
        verify(PAYLOAD, header, [SECRET], now=NOW + 11, tolerance_s=10)


def test_tampered_payload_is_refused() -> None:
    header = sign(PAYLOAD, SECRET, timestamp=NOW)
    assert reason(PAYLOAD.replace(b"APPROVED", b"DECLINED"), header, [SECRET]) == "mismatch"
    assert reason(PAYLOAD + b" ", header, [SECRET]) == "mismatch"


def test_moved_timestamp_is_refused() -> None:
    # The timestamp is signed: moving it to get past the window breaks the signature.
    header = sign(PAYLOAD, SECRET, timestamp=NOW - 1000)
    moved = header.replace(f"t={NOW - 1000}", f"t={NOW}")
    assert reason(PAYLOAD, moved, [SECRET]) == "mismatch"


def test_wrong_secret_is_refused() -> None:
    assert reason(PAYLOAD, sign(PAYLOAD, SECRET, timestamp=NOW), [OTHER]) == "mismatch"


def test_upper_case_hex_is_accepted() -> None:
    header = sign(PAYLOAD, SECRET, timestamp=NOW)
    t, v1 = header.split(",")
    verify(PAYLOAD, f"{t},v1={v1[3:].upper()}", [SECRET], now=NOW)


def test_unknown_schemes_are_ignored_and_duplicates_are_fine() -> None:
    good = sign(PAYLOAD, SECRET, timestamp=NOW).split(",")[1]
    header = f"v0=legacy,{good},t={NOW},v2=future-scheme,{good}"
    verify(PAYLOAD, header, [SECRET], now=NOW)
    assert parse_header(header).timestamp == NOW


@pytest.mark.parametrize("header", [f"t={NOW}", f"t={NOW},v2=abc"])
def test_a_header_without_v1_has_no_signature(header: str) -> None:
    assert reason(PAYLOAD, header, [SECRET]) == "no_signature"


def test_missing_header() -> None:
    assert reason(PAYLOAD, "", [SECRET]) == "missing"


def test_no_active_secret() -> None:
    assert reason(PAYLOAD, sign(PAYLOAD, SECRET, timestamp=NOW), []) == "no_secret"


_HEX = "ab" * 32


@pytest.mark.parametrize(
    "header",
    [
        f"v1={_HEX}",  # no timestamp
        f"t=abc,v1={_HEX}",
        f"t=-1,v1={_HEX}",
        f"t=+1700000000,v1={_HEX}",
        f"t=01700000000,v1={_HEX}",  # leading zero: the signed text would be ambiguous
        f"t=1700000000.5,v1={_HEX}",
        f"t=1234567890123,v1={_HEX}",  # 13 digits
        f"t=1700000000,t=1700000001,v1={_HEX}",
        f" t=1700000000,v1={_HEX}",
        f"t=1700000000, v1={_HEX}",
        f"t=1700000000,v1={_HEX} ",
        f"t=1700000000,v1={_HEX},",
        f"t=1700000000,,v1={_HEX}",
        f"T=1700000000,v1={_HEX}",
        f"t=1700000000,V1={_HEX}",
        f"t=1700000000,v1={_HEX[:-2]}",  # short
        f"t=1700000000,v1={_HEX}ab",  # long
        f"t=1700000000,v1={'zz' * 32}",
        f"t=1700000000,v1={_HEX},v2=",  # empty value
        f"t=1700000000,v1={_HEX},v2",  # no '='
        f"t=1700000000,v1={_HEX},v2=é",  # not ASCII
        "t=1700000000;v1=" + _HEX,
    ],
)
def test_malformed_headers(header: str) -> None:
    assert reason(PAYLOAD, header, [SECRET]) == "malformed"


def test_too_many_v1_entries_are_refused() -> None:
    eight = ",".join([f"t={NOW}", *[f"v1={_HEX}"] * 8])
    assert len(parse_header(eight).signatures) == 8
    nine = eight + f",v1={_HEX}"
    assert reason(PAYLOAD, nine, [SECRET]) == "malformed"


def test_too_many_elements_are_refused() -> None:
    header = ",".join([f"t={NOW}", f"v1={_HEX}", *["x=1"] * 15])
    assert reason(PAYLOAD, header, [SECRET]) == "malformed"


def test_oversized_header_is_refused_before_parsing() -> None:
    header = f"t={NOW},v1={_HEX},x=" + "a" * signing.HEADER_MAX_CHARS
    assert reason(PAYLOAD, header, [SECRET]) == "malformed"


def test_error_messages_never_echo_input() -> None:
    secret_hex = SECRET.hex()
    header = f"t={NOW},v1={secret_hex}"
    with pytest.raises(SignatureError) as caught:
        verify(PAYLOAD, header, [SECRET], now=NOW)
    assert secret_hex not in str(caught.value)
    assert PAYLOAD.decode() not in str(caught.value)


def test_every_candidate_is_compared_with_every_secret_without_early_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("hmac.compare_digest", counting)
    secrets = [SECRET, OTHER, b"t" * 32]
    # The first candidate matches the first secret; all 3 x 3 pairs are still compared.
    header = sign_with_secrets(PAYLOAD, [SECRET, b"x" * 32, b"y" * 32], timestamp=NOW)
    verify(PAYLOAD, header, secrets, now=NOW)
    assert len(calls) == 9
    calls.clear()
    assert reason(PAYLOAD, header, [b"z" * 32, OTHER]) == "mismatch"
    assert len(calls) == 6


def test_steps_are_overridable() -> None:
    class Lenient(SignatureVerifier):
        def check_timestamp(self, timestamp: int, *, now: int) -> None:
            return None

    header = sign(PAYLOAD, SECRET, timestamp=NOW - 10_000)
    Lenient().verify(PAYLOAD, header, [SECRET], now=NOW)
    with pytest.raises(SignatureError, match="stale"):
        SignatureVerifier().verify(PAYLOAD, header, [SECRET], now=NOW)


def test_str_payload_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        sign("text", SECRET, timestamp=NOW)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        verify("text", "t=1,v1=" + _HEX, [SECRET], now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("timestamp", [-1, 10**12, True])
def test_sign_refuses_impossible_timestamps(timestamp: int) -> None:
    with pytest.raises((TypeError, ValueError)):
        sign(PAYLOAD, SECRET, timestamp=timestamp)


def test_sign_with_secrets_is_bounded() -> None:
    with pytest.raises(ValueError, match="1 to 8"):
        sign_with_secrets(PAYLOAD, [], timestamp=NOW)
    with pytest.raises(ValueError, match="1 to 8"):
        sign_with_secrets(PAYLOAD, [SECRET] * 9, timestamp=NOW)


def test_callback_secret_never_shows_itself() -> None:
    raw = bytes(range(32))
    secret = CallbackSecret(raw)
    for shown in (repr(secret), str(secret), f"{secret}", repr([secret])):
        assert "redacted" in shown
        assert raw.hex() not in shown
        assert repr(raw) not in shown
    assert secret.reveal() == raw
    assert secret == CallbackSecret(raw)
    assert secret != CallbackSecret(bytes(32))
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        hash(secret)


def test_callback_secret_rules() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        CallbackSecret(b"short")
    with pytest.raises(TypeError):
        CallbackSecret("text")  # type: ignore[arg-type]
    raw = bytes(range(40))
    assert CallbackSecret.from_base64(base64.b64encode(raw).decode() + "\n").reveal() == raw
    assert CallbackSecret.from_base64(CallbackSecret(raw).to_base64()).reveal() == raw
    with pytest.raises(ValueError, match="base64"):
        CallbackSecret.from_base64("not base64!")
    assert len(CallbackSecret.generate().reveal()) == 32
    assert CallbackSecret.generate() != CallbackSecret.generate()


# ------------------------------------------------------------ docs/callbacks.md vectors

DOC = ROOT / "docs" / "callbacks.md"


def doc_blocks(info: str) -> list[dict[str, list[str]]]:
    """Every fenced block of docs/callbacks.md with this info string, as key -> values."""
    blocks = re.findall(rf"^```{re.escape(info)}\n(.*?)^```$", DOC.read_text("utf-8"), re.M | re.S)
    parsed = []
    for block in blocks:
        fields: dict[str, list[str]] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(": ")
            assert sep, f"unparseable vector line {line!r}"
            fields.setdefault(key, []).append(value)
        parsed.append(fields)
    return parsed


def one(fields: dict[str, list[str]], key: str) -> str:
    (value,) = fields[key]
    return value


def test_docs_publish_the_promised_vectors() -> None:
    vectors = doc_blocks("signature-vector")
    names = {one(v, "name") for v in vectors}
    assert {"simple", "utf8", "rotation", "stale-past", "stale-future", "tampered"} <= names
    results = {one(v, "result") for v in vectors}
    assert results == {"accept", "refuse stale", "refuse mismatch"}
    utf8 = next(v for v in vectors if one(v, "name") == "utf8")
    assert not bytes.fromhex(one(utf8, "payload_hex")).isascii()


@pytest.mark.parametrize("vector", doc_blocks("signature-vector"), ids=lambda v: one(v, "name"))
def test_docs_vector(vector: dict[str, list[str]]) -> None:
    secrets = [bytes.fromhex(h) for h in vector["secret_hex"]]
    timestamp = int(one(vector, "timestamp"))
    payload = bytes.fromhex(one(vector, "payload_hex"))
    assert payload.decode("utf-8") == one(vector, "payload_text")
    header = one(vector, "header")
    # Signers must produce exactly the published header.
    assert sign_with_secrets(payload, secrets, timestamp=timestamp) == header
    delivered = payload
    if "delivered_payload_hex" in vector:
        delivered = bytes.fromhex(one(vector, "delivered_payload_hex"))
        assert delivered.decode("utf-8") == one(vector, "delivered_payload_text")
    now = int(one(vector, "now"))
    expected = one(vector, "result")
    if expected == "accept":
        # Every secret alone is enough (rotation: the verifier may hold either one).
        for secret in secrets:
            verify(delivered, header, [secret], now=now)
    else:
        assert expected.startswith("refuse ")
        assert reason(delivered, header, secrets, now=now) == expected.removeprefix("refuse ")


def test_docs_grpcurl_example_is_refused() -> None:
    text = DOC.read_text("utf-8")
    header = re.search(r"-H 'x-payrail-signature: ([^']+)'", text)
    payload = re.search(r'"payload": "([A-Za-z0-9+/=]+)"', text)
    assert header is not None
    assert payload is not None
    raw = base64.b64decode(payload.group(1), validate=True)
    simple = next(v for v in doc_blocks("signature-vector") if one(v, "name") == "simple")
    assert raw == bytes.fromhex(one(simple, "payload_hex"))
    secret = bytes.fromhex(one(simple, "secret_hex"))
    assert reason(raw, header.group(1), [secret], now=NOW) == "mismatch"


# ------------------------------------------------------ docs/callbacks.md batch vectors


def test_docs_publish_batch_vectors_for_every_format() -> None:
    vectors = doc_blocks("batch-signature-vector")
    assert {one(v, "format") for v in vectors} == set(formats.names())
    assert {one(v, "result") for v in vectors} == {"accept", "refuse stale", "refuse mismatch"}
    assert any(len(v["secret_hex"]) > 1 for v in vectors)  # rotation over a batch
    assert all(len(v["result_item"]) >= 2 for v in vectors)  # every one a real batch


@pytest.mark.parametrize(
    "vector", doc_blocks("batch-signature-vector"), ids=lambda v: one(v, "name")
)
def test_docs_batch_vector(vector: dict[str, list[str]]) -> None:
    wire = formats.get(one(vector, "format"))
    secrets = [bytes.fromhex(h) for h in vector["secret_hex"]]
    timestamp = int(one(vector, "timestamp"))
    payload = bytes.fromhex(one(vector, "payload_hex"))
    if "payload_text" in vector:
        assert payload.decode("utf-8") == one(vector, "payload_text")
    # The payload is the batch it says, and payrail's encoder makes exactly these bytes.
    results = wire.decode_results(payload)
    assert [f"{r.event_id} {r.payment_id} {r.outcome}" for r in results] == vector["result_item"]
    assert wire.encode_results(results) == payload
    header = one(vector, "header")
    assert sign_with_secrets(payload, secrets, timestamp=timestamp) == header
    delivered = payload
    if "delivered_payload_hex" in vector:
        delivered = bytes.fromhex(one(vector, "delivered_payload_hex"))
        assert len(wire.decode_results(delivered)) == len(results)  # a valid batch, altered
    now = int(one(vector, "now"))
    expected = one(vector, "result")
    if expected == "accept":
        for secret in secrets:
            verify(delivered, header, [secret], now=now)
    else:
        assert reason(delivered, header, secrets, now=now) == expected.removeprefix("refuse ")
