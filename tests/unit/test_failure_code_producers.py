"""Every failure_code the code can set is in the catalogue (payrail_common.failure_codes),
and every catalogued code is set somewhere: the risk rules that deny, the sandbox
gateways' declines, the gateway SDK's, and the literals payment_svc and consumer_svc
write (found in their source, so a new literal without a catalogue entry fails here)."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

from consumer_svc.risk.rules import (
    Decision,
    Funding,
    History,
    PaymentFacts,
    RiskPolicy,
    assess,
)
from payment_svc.domain import verification
from payrail_common import failure_codes
from payrail_common.failure_codes import CATALOGUE
from sandbox_gateways.gateway import DECLINES
from tests.conftest import ROOT

PRODUCERS = ("payment_svc", "consumer_svc", "sandbox_gateways", "gateway_sdk")
CODE_SHAPE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
# Calls whose arguments after the payment id are (failure_code, failure_message, ...).
FAILING_CALLS = {"fail", "_fail", "deny", "_deny"}


# The catalogue's constants by name (failure_codes.GATEWAY_TIMEOUT = "gateway_timeout"):
# code that names a constant instead of writing the literal sets that code too.
NAMED_CODES = {
    name: value
    for name, value in vars(failure_codes).items()
    if name.isupper() and isinstance(value, str) and value in CATALOGUE
}


def _strings(node: ast.AST) -> set[str]:
    """Code-shaped string constants of an expression (and the catalogue's constants it
    names), not looking into look-ups (``row["failure_code"]``,
    ``document.get("failure_code")``): those read a code."""
    if isinstance(node, ast.Constant):
        text = node.value
        return {text} if isinstance(text, str) and CODE_SHAPE.fullmatch(text) else set()
    if isinstance(node, ast.Name) and node.id in NAMED_CODES:
        return {NAMED_CODES[node.id]}
    if isinstance(node, ast.Subscript | ast.Call):
        return set()
    return set().union(*(_strings(child) for child in ast.iter_child_nodes(node)))


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def literal_codes(path: Path) -> set[str]:
    """Code-shaped string literals that flow into a failure code in one module:
    ``failure_code=<expr>`` keywords, the arguments of fail/deny calls, and assignments
    to a name ``code`` (``target, code = EXPIRED, "expired"``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.keyword) and node.arg == "failure_code":
            found |= _strings(node.value)
        elif isinstance(node, ast.Call) and _call_name(node) in FAILING_CALLS:
            found |= set().union(*(_strings(arg) for arg in node.args))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for name, value in zip(names, values, strict=False):
                    if isinstance(name, ast.Name) and name.id == "code":
                        found |= _strings(value)
    return found


def source_literals() -> dict[str, set[str]]:
    return {
        str(path.relative_to(ROOT)): codes
        for package in PRODUCERS
        for path in sorted((ROOT / package).rglob("*.py"))
        if (codes := literal_codes(path))
    }


def risk_denials() -> set[str]:
    """The failure codes of every denying rule, by running the rules."""
    at = datetime(2030, 1, 1, tzinfo=UTC)
    policy = RiskPolicy()
    card = PaymentFacts("p", "u", "fp", 100, "USD", at, kind="PURCHASE")
    withdrawal = PaymentFacts("p", "u", "fp", 100, "USD", at, kind="WITHDRAWAL")
    denied = [
        assess(card, History(recent_card_payments=policy.velocity_max_per_card), policy),
        assess(card, History(recent_user_payments=policy.velocity_max_per_user), policy),
        assess(withdrawal, History(funding=Funding.NEVER), policy),
    ]
    assert all(a.decision is Decision.DENY for a in denied)
    return {a.rule for a in denied}


def sdk_codes() -> set[str]:
    return literal_codes(ROOT / "gateway_sdk" / "runtime.py")


def test_the_source_sets_only_catalogued_codes() -> None:
    found = source_literals()
    assert found, "the scan found no failure codes at all: it is broken"
    unknown = {path: codes - set(CATALOGUE) for path, codes in found.items()}
    assert {path: codes for path, codes in unknown.items() if codes} == {}


def test_denying_risk_rules_use_catalogued_codes() -> None:
    assert risk_denials() <= set(CATALOGUE)
    assert risk_denials() == {"velocity", "withdrawal_card"}


def test_sandbox_and_sdk_declines_are_catalogued() -> None:
    assert {code for code, _ in DECLINES.values()} <= set(CATALOGUE)
    assert sdk_codes() == {"card_unreadable"} <= set(CATALOGUE)


def test_verification_denials_are_catalogued() -> None:
    denials = {
        verification.DENIED_WRONG_CODES,
        verification.DENIED_DECLINED,
        verification.DENIED_EXPIRED,
    }
    assert denials <= set(CATALOGUE)


def test_every_catalogued_code_is_set_somewhere() -> None:
    produced = (
        set().union(*source_literals().values())
        | risk_denials()
        | {code for code, _ in DECLINES.values()}
        | {
            verification.DENIED_WRONG_CODES,
            verification.DENIED_DECLINED,
            verification.DENIED_EXPIRED,
        }
    )
    assert set(CATALOGUE) - produced == set()
