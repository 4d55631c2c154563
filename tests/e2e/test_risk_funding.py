"""Risk under the development defaults, with real processes: a withdrawal is paid out
only to a card that funded the wallet (issue 12, point 6), and the README's test card
works for several people at once (point 8)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from payrail.payments.v1 import payments_pb2 as pb
from tests.conftest import StackEnv
from tests.e2e.conftest import Running
from tests.e2e.test_processing import FINAL, assert_ledger_invariants, balance, submit
from tests.e2e.test_risk import NEW_YORK, SEOUL, deposit, fresh_card, purchase, wait_for
from tests.helpers import register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

README_CARD = "4242424242424242"


@pytest.fixture(scope="module")
def service_env() -> dict[str, str]:
    return {}  # the development defaults, as `make up` runs them


@pytest_asyncio.fixture(loop_scope="session")
async def edge(services: list[Running]) -> AsyncIterator[grpc.aio.Channel]:
    gateway = next(s for s in services if s.name == "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


def withdrawal(card: str, amount: int) -> pb.CreatePaymentRequest:
    return pb.CreatePaymentRequest(
        idempotency_key=str(uuid.uuid4()),
        kind=pb.PAYMENT_KIND_WITHDRAWAL,
        amount=pb.Money(currency_code="USD", amount_minor=amount),
        card=pb.CardInput(number=card, exp_month=12, exp_year=2031, cvc="123"),
    )


async def test_cash_out_goes_only_to_a_card_that_funded_the_wallet(
    edge: grpc.aio.Channel, stack: StackEnv
) -> None:
    user = await register_and_login(edge)
    card_a, card_b = fresh_card(), fresh_card()
    funded = await wait_for(edge, user, await submit(edge, user, deposit(card_a, 5000)), FINAL)
    assert funded.status == pb.PAYMENT_STATUS_COMPLETED, funded
    # Deposit 50.00 with card A, withdraw 40.00 to a never-seen card B: refused, said why,
    # and the hold released.
    cash_out = await submit(edge, user, withdrawal(card_b, 4000))
    denied = await wait_for(edge, user, cash_out, FINAL)
    assert (denied.status, denied.failure_code) == (pb.PAYMENT_STATUS_DENIED, "withdrawal_card")
    assert denied.failure_message == (
        "withdrawal_card: withdrawals are paid out only to a card that has funded this"
        " wallet, and no deposit with this card has completed for this user (withdraw to a"
        " card you deposited with)"
    )
    assert await balance(edge, user) == (5000, 0)
    # To card A, which funded it, the same withdrawal completes.
    paid = await wait_for(edge, user, await submit(edge, user, withdrawal(card_a, 4000)), FINAL)
    assert paid.status == pb.PAYMENT_STATUS_COMPLETED, paid
    assert await balance(edge, user) == (1000, 0)
    await assert_ledger_invariants(stack.pg_dsn)


async def test_a_card_whose_deposit_failed_funded_nothing(edge: grpc.aio.Channel) -> None:
    user = await register_and_login(edge)
    good = await wait_for(edge, user, await submit(edge, user, deposit(fresh_card(), 3000)), FINAL)
    assert good.status == pb.PAYMENT_STATUS_COMPLETED, good
    declined_card = "4000000000000002"
    failed = await wait_for(edge, user, await submit(edge, user, deposit(declined_card)), FINAL)
    assert (failed.status, failed.failure_code) == (pb.PAYMENT_STATUS_FAILED, "card_declined")
    refused = await wait_for(
        edge, user, await submit(edge, user, withdrawal(declined_card, 1000)), FINAL
    )
    assert (refused.status, refused.failure_code) == (pb.PAYMENT_STATUS_DENIED, "withdrawal_card")


async def test_the_readme_card_works_for_several_people_at_once(edge: grpc.aio.Channel) -> None:
    """Three people follow the walkthrough at the same time with 4242 4242 4242 4242 (a
    deposit, then a purchase; one in Seoul, one in New York): more uses of the card than
    velocity_max_per_card allows one person, from opposite sides of the world, and none
    is refused or held: under the development defaults a card is judged per user."""
    users = [await register_and_login(edge) for _ in range(3)]

    async def walkthrough(index: int) -> list[pb.Payment]:
        user = users[index]
        request = deposit(README_CARD)
        done = [await wait_for(edge, user, await submit(edge, user, request), FINAL)]
        place = SEOUL if index % 2 == 0 else NEW_YORK
        buy = purchase(README_CARD, place)
        done.append(await wait_for(edge, user, await submit(edge, user, buy), FINAL))
        return done

    finals = [p for done in await asyncio.gather(*map(walkthrough, range(3))) for p in done]
    assert [(p.status, p.failure_code) for p in finals] == [
        (pb.PAYMENT_STATUS_COMPLETED, "")
    ] * 6, finals


async def test_a_withdrawal_waits_for_the_outcome_of_a_deposit_with_its_card(
    edge: grpc.aio.Channel,
) -> None:
    """A withdrawal to a card whose deposit is still under way is neither paid out nor
    refused until that deposit ends: here the gateway never answers the deposit, the
    janitor fails it with gateway_timeout, and only then is the withdrawal refused."""
    user = await register_and_login(edge)
    funded = await wait_for(
        edge, user, await submit(edge, user, deposit(fresh_card(), 3000)), FINAL
    )
    assert funded.status == pb.PAYMENT_STATUS_COMPLETED, funded
    silent_card = "4000000000000119"
    pending_deposit = await submit(edge, user, deposit(silent_card))
    await wait_for(edge, user, pending_deposit, {pb.PAYMENT_STATUS_PROCESSING})
    waiting = await submit(edge, user, withdrawal(silent_card, 1000))
    await asyncio.sleep(2)
    held = await wait_for(edge, user, waiting, set(), timeout_s=0)
    assert held.status == pb.PAYMENT_STATUS_PENDING, held
    failed = await wait_for(edge, user, pending_deposit, FINAL, timeout_s=60)
    assert (failed.status, failed.failure_code) == (pb.PAYMENT_STATUS_FAILED, "gateway_timeout")
    refused = await wait_for(edge, user, waiting, FINAL, timeout_s=60)
    assert (refused.status, refused.failure_code) == (pb.PAYMENT_STATUS_DENIED, "withdrawal_card")
    assert await balance(edge, user) == (3000, 0)
