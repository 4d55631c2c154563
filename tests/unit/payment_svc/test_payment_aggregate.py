"""The Payment aggregate: every transition's rule, its events, and its idempotency."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from payment_svc.domain.errors import InvalidTransition, NotFound, ResultConflict
from payment_svc.domain.ledger import (
    AccountRole,
    HoldAction,
    JournalEntry,
    Posting,
    settlement_for,
)
from payment_svc.domain.money import Money
from payment_svc.domain.payment import (
    CardView,
    ChallengeReissued,
    Created,
    Dispatched,
    Payment,
    StatusChanged,
    VerificationRequired,
    Verified,
)
from payment_svc.domain.status import FundingSource, PaymentKind, PaymentStatus

S = PaymentStatus
T0 = datetime(2030, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(seconds=5)


def payment(
    kind: PaymentKind = PaymentKind.DEPOSIT,
    status: PaymentStatus = S.PENDING,
    funding: FundingSource | None = None,
    **fields: object,
) -> Payment:
    base = Payment(
        payment_id="3f1c2a9e-0000-4000-8000-000000000001",
        user_id="3f1c2a9e-0000-4000-8000-0000000000aa",
        kind=kind,
        status=status,
        funding_source=funding,
        amount=Money("USD", 1500),
        description="",
        card=CardView(None, "424242******4242", 12, 2030),
        merchant=None,
        failure_code="",
        failure_message="",
        version=1,
        create_time=T0,
        update_time=T0,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def processing(**fields: object) -> Payment:
    dispatched = {"status": S.PROCESSING, "gateway_id": "gw-a", "attempt": 1, "version": 2}
    return payment(**{**dispatched, **fields})  # type: ignore[arg-type]


def test_dispatch_moves_an_approved_payment_to_processing_at_attempt_one() -> None:
    change = payment().begin_dispatch("gw-a", LATER)
    assert change is not None
    assert change.payment.status is S.PROCESSING
    assert (change.payment.gateway_id, change.payment.attempt) == ("gw-a", 1)
    assert change.payment.version == 2
    assert change.payment.update_time == LATER
    assert change.events == (StatusChanged(S.PENDING), Dispatched("gw-a", 1))


def test_a_verified_payment_may_be_dispatched_an_unverified_one_may_not() -> None:
    held = payment(status=S.REQUIRES_VERIFICATION, version=2)
    assert held.begin_dispatch("gw-a", LATER) is None
    change = replace(held, verified=True).begin_dispatch("gw-a", LATER)
    assert change is not None
    assert change.payment.status is S.PROCESSING


def test_a_redelivered_dispatch_changes_nothing_and_another_gateway_gets_nothing() -> None:
    current = processing()
    again = current.begin_dispatch("gw-a", LATER)
    assert again is not None
    assert again.payment == current
    assert not again.changed
    assert current.begin_dispatch("gw-b", LATER) is None
    for final in (S.DENIED, S.CANCELED, S.EXPIRED, S.COMPLETED, S.FAILED):
        assert payment(status=final).begin_dispatch("gw-a", LATER) is None


def test_redispatch_counts_attempts_without_a_new_version() -> None:
    change = processing().redispatch(LATER)
    assert change.payment.attempt == 2
    assert change.payment.version == 2
    assert change.payment.status is S.PROCESSING
    assert change.events == (Dispatched("gw-a", 2),)
    with pytest.raises(InvalidTransition):
        payment().redispatch(LATER)


def test_time_out_fails_with_gateway_timeout() -> None:
    change = processing().time_out(LATER)
    assert change.payment.status is S.FAILED
    assert change.payment.failure_code == "gateway_timeout"
    assert change.events == (StatusChanged(S.PROCESSING),)


def test_gateway_results_complete_or_fail_and_keep_the_reference() -> None:
    approved = processing().apply_result(
        "gw-a",
        approved=True,
        failure_code="ignored",
        failure_message="ignored",
        gateway_reference="ref-1",
        now=LATER,
    )
    assert approved.payment.status is S.COMPLETED
    assert approved.payment.failure_code == ""
    assert approved.payment.gateway_reference == "ref-1"
    declined = processing().apply_result(
        "gw-a",
        approved=False,
        failure_code="",
        failure_message="no",
        gateway_reference="ref-2",
        now=LATER,
    )
    assert declined.payment.status is S.FAILED
    assert declined.payment.failure_code == "declined"  # a decline without a code


def test_results_are_idempotent_and_conflicts_are_refused() -> None:
    done = processing(status=S.COMPLETED, version=3)
    same = done.apply_result(
        "gw-a", approved=True, failure_code="", failure_message="", gateway_reference="", now=LATER
    )
    assert not same.changed
    assert same.payment == done
    with pytest.raises(ResultConflict):
        done.apply_result(
            "gw-a",
            approved=False,
            failure_code="card_declined",
            failure_message="",
            gateway_reference="",
            now=LATER,
        )
    with pytest.raises(ResultConflict):  # not dispatched yet
        payment(gateway_id="gw-a").apply_result(
            "gw-a",
            approved=True,
            failure_code="",
            failure_message="",
            gateway_reference="",
            now=LATER,
        )
    with pytest.raises(NotFound):  # another gateway's payment
        processing().apply_result(
            "gw-b",
            approved=True,
            failure_code="",
            failure_message="",
            gateway_reference="",
            now=LATER,
        )


def test_risk_review_holds_a_pending_payment_and_reissues_on_redelivery() -> None:
    change = payment().require_verification("impossible_travel: far", LATER)
    assert change.payment.status is S.REQUIRES_VERIFICATION
    assert change.payment.verification_reason == "impossible_travel: far"
    assert change.events == (
        StatusChanged(S.PENDING),
        VerificationRequired("impossible_travel: far"),
    )
    again = change.payment.require_verification("impossible_travel: far", LATER)
    assert again.events == (ChallengeReissued(),)
    assert again.payment == change.payment
    assert not processing().require_verification("x", LATER).changed


def test_verify_then_dispatch_and_denials_at_verification() -> None:
    held = payment(status=S.REQUIRES_VERIFICATION, version=2)
    verified = held.verify(LATER)
    assert verified.payment.verified
    assert verified.payment.status is S.REQUIRES_VERIFICATION
    assert verified.payment.version == 3
    assert verified.events == (Verified(),)
    with pytest.raises(InvalidTransition):
        verified.payment.verify(LATER)
    denied = held.deny_at_verification("declined_by_owner", "declined", LATER)
    assert denied.payment.status is S.DENIED
    assert denied.payment.failure_code == "declined_by_owner"
    with pytest.raises(InvalidTransition):
        payment().deny_at_verification("declined_by_owner", "", LATER)


def test_risk_deny_applies_only_while_pending() -> None:
    denied = payment().deny("velocity", "too many", LATER)
    assert denied.payment.status is S.DENIED
    assert denied.payment.failure_code == "velocity"
    assert not processing().deny("velocity", "", LATER).changed


def test_fail_applies_where_the_state_machine_allows() -> None:
    assert payment().fail("no_route", "none", LATER).payment.status is S.FAILED
    assert processing().fail("card_unavailable", "", LATER).payment.status is S.FAILED
    completed = processing(status=S.COMPLETED)
    assert completed.fail("no_route", "", LATER).payment == completed


def test_cancel_only_before_dispatch() -> None:
    canceled = payment().cancel(LATER)
    assert canceled.payment.status is S.CANCELED
    assert canceled.payment.failure_code == "canceled_by_user"
    with pytest.raises(InvalidTransition):
        processing().cancel(LATER)


def test_expiry_denies_an_unanswered_challenge_and_expires_the_rest() -> None:
    unanswered = payment(status=S.REQUIRES_VERIFICATION, version=2).expire(LATER)
    assert unanswered.payment.status is S.DENIED
    assert unanswered.payment.failure_code == "verification_expired"
    verified = payment(status=S.REQUIRES_VERIFICATION, verified=True, version=3).expire(LATER)
    assert verified.payment.status is S.EXPIRED
    pending = payment().expire(LATER)
    assert pending.payment.status is S.EXPIRED
    assert pending.payment.failure_code == "expired"
    assert "PENDING" in pending.payment.failure_message


# ---------------------------------------------------------------- posting rules


def test_posting_rules_for_each_completed_kind() -> None:
    deposit = settlement_for(processing(status=S.COMPLETED))
    assert deposit.hold is HoldAction.NONE
    assert deposit.entry is not None
    assert [(p.role, p.amount_minor) for p in deposit.entry.postings] == [
        (AccountRole.EXTERNAL, -1500),
        (AccountRole.WALLET, 1500),
    ]
    withdrawal = settlement_for(
        replace(processing(status=S.COMPLETED), kind=PaymentKind.WITHDRAWAL)
    )
    assert withdrawal.hold is HoldAction.POST
    assert withdrawal.entry is not None
    assert [(p.role, p.amount_minor) for p in withdrawal.entry.postings] == [
        (AccountRole.WALLET, -1500),
        (AccountRole.EXTERNAL, 1500),
    ]
    wallet_purchase = settlement_for(
        replace(
            processing(status=S.COMPLETED),
            kind=PaymentKind.PURCHASE,
            funding_source=FundingSource.WALLET,
        )
    )
    assert wallet_purchase.hold is HoldAction.POST
    assert wallet_purchase.entry is not None
    assert {p.role for p in wallet_purchase.entry.postings} == {
        AccountRole.WALLET,
        AccountRole.MERCHANTS,
    }
    card_purchase = settlement_for(
        replace(
            processing(status=S.COMPLETED),
            kind=PaymentKind.PURCHASE,
            funding_source=FundingSource.CARD,
        )
    )
    assert card_purchase.hold is HoldAction.NONE
    assert card_purchase.entry is not None
    assert [(p.role, p.amount_minor) for p in card_purchase.entry.postings] == [
        (AccountRole.EXTERNAL, -1500),
        (AccountRole.MERCHANTS, 1500),
    ]


@pytest.mark.parametrize("final", [S.FAILED, S.DENIED, S.CANCELED, S.EXPIRED])
def test_a_payment_that_ends_otherwise_releases_what_it_held_and_posts_nothing(
    final: PaymentStatus,
) -> None:
    withdrawal = settlement_for(payment(PaymentKind.WITHDRAWAL, final))
    assert withdrawal.hold is HoldAction.RELEASE
    assert withdrawal.entry is None
    deposit = settlement_for(payment(PaymentKind.DEPOSIT, final))
    assert deposit.hold is HoldAction.NONE
    assert deposit.entry is None


def test_nothing_is_posted_before_a_payment_is_final() -> None:
    for status in (S.PENDING, S.REQUIRES_VERIFICATION, S.PROCESSING):
        settlement = settlement_for(payment(PaymentKind.WITHDRAWAL, status))
        assert settlement.hold is HoldAction.NONE
        assert settlement.entry is None


def test_an_unbalanced_or_repeated_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="sum to zero"):
        JournalEntry("x", "USD", (Posting(AccountRole.WALLET, 1), Posting(AccountRole.EXTERNAL, 2)))
    with pytest.raises(ValueError, match="at most once"):
        JournalEntry("x", "USD", (Posting(AccountRole.WALLET, 1), Posting(AccountRole.WALLET, -1)))
    with pytest.raises(ValueError, match="moves money"):
        JournalEntry("x", "USD", (Posting(AccountRole.WALLET, 0),))


def test_a_new_payment_is_pending_at_version_one() -> None:
    change = Payment.create(
        payment_id="p",
        user_id="u",
        kind=PaymentKind.PURCHASE,
        funding_source=FundingSource.WALLET,
        amount=Money("EUR", 250),
        description="tea",
        card=None,
        merchant=None,
        now=T0,
    )
    assert change.events == (Created(),)
    created = change.payment
    assert (created.status, created.version) == (S.PENDING, 1)
    assert created.create_time == created.update_time == T0
    assert (created.gateway_id, created.attempt, created.verified) == ("", 0, False)
    assert created.holds_wallet_funds
