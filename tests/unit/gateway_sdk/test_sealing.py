"""Card sealing: round trips, every way an envelope can be wrong, key helpers, masked
card repr, and the published sealing vector of docs/callbacks.md."""

from __future__ import annotations

import base64
import json
import pickle
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway_sdk import sealing
from gateway_sdk.sealing import (
    ENVELOPE_MIN_BYTES,
    CardData,
    SealedCard,
    SealingError,
    generate_key_pair,
    load_private_key,
    load_public_key,
    private_key_to_pem,
    private_key_to_raw,
    public_key_to_pem,
    public_key_to_raw,
    seal,
    seal_card,
    unseal,
    unseal_card,
)
from tests.conftest import ROOT

PAYMENT_ID = "6f1c2a4e-0b1d-4c55-9a2e-3f4b5c6d7e8f"
AD = PAYMENT_ID.encode()
PLAINTEXT = b'{"number":"4242424242424242"}'


def card() -> CardData:
    return CardData(
        number="4242424242424242",
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder_name="Jane Müller",
    )


def unseal_reason(key: X25519PrivateKey, sealed: SealedCard | bytes, ad: bytes = AD) -> str:
    with pytest.raises(SealingError) as caught:
        unseal(key, sealed, associated_data=ad)
    return caught.value.reason


def test_round_trip_with_key_object_raw_key_and_bytes() -> None:
    private_key, public_key = generate_key_pair()
    sealed = seal(public_key, PLAINTEXT, associated_data=AD)
    assert unseal(private_key, sealed, associated_data=AD) == PLAINTEXT
    raw_sealed = seal(public_key_to_raw(public_key), PLAINTEXT, associated_data=AD)
    assert unseal(private_key, raw_sealed.to_bytes(), associated_data=AD) == PLAINTEXT
    assert unseal(private_key, SealedCard.from_base64(raw_sealed.to_base64()), associated_data=AD)


def test_envelope_layout() -> None:
    _, public_key = generate_key_pair()
    sealed = seal(public_key, PLAINTEXT, associated_data=AD)
    data = sealed.to_bytes()
    assert data[0] == 1
    assert data[1:33] == sealed.ephemeral_public_key
    assert data[33:45] == sealed.nonce
    assert data[45:] == sealed.ciphertext
    assert len(data) == ENVELOPE_MIN_BYTES + len(PLAINTEXT)
    assert PLAINTEXT not in data
    assert SealedCard.from_bytes(data) == sealed


def test_every_seal_uses_fresh_randomness() -> None:
    _, public_key = generate_key_pair()
    first = seal(public_key, PLAINTEXT, associated_data=AD)
    second = seal(public_key, PLAINTEXT, associated_data=AD)
    assert first.ephemeral_public_key != second.ephemeral_public_key
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_wrong_key_is_refused() -> None:
    _, public_key = generate_key_pair()
    other_private, _ = generate_key_pair()
    sealed = seal(public_key, PLAINTEXT, associated_data=AD)
    assert unseal_reason(other_private, sealed) == "unseal_failed"


def test_wrong_associated_data_is_refused() -> None:
    private_key, public_key = generate_key_pair()
    sealed = seal(public_key, PLAINTEXT, associated_data=AD)
    assert unseal_reason(private_key, sealed, b"another-payment") == "unseal_failed"


@pytest.mark.parametrize(
    "offset",
    [1, 20, 32, 33, 40, 44, 45, 50, -17, -1],
    ids=lambda o: f"byte{o}",
)
def test_any_flipped_bit_is_refused(offset: int) -> None:
    # 1..32 ephemeral key, 33..44 nonce, 45.. ciphertext, last 16 the tag.
    private_key, public_key = generate_key_pair()
    data = bytearray(seal(public_key, PLAINTEXT, associated_data=AD).to_bytes())
    data[offset] ^= 0x01
    assert unseal_reason(private_key, bytes(data)) == "unseal_failed"


def test_truncated_ciphertext_is_refused() -> None:
    private_key, public_key = generate_key_pair()
    data = seal(public_key, PLAINTEXT, associated_data=AD).to_bytes()
    assert unseal_reason(private_key, data[:-1]) == "unseal_failed"


@pytest.mark.parametrize("version", [0, 2, 255])
def test_other_envelope_versions_are_refused(version: int) -> None:
    private_key, public_key = generate_key_pair()
    data = bytearray(seal(public_key, PLAINTEXT, associated_data=AD).to_bytes())
    data[0] = version
    assert unseal_reason(private_key, bytes(data)) == "unsupported_version"
    with pytest.raises(SealingError, match="unsupported_version"):
        SealedCard(ephemeral_public_key=bytes(32), nonce=bytes(12), ciphertext=bytes(16), version=2)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01", b"\x01" + bytes(ENVELOPE_MIN_BYTES - 2), b"\x01" + bytes(2000)],
    ids=["empty", "version-only", "one-short", "oversized"],
)
def test_malformed_envelopes_are_refused(data: bytes) -> None:
    private_key, _ = generate_key_pair()
    assert unseal_reason(private_key, data) == "malformed"


