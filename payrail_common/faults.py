"""What an error means for the one who got it: wait and retry, or give up on this item.

Every retry decision in payrail goes through :func:`classify`, so "PostgreSQL restarted"
or "payment_svc is down" is never mistaken for "this message is bad". Three answers:

* :attr:`Fault.TRANSIENT` — a dependency is unreachable, slow, restarting or busy (gRPC
  UNAVAILABLE/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED/ABORTED, a lost or refused connection,
  a timeout, a Kafka broker or leader missing, PostgreSQL shutting down, starting up,
  out of connections, a serialization failure or deadlock, Redis unreachable). The same
  request will succeed once the dependency is back: wait with capped, jittered backoff
  for as long as it takes, and report the dependency degraded meanwhile. Never a reason
  to dead-letter.
* :attr:`Fault.PERMANENT` — the request itself is wrong and will be wrong every time
  (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED,
  a record too large for the broker, a constraint the data violates). Retrying cannot
  help: the item is final (a dead letter, or an answer to record).
* :attr:`Fault.UNKNOWN` — neither is known (gRPC UNKNOWN or INTERNAL: an upstream bug,
  a Python exception nobody mapped). Retried a bounded number of times, then treated as
  permanent, so one poisonous item cannot block a partition forever.

The classification is by meaning (status code, SQLSTATE class, the library's own
``retriable`` notion), not by a tuple of exception types that silently leaves some out.
"""

from __future__ import annotations

import asyncio
import enum
import random as _random
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import grpc
from aiokafka import errors as kafka_errors
from redis import exceptions as redis_errors

__all__ = [
    "Backoff",
    "Fault",
    "classify",
    "dependency_of",
    "describe",
    "full_jitter_backoff_s",
    "is_transient",
]


class Fault(enum.Enum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


_GRPC = {
    grpc.StatusCode.UNAVAILABLE: Fault.TRANSIENT,
    grpc.StatusCode.DEADLINE_EXCEEDED: Fault.TRANSIENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Fault.TRANSIENT,
    grpc.StatusCode.ABORTED: Fault.TRANSIENT,
    # A call cancelled under us (a channel closing, a peer going away) says nothing
    # about the request.
    grpc.StatusCode.CANCELLED: Fault.TRANSIENT,
    grpc.StatusCode.INVALID_ARGUMENT: Fault.PERMANENT,
    grpc.StatusCode.NOT_FOUND: Fault.PERMANENT,
    grpc.StatusCode.ALREADY_EXISTS: Fault.PERMANENT,
    grpc.StatusCode.FAILED_PRECONDITION: Fault.PERMANENT,
    grpc.StatusCode.OUT_OF_RANGE: Fault.PERMANENT,
    grpc.StatusCode.PERMISSION_DENIED: Fault.PERMANENT,
    grpc.StatusCode.UNAUTHENTICATED: Fault.PERMANENT,
    grpc.StatusCode.UNIMPLEMENTED: Fault.PERMANENT,
    grpc.StatusCode.DATA_LOSS: Fault.PERMANENT,
    grpc.StatusCode.UNKNOWN: Fault.UNKNOWN,
    grpc.StatusCode.INTERNAL: Fault.UNKNOWN,
}

# Kafka errors about the message or the client's configuration: the same send fails
# the same way every time. Every other Kafka error is about the cluster's state.
_KAFKA_PERMANENT: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.UnsupportedVersionError,
    kafka_errors.KafkaConfigurationError,
    kafka_errors.InvalidMessageError,
)

# SQLSTATE classes that describe the server or the connection, not the statement:
# 08 connection exception, 53 insufficient resources, 57 operator intervention
# (admin/crash shutdown, cannot connect now), 58 system error, 40 transaction rollback
# (serialization failure, deadlock).
_PG_TRANSIENT_CLASSES = frozenset({"08", "53", "57", "58", "40"})


def classify(exc: BaseException) -> Fault:
    """What ``exc`` means for a retry of the same request."""
    if isinstance(exc, grpc.aio.AioRpcError | grpc.RpcError) and hasattr(exc, "code"):
        code = exc.code()
        return _GRPC.get(code, Fault.UNKNOWN)
    if isinstance(exc, kafka_errors.KafkaError):
        return Fault.PERMANENT if isinstance(exc, _KAFKA_PERMANENT) else Fault.TRANSIENT
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if sqlstate[:2] in _PG_TRANSIENT_CLASSES:
            return Fault.TRANSIENT
        return Fault.PERMANENT
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError):
        # A connection closed or lost under the query, a pool closing during shutdown.
        return Fault.TRANSIENT
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return Fault.TRANSIENT
    if isinstance(exc, redis_errors.BusyLoadingError | redis_errors.TryAgainError):
        return Fault.TRANSIENT
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError | OSError):
        return Fault.TRANSIENT
    return Fault.UNKNOWN


def is_transient(exc: BaseException) -> bool:
    """True when waiting and retrying the same request is the right answer."""
    return classify(exc) is Fault.TRANSIENT


def dependency_of(
    exc: BaseException, *, grpc_upstream: str = "upstream", other: str = "network"
) -> str:
    """Which dependency a transient error is about, as the health probes name them
    (``other`` for a bare connection error or timeout whose source the type cannot tell)."""
    if isinstance(exc, grpc.aio.AioRpcError | grpc.RpcError):
        return grpc_upstream
    if isinstance(exc, kafka_errors.KafkaError):
        return "kafka"
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return "postgres"
    if isinstance(exc, redis_errors.RedisError):
        return "redis"
    return other


def describe(exc: BaseException) -> str:
    """A short, safe description for logs and dead-letter headers: the gRPC code or the
    exception class, never a message that could carry data."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"grpc {exc.code().name}"
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError) and sqlstate:
        return f"{type(exc).__name__} (SQLSTATE {sqlstate})"
    return type(exc).__name__


def full_jitter_backoff_s(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    random: Callable[[], float] = _random.random,
) -> float:
    """Delay before retry number ``attempt`` (1-based): uniform in [0, min(max, base * 2^(n-1))).

    ``random`` returns a float in [0, 1). The exponent is clamped so a long outage never
    overflows the float.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # 2 ** 62 is far beyond any sensible cap; clamping keeps the arithmetic finite.
    ceiling_s = min(max_s, base_s * 2.0 ** min(attempt - 1, 62))
    return random() * ceiling_s


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter: attempt n waits a uniformly random
    time in [0, min(max_s, base_s * 2**(n-1))]."""

    base_s: float = 0.2
    max_s: float = 10.0

    def delay_s(self, attempt: int) -> float:
        return full_jitter_backoff_s(max(attempt, 1), base_s=self.base_s, max_s=self.max_s)

    async def sleep(self, attempt: int) -> None:
        await asyncio.sleep(self.delay_s(attempt))
