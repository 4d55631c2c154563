"""Routing: the highest-priority enabled gateway that supports the kind and currency."""

from __future__ import annotations

from consumer_svc.processor import route
from payrail.internal.v1 import payment_ops_pb2 as ops
from payrail.payments.v1 import payments_pb2 as pb

# ListGateways answers in priority order; route() relies on that.
REGISTRY = [
    ops.Gateway(
        gateway_id="soap", kinds=[pb.PAYMENT_KIND_DEPOSIT], currency_codes=["EUR"], priority=20
    ),
    ops.Gateway(
        gateway_id="json",
        kinds=[pb.PAYMENT_KIND_DEPOSIT, pb.PAYMENT_KIND_PURCHASE],
        currency_codes=["USD", "EUR"],
        priority=10,
    ),
]


def payment(kind: pb.PaymentKind, currency: str) -> pb.Payment:
    return pb.Payment(kind=kind, amount=pb.Money(currency_code=currency, amount_minor=1))


def test_highest_priority_supporting_gateway_wins() -> None:
    chosen = route(payment(pb.PAYMENT_KIND_DEPOSIT, "EUR"), REGISTRY)
    assert chosen is not None
    assert chosen.gateway_id == "soap"


def test_falls_through_to_a_gateway_that_supports_the_payment() -> None:
    for kind, currency in ((pb.PAYMENT_KIND_PURCHASE, "EUR"), (pb.PAYMENT_KIND_DEPOSIT, "USD")):
        chosen = route(payment(kind, currency), REGISTRY)
        assert chosen is not None
        assert chosen.gateway_id == "json"


def test_no_supporting_gateway_means_no_route() -> None:
    assert route(payment(pb.PAYMENT_KIND_WITHDRAWAL, "USD"), REGISTRY) is None
    assert route(payment(pb.PAYMENT_KIND_DEPOSIT, "JPY"), REGISTRY) is None
    assert route(payment(pb.PAYMENT_KIND_DEPOSIT, "USD"), []) is None
