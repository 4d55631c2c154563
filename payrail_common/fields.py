"""Plain value types shared by the pure domains of every service (standard library only)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request (``card.number``) and what is wrong.

    The description is shown to the client: it must never echo a secret or card data.
    """

    field: str
    description: str
