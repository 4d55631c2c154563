"""Enum numbers the contract does not define are refused by field name, never read as
"unspecified" (proto3 enums are open: any int32 arrives intact on the wire)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import TypeVar

import pytest
from google.protobuf.message import Message

from consumer_svc.insights.api import benefit_from_pb
from consumer_svc.insights.domain import InvalidArgument
from payment_svc.domain.cards import CardInput, Secret
from payment_svc.domain.errors import ValidationFailed
from payment_svc.domain.money import CURRENCIES, AmountLimits, Money
from payment_svc.domain.status import FundingSource, PaymentKind, PaymentStatus
from payment_svc.domain.validation import (
    CreatePaymentCommand,
    Merchant,
    unrecognized_value,
    validate_create_payment,
)
from payment_svc.proto_mapping import command_from_pb, list_filters_from_pb
from payrail.insights.v1 import insights_pb2 as ipb
from payrail.payments.v1 import payments_pb2 as pb

M = TypeVar("M", bound=Message)
TODAY = datetime.date(2031, 5, 15)
OUT_OF_RANGE = [99, -5, 2**31 - 1, -(2**31)]


def with_numbers(message: M, **numbers: int) -> M:
    """The message with enum fields set to raw numbers (the stubs type them narrowly)."""
    for name, number in numbers.items():
        setattr(message, name, number)
    return message


def purchase(**changes: object) -> CreatePaymentCommand:
    base = CreatePaymentCommand(
        user_id="user-1",
        idempotency_key="key-1",
        kind=PaymentKind.PURCHASE,
        amount=Money("USD", 1000),
        card=CardInput(Secret("4242424242424242"), 12, 2033, Secret("123"), "Jane Roe"),
        merchant=Merchant("m-100", "Blue Bottle", "5814", "KR", "Seoul", 37.5, 126.9),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def violations(cmd: CreatePaymentCommand) -> dict[str, str]:
    found = validate_create_payment(cmd, today=TODAY, currencies=CURRENCIES, limits=AmountLimits())
    return {v.field: v.description for v in found}


def test_an_unrecognized_funding_source_is_refused_by_name() -> None:
    found = violations(purchase(unrecognized=frozenset({"funding_source"})))
    assert found == {"funding_source": "is not a known value; use one of CARD or WALLET"}


def test_an_unrecognized_funding_source_is_refused_for_a_deposit_too() -> None:
    cmd = purchase(
        kind=PaymentKind.DEPOSIT, merchant=None, unrecognized=frozenset({"funding_source"})
    )
    assert set(violations(cmd)) == {"funding_source"}


def test_an_unrecognized_kind_is_named_as_unknown_not_as_missing() -> None:
    found = violations(purchase(kind=None, unrecognized=frozenset({"kind"})))
    assert found["kind"] == "is not a known value; use one of DEPOSIT, WITHDRAWAL or PURCHASE"


def test_the_status_filter_names_every_status() -> None:
    description = unrecognized_value("status").description
    assert all(status.value in description for status in PaymentStatus)


@pytest.mark.parametrize("number", OUT_OF_RANGE)
def test_create_payment_mapping_marks_out_of_range_numbers(number: int) -> None:
    request = pb.CreatePaymentRequest(idempotency_key="k", kind=pb.PAYMENT_KIND_PURCHASE)
    cmd = command_from_pb("user-1", with_numbers(request, funding_source=number))
    assert (cmd.kind, cmd.funding_source, cmd.unrecognized) == (
        PaymentKind.PURCHASE,
        None,
        frozenset({"funding_source"}),
    )
    request = with_numbers(pb.CreatePaymentRequest(idempotency_key="k"), kind=number)
    assert command_from_pb("user-1", request).unrecognized == frozenset({"kind"})


def test_create_payment_mapping_keeps_known_and_unspecified_values() -> None:
    request = pb.CreatePaymentRequest(
        idempotency_key="k", kind=pb.PAYMENT_KIND_PURCHASE, funding_source=pb.FUNDING_SOURCE_WALLET
    )
    cmd = command_from_pb("user-1", request)
    assert (cmd.funding_source, cmd.unrecognized) == (FundingSource.WALLET, frozenset())
    assert command_from_pb("user-1", pb.CreatePaymentRequest()).unrecognized == frozenset()


@pytest.mark.parametrize("number", OUT_OF_RANGE)
def test_list_filters_refuse_out_of_range_numbers_by_name(number: int) -> None:
    for request, expected in (
        (with_numbers(pb.ListPaymentsRequest(), status=number), {"status"}),
        (with_numbers(pb.ListPaymentsRequest(), kind=number), {"kind"}),
        (with_numbers(pb.ListPaymentsRequest(), status=number, kind=number), {"status", "kind"}),
    ):
        with pytest.raises(ValidationFailed) as info:
            list_filters_from_pb(request)
        assert {v.field for v in info.value.violations} == expected


def test_list_filters_map_known_and_unspecified_values() -> None:
    assert list_filters_from_pb(pb.ListPaymentsRequest()) == (None, None)
    request = pb.ListPaymentsRequest(
        status=pb.PAYMENT_STATUS_COMPLETED, kind=pb.PAYMENT_KIND_WITHDRAWAL
    )
    assert list_filters_from_pb(request) == (PaymentStatus.COMPLETED, PaymentKind.WITHDRAWAL)


@pytest.mark.parametrize("number", OUT_OF_RANGE)
def test_insights_refuses_out_of_range_benefit_enums_by_name(number: int) -> None:
    def good() -> ipb.Benefit:
        return ipb.Benefit(
            brand=pb.CARD_BRAND_VISA,
            category_code="5812",
            reward_kind=ipb.REWARD_KIND_CASHBACK,
            rate_bps=300,
        )

    for field, message in (
        ("brand", with_numbers(good(), brand=number)),
        ("reward_kind", with_numbers(good(), reward_kind=number)),
    ):
        with pytest.raises(InvalidArgument) as info:
            benefit_from_pb(message)
        assert [v.field for v in info.value.violations] == [f"benefit.{field}"]
