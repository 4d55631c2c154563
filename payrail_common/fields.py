"""Plain value types and text rules shared by the pure domains of every service
(standard library only)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request (``card.number``) and what is wrong.

    The description is shown to the client: it must never echo a secret or card data.
    """

    field: str
    description: str


# What a client hears about text PostgreSQL cannot store.
NOT_STORABLE = "must not contain NUL characters or unpaired surrogates"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_storable_text(value: str) -> bool:
    """Whether PostgreSQL can hold ``value`` in a ``text`` column (and compare with it).

    Its text types refuse NUL (U+0000) outright, and UTF-8 cannot encode a lone surrogate
    (protobuf refuses those, but JSON and other decoders may not). Every text field that
    may reach a query passes this before it does, so the database's own error text never
    becomes the client's answer.
    """
    return _UNSTORABLE.search(value) is None


def storable_text_violation(field: str, value: str) -> FieldViolation | None:
    """A violation naming ``field`` when ``value`` cannot be stored; None when it can."""
    return None if is_storable_text(value) else FieldViolation(field, NOT_STORABLE)


__all__ = ["NOT_STORABLE", "FieldViolation", "is_storable_text", "storable_text_violation"]