@pytest.mark.parametrize(
    "text",
    ["", "not base64!", "AQID\n", " AQID", "AQI", "é", "A" * 5000],
)
def test_malformed_base64_is_refused(text: str) -> None:
    with pytest.raises(SealingError, match="malformed"):
        SealedCard.from_base64(text)


def test_sealing_to_a_low_order_point_is_refused() -> None:
    # The all-zero "public key" makes every shared secret zero: nothing would be secret.
    with pytest.raises(SealingError, match="invalid_key"):
        seal(bytes(32), PLAINTEXT, associated_data=AD)


def test_an_envelope_with_a_low_order_ephemeral_key_is_refused() -> None:
    private_key, public_key = generate_key_pair()
    sealed = seal(public_key, PLAINTEXT, associated_data=AD)
    forged = SealedCard(
        ephemeral_public_key=bytes(32), nonce=sealed.nonce, ciphertext=sealed.ciphertext
    )
    assert unseal_reason(private_key, forged) == "unseal_failed"


def test_seal_refuses_bad_arguments() -> None:
    _, public_key = generate_key_pair()
    with pytest.raises(TypeError):
        seal(public_key, PLAINTEXT, associated_data=b"")
    with pytest.raises(ValueError, match="at most"):
        seal(public_key, bytes(sealing.PLAINTEXT_MAX_BYTES + 1), associated_data=AD)
    assert seal(public_key, bytes(sealing.PLAINTEXT_MAX_BYTES), associated_data=AD)


def test_errors_say_nothing_about_content() -> None:
    private_key, public_key = generate_key_pair()
    sealed = seal_card(public_key, card(), payment_id=PAYMENT_ID)
    with pytest.raises(SealingError) as caught:
        unseal_card(private_key, sealed, payment_id="other")
    message = str(caught.value)
    assert "4242" not in message
    assert PAYMENT_ID not in message
    # Nothing chained either: a traceback must not carry the decryption detail.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# ------------------------------------------------------------------------------- keys


def test_key_round_trips_raw_and_pem() -> None:
    private_key, public_key = generate_key_pair()
    raw_private = private_key_to_raw(private_key)
    assert private_key_to_raw(load_private_key(raw_private)) == raw_private
    pem_private = private_key_to_pem(private_key)
    assert pem_private.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert private_key_to_raw(load_private_key(pem_private)) == raw_private
    raw_public = public_key_to_raw(public_key)
    assert len(raw_public) == 32
    assert public_key_to_raw(load_public_key(raw_public)) == raw_public
    assert public_key_to_raw(load_public_key(public_key_to_pem(public_key))) == raw_public


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(31),
        bytes(33),
        b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
    ],
)
def test_unusable_keys_are_refused(data: bytes) -> None:
    with pytest.raises(SealingError, match="invalid_key"):
        load_private_key(data)
    with pytest.raises(SealingError, match="invalid_key"):
        load_public_key(data)


def test_keys_of_another_algorithm_are_refused() -> None:
    ed = Ed25519PrivateKey.generate()
    with pytest.raises(SealingError, match="invalid_key"):
        load_public_key(
            ed.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )


# ------------------------------------------------------------------------------ cards


def test_card_round_trip() -> None:
    private_key, public_key = generate_key_pair()
    sealed = seal_card(public_key_to_raw(public_key), card(), payment_id=PAYMENT_ID)
    assert b"4242424242424242" not in sealed.to_bytes()
    opened = unseal_card(private_key, sealed.to_bytes(), payment_id=PAYMENT_ID)
    assert opened == card()
    assert unseal_card(private_key, sealed, payment_id=PAYMENT_ID) == opened
    assert (opened.number, opened.exp_month, opened.exp_year) == ("4242424242424242", 12, 2030)
    assert (opened.cvc, opened.holder_name) == ("123", "Jane Müller")


def test_card_sealed_for_one_payment_does_not_open_for_another() -> None:
    private_key, public_key = generate_key_pair()
    sealed = seal_card(public_key, card(), payment_id=PAYMENT_ID)
    with pytest.raises(SealingError, match="unseal_failed"):
        unseal_card(private_key, sealed, payment_id="11111111-2222-3333-4444-555555555555")


def test_an_envelope_that_is_not_a_card_is_refused_like_tampering() -> None:
    private_key, public_key = generate_key_pair()
    for plaintext in (b"not json", b"[]", b'{"number":"4242424242424242"}'):
        sealed = seal(public_key, plaintext, associated_data=AD)
        with pytest.raises(SealingError, match="unseal_failed"):
            unseal_card(private_key, sealed, payment_id=PAYMENT_ID)


