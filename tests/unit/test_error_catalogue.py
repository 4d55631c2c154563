"""The catalogues a client programs against (payrail_common.reasons, .failure_codes) are
complete and well-formed."""

from __future__ import annotations

import re

import grpc

from payment_svc.domain.status import TERMINAL
from payrail_common import failure_codes, reasons
from payrail_common.reasons import CATALOGUE, Reason

CODE_NAMES = {code.name for code in grpc.StatusCode}


def test_every_reason_has_exactly_one_entry() -> None:
    assert set(CATALOGUE) == set(Reason)
    for reason in Reason:
        assert reason.value == reason.name  # sent as is: the name is the contract
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", reason.value), reason


def test_every_entry_is_well_formed() -> None:
    for reason, info in CATALOGUE.items():
        assert info.codes, reason
        assert set(info.codes) <= CODE_NAMES - {"OK"}, reason
        assert info.meaning.strip(), reason
        assert set(info.details) <= {reasons.BAD_REQUEST, reasons.RETRY_INFO}, reason
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key) for key in info.metadata), reason


def test_capacity_and_outage_reasons_say_when_to_retry() -> None:
    """Every retriable reason carries RetryInfo, and only those do."""
    for reason, info in CATALOGUE.items():
        assert info.retriable == (reasons.RETRY_INFO in info.details), reason


def test_every_failure_code_is_well_formed() -> None:
    final = {status.value for status in TERMINAL} - {"COMPLETED"}
    assert failure_codes.CATALOGUE
    for code, info in failure_codes.CATALOGUE.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code), code
        assert info.status in final, code
        assert info.meaning.strip(), code
        assert info.set_by.strip(), code
