"""Every domain error of every service, every authentication refusal and every outage
maps to a catalogued ErrorInfo reason (payrail_common.reasons) in the payrail.dev domain,
with one of the reason's codes, its metadata keys and details, and a message that names
nothing internal. A new domain error without a case here fails the hierarchy tests."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

from consumer_svc.insights import api as insights_api
from consumer_svc.insights import domain as insights
from gateway_svc.api import errors as gateway_api
from gateway_svc.domain import errors as gateway
from payment_svc.api import errors as payment_api
from payment_svc.domain import errors as payment
from payrail_common.authn import (
    SERVICE_TOKEN_KEY,
    Authenticator,
    ServiceTokenAuthenticator,
    refusal_reason,
)
from payrail_common.edge_assertion import EDGE_ASSERTION_KEY, EdgeAssertions
from payrail_common.fields import FieldViolation
from payrail_common.reasons import Reason
from payrail_common.tokens import (
    KeyRing,
    TokenError,
    TokenPolicy,
    generate_key_files,
    issue_access_token,
    load_private_key,
)
from tests.rich_errors import RichError, assert_catalogued, from_status

SECRET = "secret-detail-4111111111111111"


class Aborted(Exception):
    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status


class FakeContext:
    """Just enough of a grpc.aio servicer context for the error paths."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def abort_with_status(self, status: grpc.Status) -> None:
        for key, value in status.trailing_metadata:
            if key == "grpc-status-details-bin":
                decoded = status_pb2.Status.FromString(value)
                assert decoded.code == status.code.value[0]
                assert decoded.message == status.details
                raise Aborted(decoded)
        raise AssertionError("a status without google.rpc details")

    async def abort(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a plain abort: no ErrorInfo")


async def sent(call: Callable[[FakeContext], Any], context: FakeContext | None = None) -> RichError:
    with pytest.raises(Aborted) as caught:
        await call(context or FakeContext())
    return from_status(caught.value.status)


def subclasses(root: type[Exception]) -> set[type[Exception]]:
    found = {root}
    for child in root.__subclasses__():
        found |= subclasses(child)
    return found


VIOLATION = [FieldViolation("card.number", "fails the Luhn check")]

Cases = Mapping[type[Exception], Sequence[Exception]]
Mapper = Callable[[Any, Any], Awaitable[None]]

PAYMENT_ERRORS: Cases = {
    payment.DomainError: [payment.DomainError(SECRET)],
    payment.ValidationFailed: [payment.ValidationFailed(VIOLATION)],
    payment.InvalidTransition: [payment.InvalidTransition("PROCESSING", "CANCELED")],
    payment.InsufficientFunds: [payment.InsufficientFunds("USD")],
    payment.IdempotencyKeyReused: [payment.IdempotencyKeyReused()],
    payment.NotFound: [payment.NotFound("payment")],
    payment.DecryptionFailed: [payment.DecryptionFailed(SECRET)],
    payment.CallbackRejected: [payment.CallbackRejected(SECRET)],
    payment.ResultConflict: [payment.ResultConflict("COMPLETED")],
    payment.VerificationCodeInvalid: [payment.VerificationCodeInvalid(3)],
    payment.VerificationClosed: [
        payment.VerificationClosed("not_awaiting", "COMPLETED"),
        payment.VerificationClosed("attempts_exhausted", "DENIED"),
        payment.VerificationClosed("expired", "DENIED"),
    ],
    payment.ProcessingBacklog: [payment.ProcessingBacklog(1000, 1000, 2.0)],
}

GATEWAY_ERRORS: Cases = {
    gateway.AuthError: [gateway.AuthError(SECRET)],
    gateway.InvalidRegistration: [gateway.InvalidRegistration(VIOLATION)],
    gateway.EmailTaken: [gateway.EmailTaken(SECRET)],
    gateway.InvalidCredentials: [gateway.InvalidCredentials()],
    gateway.Throttled: [gateway.Throttled(30.0)],
    gateway.Unauthenticated: [gateway.Unauthenticated("user_missing")],
    gateway.RefreshTokenRefused: [gateway.RefreshTokenRefused("refresh_reused")],
}

INSIGHTS_ERRORS: Cases = {
    insights.InsightsError: [insights.InsightsError(SECRET)],
    insights.InvalidArgument: [insights.InvalidArgument(VIOLATION)],
    insights.NotFound: [insights.NotFound("no benefit for this brand and category")],
    insights.PermissionDenied: [insights.PermissionDenied("admin role required")],
}

# (domain error root, its cases, the service's mapper)
SERVICES: dict[str, tuple[type[Exception], Cases, Mapper]] = {
    "payment_svc": (payment.DomainError, PAYMENT_ERRORS, payment_api.abort_for),
    "gateway_svc": (gateway.AuthError, GATEWAY_ERRORS, gateway_api.abort_for),
    "insights": (insights.InsightsError, INSIGHTS_ERRORS, insights_api.abort_for),
}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_domain_error_has_a_case_here(service: str) -> None:
    root, cases, _ = SERVICES[service]
    assert subclasses(root) == set(cases)


def _cases() -> list[tuple[str, Exception]]:
    return [
        (service, error)
        for service, (_, cases, _) in sorted(SERVICES.items())
        for errors in cases.values()
        for error in errors
    ]


@pytest.mark.parametrize(
    ("service", "error"), _cases(), ids=lambda v: v if isinstance(v, str) else type(v).__name__
)
@pytest.mark.asyncio
async def test_every_domain_error_maps_to_its_catalogued_reason(
    service: str, error: Exception
) -> None:
    mapper = SERVICES[service][2]
    answer = await sent(lambda context: mapper(context, error))
    # The reason the error declares is the one the client hears.
    assert_catalogued(answer, error.reason)  # type: ignore[attr-defined]
    assert SECRET not in answer.message


@pytest.mark.asyncio
async def test_specific_reasons_clients_use() -> None:
    """The reasons clients already program against keep their names and details."""

    async def reason_of(error: payment.DomainError) -> RichError:
        return await sent(lambda context: payment_api.abort_for(context, error))

    invalid = await reason_of(payment.ValidationFailed(VIOLATION))
    assert (invalid.code, invalid.reason) == ("INVALID_ARGUMENT", "VALIDATION_FAILED")
    assert invalid.violations == {"card.number": "fails the Luhn check"}
    funds = await reason_of(payment.InsufficientFunds("EUR"))
    assert (funds.reason, funds.metadata) == ("INSUFFICIENT_FUNDS", {"currency_code": "EUR"})
    code = await reason_of(payment.VerificationCodeInvalid(2))
    assert (code.reason, code.metadata) == (
        "VERIFICATION_CODE_INVALID",
        {"attempts_remaining": "2"},
    )
    closed = {
        outcome: (await reason_of(payment.VerificationClosed(outcome, "DENIED"))).reason
        for outcome in ("not_awaiting", "attempts_exhausted", "expired")
    }
    assert closed == {
        "not_awaiting": "PAYMENT_NOT_AWAITING_VERIFICATION",
        "attempts_exhausted": "VERIFICATION_ATTEMPTS_EXHAUSTED",
        "expired": "VERIFICATION_EXPIRED",
    }
    backlog = await reason_of(payment.ProcessingBacklog(7, 5, 2.5))
    assert (backlog.reason, backlog.retry_delay_s) == ("PROCESSING_BACKLOG", 2.5)
    conflict = await reason_of(payment.InvalidTransition("PROCESSING", "CANCELED"))
    assert (conflict.reason, conflict.metadata) == (
        "PAYMENT_STATUS_CONFLICT",
        {"status": "PROCESSING"},
    )


@pytest.mark.asyncio
async def test_validation_is_one_reason_in_every_service() -> None:
    """The issue's example: payments, registration and insights said it three ways."""
    errors = [
        await sent(lambda c: payment_api.abort_for(c, payment.ValidationFailed(VIOLATION))),
        await sent(lambda c: gateway_api.abort_for(c, gateway.InvalidRegistration(VIOLATION))),
        await sent(lambda c: insights_api.abort_for(c, insights.InvalidArgument(VIOLATION))),
    ]
    for error in errors:
        assert_catalogued(error, Reason.VALIDATION_FAILED)
        assert error.violations == {"card.number": "fails the Luhn check"}


@pytest.mark.asyncio
async def test_throttling_says_when_to_retry() -> None:
    error = await sent(lambda c: gateway_api.abort_for(c, gateway.Throttled(42.0)))
    assert_catalogued(error, Reason.TOO_MANY_ATTEMPTS)
    assert error.retry_delay_s == 42.0


@pytest.mark.asyncio
@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_an_outage_is_dependency_unavailable_with_retry_info(service: str) -> None:
    boundary = {
        "payment_svc": payment_api.mapped_errors,
        "gateway_svc": gateway_api.mapped_errors,
        "insights": insights_api.mapped_errors,
    }[service]

    async def call(context: FakeContext) -> None:
        async with boundary(context):
            raise ConnectionRefusedError(SECRET)

    error = await sent(call)
    assert_catalogued(error, Reason.DEPENDENCY_UNAVAILABLE)
    assert error.code == "UNAVAILABLE"
    assert error.retry_delay_s is not None
    assert error.retry_delay_s > 0
    assert SECRET not in error.message


# ---------------------------------------------------------------- authentication


def test_token_refusals_say_missing_expired_or_invalid_and_nothing_finer() -> None:
    every_reason = [
        "missing",
        "malformed",
        "algorithm_not_allowed",
        "unknown_kid",
        "expired",
        "bad_signature",
        "bad_claims",
        "session_revoked",
        "edge_assertion_missing",
        "edge_assertion_malformed",
        "edge_assertion_stale",
        "edge_assertion_bad_mac",
    ]
    told = {name: refusal_reason(TokenError(name)) for name in every_reason}
    assert told.pop("missing") is Reason.ACCESS_TOKEN_MISSING
    assert told.pop("expired") is Reason.ACCESS_TOKEN_EXPIRED
    assert set(told.values()) == {Reason.ACCESS_TOKEN_INVALID}


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    private_path, _ = generate_key_files(tmp_path, "k1")
    return KeyRing(verifying={}, signing={"k1": load_private_key(private_path)}, active_kid="k1")


def _token(ring: KeyRing, now: datetime | None = None) -> str:
    value, _ = issue_access_token(
        ring, TokenPolicy(), user_id="u-1", role="customer", session_id="s-1", now=now
    )
    return value


def _bearer(token: str, *extra: tuple[str, str]) -> FakeContext:
    return FakeContext((("authorization", f"Bearer {token}"), *extra))


async def _refusal(authenticator: Authenticator, context: FakeContext) -> RichError:
    async def call(ctx: FakeContext) -> None:
        async with authenticator.around("/payrail.payments.v1.PaymentService/GetBalance", ctx):
            raise AssertionError("admitted")

    return await sent(call, context)


@pytest.mark.asyncio
async def test_the_authenticator_refuses_with_a_reason(ring: KeyRing) -> None:
    async def live(_: object) -> bool:
        return True

    async def revoked(_: object) -> bool:
        return False

    async def down(_: object) -> bool:
        raise ConnectionError(SECRET)

    edge = Authenticator(ring, TokenPolicy(), live)
    missing = await _refusal(edge, FakeContext())
    assert_catalogued(missing, Reason.ACCESS_TOKEN_MISSING)
    expired = await _refusal(edge, _bearer(_token(ring, datetime.now(UTC) - timedelta(hours=1))))
    assert_catalogued(expired, Reason.ACCESS_TOKEN_EXPIRED)
    assert_catalogued(await _refusal(edge, _bearer("not.a.jwt")), Reason.ACCESS_TOKEN_INVALID)
    # A revoked session and a forgery sound the same: nothing is learned about the token.
    logged_out = await _refusal(Authenticator(ring, TokenPolicy(), revoked), _bearer(_token(ring)))
    assert_catalogued(logged_out, Reason.ACCESS_TOKEN_INVALID)
    assert logged_out.message == expired.message
    outage = await _refusal(Authenticator(ring, TokenPolicy(), down), _bearer(_token(ring)))
    assert_catalogued(outage, Reason.DEPENDENCY_UNAVAILABLE)
    assert SECRET not in outage.message


@pytest.mark.asyncio
async def test_an_internal_port_refuses_a_token_without_the_edges_assertion(
    ring: KeyRing,
) -> None:
    internal = Authenticator(
        ring, TokenPolicy(), edge_assertions=EdgeAssertions([secrets.token_bytes(32)])
    )
    token = _token(ring)
    bare = await _refusal(internal, _bearer(token))
    assert_catalogued(bare, Reason.ACCESS_TOKEN_INVALID)
    forged = EdgeAssertions([secrets.token_bytes(32)]).sign("/x", token)
    wrong = await _refusal(internal, _bearer(token, (EDGE_ASSERTION_KEY, forged)))
    assert_catalogued(wrong, Reason.ACCESS_TOKEN_INVALID)


@pytest.mark.asyncio
async def test_an_internal_call_without_the_service_token_has_a_reason() -> None:
    guard = ServiceTokenAuthenticator(secrets.token_bytes(32))

    async def call(context: FakeContext) -> None:
        async with guard.around("/payrail.internal.v1.PaymentOpsService/Sweep", context):
            raise AssertionError("admitted")

    for context in (FakeContext(), FakeContext(((SERVICE_TOKEN_KEY, "00" * 32),))):
        assert_catalogued(await sent(call, context), Reason.SERVICE_TOKEN_INVALID)