def test_card_document_is_canonical_json() -> None:
    assert (
        card().to_json_bytes()
        == (
            '{"cvc":"123","exp_month":12,"exp_year":2030,"holder_name":"Jane Müller",'
            '"number":"4242424242424242"}'
        ).encode()
    )
    no_cvc = CardData(number="4242424242424242", exp_month=1, exp_year=2031)
    assert "cvc" not in json.loads(no_cvc.to_json_bytes())
    assert CardData.from_json_bytes(no_cvc.to_json_bytes()).cvc is None


def test_card_repr_masks_the_number_and_hides_cvc_and_name() -> None:
    shown_all = (repr(card()), str(card()), f"{card()}", repr([card()]))
    for shown in shown_all:
        assert "424242******4242" in shown
        assert "4242424242424242" not in shown
        assert "123" not in shown
        assert "Müller" not in shown
    assert card().masked_number == "424242******4242"


def test_card_data_is_not_picklable() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(card())


@pytest.mark.parametrize(
    "changes",
    [
        {"number": "4242"},
        {"number": "42424242424242424242"},
        {"number": "4242 4242 4242 4242"},
        {"number": "\uff14\uff12" * 8},  # full-width digits
        {"exp_month": 0},
        {"exp_month": 13},
        {"exp_month": True},
        {"exp_year": 30},
        {"exp_year": "2030"},
        {"cvc": ""},
        {"cvc": "12"},
        {"cvc": "12345"},
        {"holder_name": "x" * 101},
        {"holder_name": "\ud800"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_card_data_is_validated_without_echoing_values(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "number": "4242424242424242",
        "exp_month": 12,
        "exp_year": 2030,
        "cvc": "123",
        "holder_name": "",
    }
    fields.update(changes)
    with pytest.raises(ValueError, match=rf"^{next(iter(changes))} is ") as caught:
        CardData(**fields)  # type: ignore[arg-type]
    for value in changes.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in str(caught.value)


# ------------------------------------------------------------ docs/callbacks.md vector


def doc_vector() -> dict[str, str]:
    text = (ROOT / "docs" / "callbacks.md").read_text("utf-8")
    (block,) = re.findall(r"^```seal-vector\n(.*?)^```$", text, re.M | re.S)
    pairs = [line.partition(": ") for line in block.splitlines()]
    assert all(sep for _, sep, _ in pairs)
    return {key: value for key, _, value in pairs}


def test_docs_vector_opens() -> None:
    vector = doc_vector()
    private_key = load_private_key(bytes.fromhex(vector["recipient_private_key_hex"]))
    plaintext = unseal(
        private_key,
        bytes.fromhex(vector["envelope_hex"]),
        associated_data=vector["associated_data_text"].encode(),
    )
    assert plaintext == bytes.fromhex(vector["plaintext_hex"])
    assert plaintext.decode() == vector["plaintext_text"]
    opened = unseal_card(
        private_key,
        SealedCard.from_base64(vector["envelope_base64"]),
        payment_id=vector["associated_data_text"],
    )
    assert opened.to_json_bytes() == plaintext


def test_docs_vector_is_reproduced_step_by_step() -> None:
    vector = doc_vector()
    recipient = X25519PrivateKey.from_private_bytes(
        bytes.fromhex(vector["recipient_private_key_hex"])
    )
    ephemeral = X25519PrivateKey.from_private_bytes(
        bytes.fromhex(vector["ephemeral_private_key_hex"])
    )
    recipient_public = public_key_to_raw(recipient.public_key())
    ephemeral_public = public_key_to_raw(ephemeral.public_key())
    assert recipient_public.hex() == vector["recipient_public_key_hex"]
    assert ephemeral_public.hex() == vector["ephemeral_public_key_hex"]
    shared = ephemeral.exchange(recipient.public_key())
    assert shared.hex() == vector["shared_secret_hex"]
    assert shared == recipient.exchange(ephemeral.public_key())
    assert (ephemeral_public + recipient_public).hex() == vector["hkdf_salt_hex"]
    assert sealing.HKDF_INFO.decode() == vector["hkdf_info_text"]
    key = sealing._derive_key(shared, ephemeral_public, recipient_public)
    assert key.hex() == vector["aes_key_hex"]
    envelope = sealing._seal_with(
        ephemeral,
        bytes.fromhex(vector["nonce_hex"]),
        recipient_public,
        bytes.fromhex(vector["plaintext_hex"]),
        associated_data=vector["associated_data_text"].encode(),
    )
    assert envelope.to_bytes().hex() == vector["envelope_hex"]
    assert envelope.to_base64() == vector["envelope_base64"]
    assert base64.b64decode(vector["envelope_base64"]).hex() == vector["envelope_hex"]
