"""Registration rules."""

from __future__ import annotations

import pytest

from gateway_svc.domain.accounts import (
    Registration,
    common_passwords,
    normalize_email,
    password_problem,
    validate_registration,
)


def reg(**changes: str) -> Registration:
    fields = {
        "email": "ada@example.com",
        "password": "a long and unusual passphrase",
        "first_name": "Ada",
        "last_name": "Lovelace",
    }
    fields.update(changes)
    return Registration(**fields)


def test_a_good_registration_has_no_violations() -> None:
    assert validate_registration(reg()) == []


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("elevenchars", "at least 12"),
        ("Password1234", "most common"),
        ("correcthorsebatterystaple", "most common"),
        ("zzzzzzzzzzzzzz", "simple pattern"),
        ("abcabcabcabc", "simple pattern"),
        ("123456789012345", "simple pattern"),
        ("ada@example.com", "e-mail address or name"),
        ("Lovelace1234", "e-mail address or name"),
        ("x" * 257, "at most 256"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password: str, why: str) -> None:
    problem = password_problem(password, email="ada@example.com", names=("Ada", "Lovelace"))
    assert problem is not None
    assert why in problem


@pytest.mark.parametrize(
    "password",
    ["tide comes in twice a day", "Kx9#mPq2!vLw", "çà et là, dans la forêt", "a" * 11 + "b"],
)
def test_reasonable_passwords_pass(password: str) -> None:
    assert password_problem(password, email="ada@example.com", names=("Ada",)) is None


@pytest.mark.parametrize(
    "email", ["", "plain", "a@b", "a b@example.com", "a@example.c", "x" * 65 + "@example.com"]
)
def test_bad_emails(email: str) -> None:
    fields = {v.field for v in validate_registration(reg(email=email))}
    assert fields == {"email"}


def test_every_bad_field_is_reported_and_no_secret_echoed() -> None:
    found = validate_registration(
        reg(email="nope", password="short", first_name="", last_name="x" * 101)
    )
    assert {v.field for v in found} == {"email", "password", "first_name", "last_name"}
    assert all("short" not in v.description for v in found)


def test_names_refuse_control_characters() -> None:
    assert {v.field for v in validate_registration(reg(first_name="Ada\x00"))} == {"first_name"}


def test_email_normalisation_and_list_loaded() -> None:
    assert normalize_email("  Ada@Example.COM ") == "ada@example.com"
    assert "password1234" in common_passwords()
    assert all(p == p.lower() for p in common_passwords())
