from __future__ import annotations

import itertools

import pytest

from payment_svc.domain.errors import DomainError, InvalidTransition
from payment_svc.domain.status import (
    INITIAL_VERSION,
    TERMINAL,
    FundingSource,
    PaymentKind,
    PaymentStatus,
    can_transition,
    is_terminal,
    next_version,
)
from payrail.payments.v1 import payments_pb2

S = PaymentStatus

ALLOWED = {
    (S.PENDING, S.REQUIRES_VERIFICATION),
    (S.PENDING, S.PROCESSING),
    (S.PENDING, S.CANCELED),
    (S.PENDING, S.DENIED),
    (S.PENDING, S.EXPIRED),
    # Nothing can process it (no gateway route): it ends before dispatch.
    (S.PENDING, S.FAILED),
    (S.REQUIRES_VERIFICATION, S.PROCESSING),
    (S.REQUIRES_VERIFICATION, S.CANCELED),
    (S.REQUIRES_VERIFICATION, S.DENIED),
    (S.REQUIRES_VERIFICATION, S.EXPIRED),
    (S.PROCESSING, S.COMPLETED),
    (S.PROCESSING, S.FAILED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_exactly_the_documented_transitions_are_allowed(
    current: PaymentStatus, target: PaymentStatus
) -> None:
    assert can_transition(current, target) is ((current, target) in ALLOWED)


def test_terminal_statuses() -> None:
    assert {S.COMPLETED, S.FAILED, S.DENIED, S.CANCELED, S.EXPIRED} == TERMINAL
    for status in S:
        assert is_terminal(status) is (status in TERMINAL)
        if is_terminal(status):
            assert not any(can_transition(status, target) for target in S)


def test_every_change_bumps_the_version() -> None:
    version = INITIAL_VERSION
    for current, target in [
        (S.PENDING, S.REQUIRES_VERIFICATION),
        (S.REQUIRES_VERIFICATION, S.PROCESSING),
        (S.PROCESSING, S.COMPLETED),
    ]:
        version = next_version(current, target, version)
    assert version == INITIAL_VERSION + 3


def test_a_refused_transition_names_both_statuses_and_has_a_reason() -> None:
    with pytest.raises(InvalidTransition) as caught:
        next_version(S.COMPLETED, S.FAILED, 7)
    assert isinstance(caught.value, DomainError)
    assert caught.value.reason == "PAYMENT_STATUS_CONFLICT"
    assert (caught.value.current, caught.value.target) == ("COMPLETED", "FAILED")
    with pytest.raises(InvalidTransition):
        next_version(S.PROCESSING, S.CANCELED, 3)  # already at a gateway


@pytest.mark.parametrize("version", [0, -1, 2**63 - 1])
def test_version_out_of_range_is_a_bug(version: int) -> None:
    with pytest.raises(ValueError, match="version"):
        next_version(S.PENDING, S.PROCESSING, version)


@pytest.mark.parametrize(
    ("domain_enum", "proto_names", "prefix"),
    [
        (PaymentStatus, payments_pb2.PaymentStatus.keys(), "PAYMENT_STATUS_"),
        (PaymentKind, payments_pb2.PaymentKind.keys(), "PAYMENT_KIND_"),
        (FundingSource, payments_pb2.FundingSource.keys(), "FUNDING_SOURCE_"),
    ],
)
def test_values_mirror_the_protobuf_names(
    domain_enum: type[PaymentStatus | PaymentKind | FundingSource],
    proto_names: list[str],
    prefix: str,
) -> None:
    expected = {name.removeprefix(prefix) for name in proto_names}
    expected.discard("UNSPECIFIED")  # the zero value maps to None in the domain
    assert {member.value for member in domain_enum} == expected
