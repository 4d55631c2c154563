"""Bearer-token authentication as a server interceptor.

The interceptor reads ``authorization: Bearer <jwt>``, verifies it with the service's
:class:`KeyRing` (algorithm allow-list, kid, signature, iss/aud/exp), optionally asks a
session check whether the token's session is still live (gateway_svc: Redis, so Logout
revokes at once), optionally requires the edge's assertion for this call and token
(payment_svc, insights: see :mod:`payrail_common.edge_assertion`, so a revoked or stolen
token sent straight to an internal port is refused too), and binds the
:class:`Principal` to :data:`PRINCIPAL` for the servicer. Every refusal is
UNAUTHENTICATED with one generic message and one of three ErrorInfo reasons
(:func:`refusal_reason`): no token, a genuine token past its lifetime, or anything else;
the precise reason goes only to the log and the metrics.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from prometheus_client import Counter

from payrail_common.edge_assertion import EDGE_ASSERTION_KEY, EdgeAssertions
from payrail_common.interceptors import AroundInterceptor
from payrail_common.reasons import Reason
from payrail_common.rpcerrors import UNAVAILABLE_RETRY_S, abort
from payrail_common.tokens import KeyRing, Principal, TokenError, TokenPolicy, VerifiedTokens

log = logging.getLogger(__name__)

PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("payrail_principal")

AUTH_REFUSED = Counter(
    "payrail_auth_refused_total", "Requests refused by authentication, by reason.", ["reason"]
)

SessionCheck = Callable[[Principal], Awaitable[bool]]


def metadata_values(context: Any, key: str) -> list[str]:
    """Every text value of request metadata ``key``, in order."""
    return [
        value
        for name, value in context.invocation_metadata() or ()
        if name == key and isinstance(value, str)
    ]


def metadata_value(context: Any, key: str) -> str:
    """The last text value of request metadata ``key``, or "" when absent."""
    values = metadata_values(context, key)
    return values[-1] if values else ""


def bearer_token(context: Any) -> str:
    """The token of ``authorization: Bearer <token>``, or "" when absent or malformed."""
    for value in metadata_values(context, "authorization"):
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer":
            return token.strip()
    return ""


def refusal_reason(token_error: TokenError) -> Reason:
    """What a client hears of a refused token. Only the absence of a token and a genuine
    token past its ``exp`` (which anyone holding it can read) are told apart; a forged,
    malformed, revoked or unasserted token is one reason, so a caller learns nothing
    about a token it could not read itself."""
    if token_error.reason == "missing":
        return Reason.ACCESS_TOKEN_MISSING
    if token_error.reason == "expired":
        return Reason.ACCESS_TOKEN_EXPIRED
    return Reason.ACCESS_TOKEN_INVALID


def current_principal() -> Principal:
    """The caller of the RPC being served; only valid inside an authenticated RPC."""
    return PRINCIPAL.get()


class Authenticator:
    """Verifies the caller of each protected RPC and binds it to :data:`PRINCIPAL`."""

    def __init__(
        self,
        ring: KeyRing,
        policy: TokenPolicy,
        session_check: SessionCheck | None = None,
        *,
        edge_assertions: EdgeAssertions | None = None,
    ) -> None:
        self._tokens = VerifiedTokens(ring, policy)
        self._session_check = session_check
        # Internal services: only calls the edge authenticated (and signed for) pass.
        self._edge_assertions = edge_assertions

    async def _principal(self, method: str, context: Any) -> Principal:
        try:
            token = bearer_token(context)
            principal = self._tokens.verify(token)
            if self._edge_assertions is not None:
                self._edge_assertions.verify(
                    method, token, metadata_value(context, EDGE_ASSERTION_KEY)
                )
            if self._session_check is not None and not await self._session_check(principal):
                raise TokenError("session_revoked")
        except TokenError as exc:
            AUTH_REFUSED.labels(exc.reason).inc()
            log.info("authentication refused", extra={"method": method, "reason": exc.reason})
            message = (
                "missing bearer token: send `authorization: Bearer <access_token>`"
                if exc.reason == "missing"
                else "invalid or expired access token"
            )
            await abort(
                context, grpc.StatusCode.UNAUTHENTICATED, message, reason=refusal_reason(exc)
            )
        except (ConnectionError, TimeoutError, OSError):
            # The session store is down: fail closed, but say it is temporary.
            log.warning("session check unavailable", extra={"method": method})
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "authentication is temporarily unavailable; retry with backoff",
                reason=Reason.DEPENDENCY_UNAVAILABLE,
                retry_after_s=UNAVAILABLE_RETRY_S,
            )
        return principal

    @asynccontextmanager
    async def around(self, method: str, context: Any) -> AsyncIterator[None]:
        principal = await self._principal(method, context)
        token = PRINCIPAL.set(principal)
        try:
            yield
        finally:
            PRINCIPAL.reset(token)

    def interceptor(self, methods: frozenset[str]) -> AroundInterceptor:
        """Authenticate exactly these full method paths (``/pkg.Service/Method``)."""
        return AroundInterceptor(self.around, methods)


def method_paths(service: Any, names: tuple[str, ...] | None = None) -> frozenset[str]:
    """Full paths of a service descriptor's methods (all, or only ``names``)."""
    return frozenset(
        f"/{service.full_name}/{m.name}"
        for m in service.methods
        if names is None or m.name in names
    )


# Metadata key carrying the shared service credential on internal calls.
SERVICE_TOKEN_KEY = "x-payrail-service-token"  # noqa: S105 - a header name


class ServiceTokenAuthenticator:
    """Internal RPCs (PaymentOpsService) accept only callers holding the service token.

    A shared 32-byte secret, distributed like the other keys, sent as metadata and
    compared in constant time. It keeps anything that merely reaches the internal port
    from dispatching, failing or sweeping payments.
    """

    def __init__(self, token: bytes) -> None:
        self._token = token.hex()

    @asynccontextmanager
    async def around(self, method: str, context: Any) -> AsyncIterator[None]:
        presented = metadata_value(context, SERVICE_TOKEN_KEY)
        if not hmac.compare_digest(presented.encode(), self._token.encode()):
            AUTH_REFUSED.labels("service_token").inc()
            log.warning("internal call refused", extra={"method": method})
            await abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "service credentials required",
                reason=Reason.SERVICE_TOKEN_INVALID,
            )
        yield

    def interceptor(self, methods: frozenset[str]) -> AroundInterceptor:
        return AroundInterceptor(self.around, methods)


def service_token_metadata(token: bytes) -> tuple[tuple[str, str], ...]:
    """Call metadata presenting the service token (see ServiceTokenAuthenticator)."""
    return ((SERVICE_TOKEN_KEY, token.hex()),)


class ServiceTokenClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the service token to every unary call made on a channel."""

    def __init__(self, token: bytes) -> None:
        self._metadata = service_token_metadata(token)

    async def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        metadata = tuple(client_call_details.metadata or ()) + self._metadata
        details = grpc.aio.ClientCallDetails(
            method=client_call_details.method,
            timeout=client_call_details.timeout,
            metadata=grpc.aio.Metadata(*metadata),
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
        )
        return await continuation(details, request)
