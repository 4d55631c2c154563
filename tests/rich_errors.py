"""What a client reads of a payrail error, and the check that it is one of the catalogue's
(payrail_common.reasons): shared by unit, integration and e2e tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from payrail_common import reasons
from payrail_common.reasons import CATALOGUE, ERROR_DOMAIN, Reason

# Words no message may contain: exception classes, parser and database text.
LEAKS = ("class", "Error(", "Exception", "Traceback", "asyncpg", "UTF8", "0x00", "DecodeError")


@dataclass(frozen=True)
class RichError:
    code: str  # the gRPC status code's name
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: dict[str, str] = field(default_factory=dict)
    retry_delay_s: float | None = None
    # The google.rpc detail types present: "ErrorInfo", "BadRequest", "RetryInfo".
    details: frozenset[str] = frozenset()


def from_status(status: status_pb2.Status) -> RichError:
    found: dict[str, object] = {}
    kinds: set[str] = set()
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            kinds.add("ErrorInfo")
            found.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
        elif detail.Unpack(bad):
            kinds.add(reasons.BAD_REQUEST)
            found["violations"] = {v.field: v.description for v in bad.field_violations}
        elif detail.Unpack(retry):
            kinds.add(reasons.RETRY_INFO)
            found["retry_delay_s"] = retry.retry_delay.ToMilliseconds() / 1000
        else:
            kinds.add(detail.type_url)
    return RichError(
        code=next(c.name for c in grpc.StatusCode if c.value[0] == status.code),
        message=status.message,
        details=frozenset(kinds),
        **found,  # type: ignore[arg-type]
    )


def rich_error(error: grpc.aio.AioRpcError) -> RichError:
    """The error as a client library reads it (refusing details whose code or message
    differ from the status's)."""
    status = rpc_status.from_call(error)
    if status is None:
        return RichError(code=error.code().name, message=error.details() or "")
    return from_status(status)


def assert_catalogued(error: RichError, reason: Reason | None = None) -> None:
    """An ErrorInfo in payrail's domain with a catalogued reason (``reason`` when given),
    sent with one of its codes and exactly its metadata keys and other details; and a
    message that names nothing internal."""
    assert error.domain == ERROR_DOMAIN, error
    assert error.reason in set(Reason), error
    if reason is not None:
        assert error.reason == reason, error
    info = CATALOGUE[Reason(error.reason)]
    assert error.code in info.codes, error
    assert sorted(error.metadata) == sorted(info.metadata), error
    assert error.details - {"ErrorInfo"} == set(info.details), error
    for word in LEAKS:
        assert word not in error.message, error
