"""Response headers and request checks every console page gets.

* A strict Content-Security-Policy: scripts, styles, images and connections from the
  console's own origin only, no inline script or style, no framing, forms post only back
  to the console. The pages are built for it (no inline handlers, one static script).
* CSRF: a state-changing request (anything but GET/HEAD/OPTIONS) needs a live session
  cookie and the CSRF token bound to it (form field ``csrf_token`` or header
  ``X-CSRF-Token``); a cross-site ``Origin`` or ``Sec-Fetch-Site`` is refused before that.
  The cookie is SameSite=Strict as well, so a cross-site form never even carries it.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CSP", "SAFE_METHODS", "SECURITY_HEADERS", "csrf_refusal"]

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # "same-origin", not "no-referrer": with no-referrer browsers send `Origin: null` on
    # form posts, and the CSRF check needs the real origin.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_refusal(
    *,
    method: str,
    host: str,
    scheme: str,
    origin: str,
    fetch_site: str,
    has_session: bool,
    token_ok: bool,
) -> str:
    """Why a request must be refused as a possible forgery, or "" when it may proceed."""
    if method in SAFE_METHODS:
        return ""
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return "cross-site request"
    if origin and origin != f"{scheme}://{host}":
        return "cross-origin request"
    if not has_session:
        return "no session cookie"
    if not token_ok:
        return "missing or wrong CSRF token"
    return ""
