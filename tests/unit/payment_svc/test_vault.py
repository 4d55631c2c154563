from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import pytest

from payment_svc.domain.cards import PanSecret, Secret
from payment_svc.domain.errors import DecryptionFailed, DomainError
from payment_svc.vault import CardVault, SealedCvc, SealedPan

K1 = bytes(range(1, 33))
K2 = bytes(range(101, 133))
FINGERPRINT_KEY = bytes(range(201, 233))
PAN = PanSecret("4242424242424242")
PAYMENT_ID = "0b7f6a52-2f1e-4a53-9d4b-4f0d9a8e1c11"
OTHER_PAYMENT_ID = "5d0f3b8e-7c41-4b7f-8a0e-2a6b1c9d3e22"


def vault(
    keys: dict[str, bytes] | None = None,
    active: str = "k1",
    fingerprint_key: bytes = FINGERPRINT_KEY,
) -> CardVault:
    return CardVault(keys or {"k1": K1}, active_key_id=active, fingerprint_key=fingerprint_key)


def flip_first_bit(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


def test_pan_round_trips_and_the_ciphertext_does_not_contain_it() -> None:
    sealed = vault().encrypt_pan(PAN, PAYMENT_ID)
    assert sealed.key_id == "k1"
    assert len(sealed.nonce) == 12
    assert b"4242424242424242" not in sealed.ciphertext
    assert b"424242" not in sealed.ciphertext
    assert vault().decrypt_pan(sealed, PAYMENT_ID) == PAN


def test_every_seal_uses_a_fresh_nonce() -> None:
    v = vault()
    first, second = v.encrypt_pan(PAN, PAYMENT_ID), v.encrypt_pan(PAN, PAYMENT_ID)
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_a_ciphertext_moved_to_another_payment_is_refused() -> None:
    sealed = vault().encrypt_pan(PAN, PAYMENT_ID)
    with pytest.raises(DecryptionFailed) as caught:
        vault().decrypt_pan(sealed, OTHER_PAYMENT_ID)
    assert isinstance(caught.value, DomainError)
    assert caught.value.reason == "INTERNAL_ERROR"  # never a client's doing
    assert "4242" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: dataclasses.replace(s, ciphertext=flip_first_bit(s.ciphertext)),
        lambda s: dataclasses.replace(s, ciphertext=s.ciphertext[:-1]),
        lambda s: dataclasses.replace(s, ciphertext=s.ciphertext[:15]),
        lambda s: dataclasses.replace(s, nonce=flip_first_bit(s.nonce)),
        lambda s: dataclasses.replace(s, nonce=s.nonce + b"\x00"),
        lambda s: dataclasses.replace(s, key_id="k2"),  # relabelled to the other key
    ],
)
def test_tampering_is_refused(tamper: Callable[[SealedPan], SealedPan]) -> None:
    v = vault({"k1": K1, "k2": K2})
    sealed = v.encrypt_pan(PAN, PAYMENT_ID)
    with pytest.raises(DecryptionFailed):
        v.decrypt_pan(tamper(sealed), PAYMENT_ID)


def test_rotation_keeps_old_ciphertexts_readable() -> None:
    old = vault({"k1": K1}).encrypt_pan(PAN, PAYMENT_ID)
    rotated = vault({"k1": K1, "k2": K2}, active="k2")
    assert rotated.decrypt_pan(old, PAYMENT_ID) == PAN
    assert rotated.needs_rotation(old)
    fresh = rotated.encrypt_pan(PAN, PAYMENT_ID)
    assert fresh.key_id == "k2"
    assert not rotated.needs_rotation(fresh)
    # Once k1 is retired, what it sealed is unreadable: a clear error, naming the key.
    retired = vault({"k2": K2}, active="k2")
    with pytest.raises(DecryptionFailed, match="unknown key id 'k1'"):
        retired.decrypt_pan(old, PAYMENT_ID)


def test_fingerprint_is_stable_and_keyed() -> None:
    first = vault().fingerprint(PAN)
    assert first == vault({"k2": K2}, active="k2").fingerprint(
        PanSecret.from_input("4242 4242 4242 4242")
    )
    assert len(first) == 64
    int(first, 16)
    assert first != hashlib.sha256(b"4242424242424242").hexdigest()
    assert first != vault(fingerprint_key=bytes(range(50, 82))).fingerprint(PAN)
    assert first != vault().fingerprint(PanSecret("4000000000000002"))


def test_cvc_round_trips_bound_to_its_payment() -> None:
    v = vault()
    sealed = v.seal_cvc(Secret("123"), PAYMENT_ID)
    assert b"123" not in sealed.ciphertext
    assert v.open_cvc(sealed, PAYMENT_ID) == Secret("123")
    with pytest.raises(DecryptionFailed):
        v.open_cvc(sealed, OTHER_PAYMENT_ID)


def test_a_pan_ciphertext_cannot_be_opened_as_a_cvc_or_the_reverse() -> None:
    v = vault()
    pan = v.encrypt_pan(PAN, PAYMENT_ID)
    with pytest.raises(DecryptionFailed):
        v.open_cvc(SealedCvc(pan.key_id, pan.nonce, pan.ciphertext), PAYMENT_ID)
    cvc = v.seal_cvc(Secret("1234"), PAYMENT_ID)
    with pytest.raises(DecryptionFailed):
        v.decrypt_pan(SealedPan(cvc.key_id, cvc.nonce, cvc.ciphertext), PAYMENT_ID)


def test_repr_shows_key_ids_only() -> None:
    shown = repr(vault({"k1": K1, "k2": K2}))
    assert "k1" in shown
    assert "k2" in shown
    assert K1.hex() not in shown
    assert repr(K1) not in shown


@pytest.mark.parametrize(
    ("keys", "active", "fingerprint_key", "message"),
    [
        ({"k1": K1[:16]}, "k1", FINGERPRINT_KEY, "exactly 32 bytes"),
        ({"k1": bytes(32)}, "k1", FINGERPRINT_KEY, "all zero"),
        ({"k1": K1}, "k2", FINGERPRINT_KEY, "active key id 'k2'"),
        ({"k1": K1}, "k1", K1, "must differ"),
        ({"k1": K1}, "k1", FINGERPRINT_KEY[:31], "exactly 32 bytes"),
        ({"bad id": K1}, "bad id", FINGERPRINT_KEY, "key ids"),
        ({}, "k1", FINGERPRINT_KEY, "1 to 64 keys"),
    ],
)
def test_bad_key_material_is_a_configuration_error(
    keys: dict[str, bytes], active: str, fingerprint_key: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CardVault(keys, active_key_id=active, fingerprint_key=fingerprint_key)


@pytest.mark.parametrize("payment_id", ["", "p" * 129])
def test_payment_id_is_bounded(payment_id: str) -> None:
    with pytest.raises(ValueError, match="payment_id"):
        vault().encrypt_pan(PAN, payment_id)
