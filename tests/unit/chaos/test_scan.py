"""The card-data scanner of the chaos suite: finds a leaked PAN or CVC in the shapes a
leak takes, and does not mistake an id that happens to start with the CVC's digits."""

from __future__ import annotations

import pytest

from chaos.plan import CARDS, CVC
from chaos.scan import _needles


def found(data: bytes) -> list[str]:
    return [label for label, pattern in _needles() if pattern.search(data)]


@pytest.mark.parametrize(
    "leak",
    [
        f'{{"cvc": "{CVC}"}}',
        f"card cvc={CVC} exp=12/31",
        f"<pr:cvc>{CVC}</pr:cvc>",
        f"'cvc': '{CVC}'",
    ],
)
def test_a_cvc_in_text_is_found(leak: str) -> None:
    assert found(leak.encode()) == ["CVC"]


def test_every_test_pan_is_found_plain_and_hex() -> None:
    for number in CARDS.values():
        assert found(b"x " + number.encode() + b" y")
        assert found(number.encode().hex().encode())


def test_an_id_that_starts_with_the_cvc_digits_is_not_a_cvc() -> None:
    key = f"SET cvc:{CVC}e9e07-9305-4195-b33c-ffb517fbf58a".encode()
    assert found(key) == []
    assert found(f"cvc:{CVC}-0".encode()) == []
