"""Wire formats, one module each, behind one interface (:class:`WireFormat`).

``get("json")``, ``get("soap")`` or ``get("protobuf")`` returns the format a gateway is
registered with; nothing outside these modules knows what a format looks like.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from gateway_sdk.formats import json_format, protobuf_format, soap_format
from gateway_sdk.formats.base import (
    FormatError,
    GatewayMerchant,
    GatewayRequest,
    GatewayResult,
    MaskedCard,
    WireFormat,
)

FORMATS: Final[Mapping[str, WireFormat]] = MappingProxyType(
    {
        json_format.FORMAT.name: json_format.FORMAT,
        soap_format.FORMAT.name: soap_format.FORMAT,
        protobuf_format.FORMAT.name: protobuf_format.FORMAT,
    }
)


def get(name: str) -> WireFormat:
    """The format registered under ``name``; :class:`FormatError` (``unknown_format``)
    for any other name."""
    wire_format = FORMATS.get(name)
    if wire_format is None:
        raise FormatError("unknown_format")
    return wire_format


def names() -> tuple[str, ...]:
    return tuple(FORMATS)


__all__ = [
    "FORMATS",
    "FormatError",
    "GatewayMerchant",
    "GatewayRequest",
    "GatewayResult",
    "MaskedCard",
    "WireFormat",
    "get",
    "names",
]
