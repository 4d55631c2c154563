"""Whether a step passes: the rules of the searches, as pure functions of a phase summary.

Two searches use them. The CreatePayment searches (with the pipeline running, the echo
baseline, CreatePayment alone) judge the RPC only: p99 within the limit, at most 0.1%
errors, at least 95% of the offered rate answered OK. The settled-throughput search judges
the whole platform (issue 15): a step passes only if nothing was shed or failed, every
accepted payment reached COMPLETED within the settle timeout, CreatePayment's p99 is
within its limit and so is accepted->COMPLETED's.
"""

from __future__ import annotations

import math
from typing import Any

# Issue 15's bounds for settled throughput.
SETTLED_CREATE_P99_MS = 50.0
SETTLED_E2E_P99_MS = 1000.0
# The settled rate counts once it has been sustained this long (the 5 minutes).
SETTLED_CONFIRM_S = 300.0


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def step_passes(summary: dict[str, Any], limit_ms: float) -> tuple[bool, str]:
    """A CreatePayment step: p99 within the limit, <= 0.1% errors, >= 95% answered OK."""
    p99 = _num(summary["latency"]["p99_ms"])
    if summary["error_ratio"] > 0.001:
        return False, f"errors {summary['error_ratio']:.2%} {summary['codes']}"
    if math.isnan(p99) or p99 > limit_ms:
        return False, f"p99 {p99:.1f} ms > {limit_ms:g} ms"
    if summary["achieved_rate"] < 0.95 * summary["offered_rate"]:
        return False, f"achieved {summary['achieved_rate']:.0f}/s < 95% of offered"
    return True, f"p99 {p99:.1f} ms"


def settled_passes(
    summary: dict[str, Any],
    *,
    create_p99_ms: float = SETTLED_CREATE_P99_MS,
    e2e_p99_ms: float = SETTLED_E2E_P99_MS,
) -> tuple[bool, str]:
    """A settled-throughput step. Every reason it fails is named, not only the first.

    Reads the phase summary's ``codes`` (every answer of the measured window),
    ``latency.p99_ms`` (CreatePayment), ``e2e_measured.p99_ms`` (accepted->COMPLETED of
    the payments accepted after the warm-up), ``e2e_accepted`` / ``e2e_completed`` /
    ``e2e_failed`` / ``e2e_outstanding`` (every payment of the phase, warm-up included,
    after the settle timeout) and the offered and achieved rates.
    """
    reasons: list[str] = []
    errors = {code: n for code, n in summary["codes"].items() if code != "OK" and n}
    if errors:
        shed = errors.get("RESOURCE_EXHAUSTED", 0)
        reasons.append(
            (f"{shed} shed, " if shed else "")
            + "errors "
            + ", ".join(f"{code} {n}" for code, n in sorted(errors.items()))
        )
    accepted = int(_num(summary.get("e2e_accepted", 0)) or 0)
    completed = int(_num(summary.get("e2e_completed", 0)) or 0)
    failed = int(_num(summary.get("e2e_failed", 0)) or 0)
    outstanding = int(_num(summary.get("e2e_outstanding", 0)) or 0)
    if failed:
        reasons.append(f"{failed} of {accepted} accepted ended otherwise than COMPLETED")
    if outstanding:
        reasons.append(f"{outstanding} of {accepted} accepted not final after the settle timeout")
    if accepted and completed < accepted and not (failed or outstanding):
        reasons.append(f"only {completed} of {accepted} accepted seen COMPLETED")
    p99 = _num(summary["latency"]["p99_ms"])
    if math.isnan(p99) or p99 > create_p99_ms:
        reasons.append(f"CreatePayment p99 {p99:.1f} ms > {create_p99_ms:g} ms")
    e2e = _num((summary.get("e2e_measured") or {}).get("p99_ms"))
    if math.isnan(e2e):
        reasons.append("no payment seen COMPLETED")
    elif e2e > e2e_p99_ms:
        reasons.append(f"accepted->COMPLETED p99 {e2e:.0f} ms > {e2e_p99_ms:g} ms")
    if summary["achieved_rate"] < 0.95 * summary["offered_rate"]:
        reasons.append(f"achieved {summary['achieved_rate']:.0f}/s < 95% of offered")
    if reasons:
        return False, "; ".join(reasons)
    return True, (
        f"CreatePayment p99 {p99:.1f} ms, accepted->COMPLETED p99 {e2e:.0f} ms, "
        f"{completed} of {accepted} COMPLETED"
    )


def next_rate(rate: float, factor: float) -> float:
    """The next step up: ``rate * factor``, rounded, and always at least one more."""
    return float(max(rate + 1, round(rate * factor)))
