"""CSRF refusals and the Content-Security-Policy."""

from __future__ import annotations

from console_svc.presenting import safe_next
from console_svc.security import CSP, csrf_refusal

OK = {
    "method": "POST",
    "host": "console.example:8080",
    "scheme": "https",
    "origin": "https://console.example:8080",
    "fetch_site": "same-origin",
    "has_session": True,
    "token_ok": True,
}


def test_a_same_origin_post_with_session_and_token_passes() -> None:
    assert csrf_refusal(**OK) == ""  # type: ignore[arg-type]


def test_reads_need_nothing() -> None:
    assert csrf_refusal(**{**OK, "method": "GET", "has_session": False, "token_ok": False}) == ""  # type: ignore[arg-type]


def test_refusals() -> None:
    cases = {
        "fetch_site": "cross-site",
        "origin": "https://evil.example",
        "has_session": False,
        "token_ok": False,
    }
    for key, value in cases.items():
        assert csrf_refusal(**{**OK, key: value}) != "", key  # type: ignore[arg-type]
    # Scheme matters: an http page cannot post to the https console.
    assert csrf_refusal(**{**OK, "origin": "http://console.example:8080"}) != ""  # type: ignore[arg-type]


def test_no_origin_header_still_needs_session_and_token() -> None:
    assert csrf_refusal(**{**OK, "origin": "", "fetch_site": ""}) == ""  # type: ignore[arg-type]
    assert csrf_refusal(**{**OK, "origin": "", "token_ok": False}) != ""  # type: ignore[arg-type]


def test_the_policy_allows_nothing_inline_or_foreign() -> None:
    assert "default-src 'none'" in CSP
    assert "unsafe-inline" not in CSP
    assert "unsafe-eval" not in CSP
    assert "frame-ancestors 'none'" in CSP
    assert "*" not in CSP


def test_redirect_targets_stay_on_the_console() -> None:
    assert safe_next("/payments?status=completed") == "/payments?status=completed"
    for evil in ("https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:x"):
        assert safe_next(evil) == "/dashboard"
