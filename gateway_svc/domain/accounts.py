"""Registration rules: e-mail, names and password policy.

The password policy follows NIST SP 800-63B: a minimum length (12), a generous maximum
(passphrases welcome), no composition rules, and a refusal of passwords that are common,
trivially patterned, or built from the user's own e-mail or name.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from payrail_common.fields import FieldViolation

PASSWORD_MIN_CHARS = 12
# Long passphrases are welcome; the bound only keeps hashing cost predictable.
PASSWORD_MAX_CHARS = 256
EMAIL_MAX_CHARS = 254
EMAIL_LOCAL_MAX_CHARS = 64
NAME_MAX_CHARS = 100

# Deliberately simple: one @, a dot-separated domain with a letter TLD, no spaces.
# Deliverability is the mail server's business, not a regex's.
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}$"
)
_COMMON_FILE = Path(__file__).with_name("common_passwords.txt")


@cache
def common_passwords() -> frozenset[str]:
    """The refused list, lower-cased (shipped with the package; one password per line)."""
    lines = _COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and line[0] != "#")


def normalize_email(email: str) -> str:
    """The canonical form used for uniqueness and look-ups: trimmed, lower case."""
    return email.strip().lower()


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def _is_trivial_pattern(password: str) -> bool:
    """One repeated character, or a short unit repeated (abcabcabcabc, 121212121212)."""
    folded = password.lower()
    for unit in range(1, len(folded) // 2 + 1):
        if len(folded) % unit == 0 and folded[:unit] * (len(folded) // unit) == folded:
            return True
    return False


def _is_sequence(password: str) -> bool:
    """Runs like 123456789012 or abcdefghijkl (ascending or descending by one)."""
    if password.isdigit():
        # Digits wrap around: 890123 is as much a run as 123456.
        steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(password)}
        return steps in ({1}, {9})
    codes = [ord(ch) for ch in password.lower()]
    steps = {b - a for a, b in itertools.pairwise(codes)}
    return steps in ({1}, {-1})


def password_problem(password: str, *, email: str = "", names: tuple[str, ...] = ()) -> str | None:
    """Why the password is refused, or None when it is acceptable."""
    length = len(password)
    if length < PASSWORD_MIN_CHARS:
        return f"must be at least {PASSWORD_MIN_CHARS} characters"
    if length > PASSWORD_MAX_CHARS:
        return f"must be at most {PASSWORD_MAX_CHARS} characters"
    folded = password.lower()
    if folded in common_passwords() or folded.strip() in common_passwords():
        return "is one of the most common passwords; choose another"
    if _is_trivial_pattern(password) or _is_sequence(password):
        return "is a simple pattern; choose something harder to guess"
    local = normalize_email(email).partition("@")[0]
    personal = [p.lower() for p in (normalize_email(email), local, *names) if len(p) >= 4]
    # Refused when what is left after removing the e-mail or a name is too short to matter.
    if any(p in folded and len(folded) - len(p) < 6 for p in personal):
        return "must not be based on your e-mail address or name"
    return None


@dataclass(frozen=True)
class Registration:
    email: str
    password: str
    first_name: str
    last_name: str


def _name_problem(name: str) -> str | None:
    stripped = name.strip()
    if not stripped:
        return "is required"
    if len(stripped) > NAME_MAX_CHARS:
        return f"must be at most {NAME_MAX_CHARS} characters"
    if _has_control_chars(stripped):
        return "must not contain control characters"
    return None


def _email_problem(email: str) -> str | None:
    stripped = email.strip()
    if not stripped:
        return "is required"
    if len(stripped) > EMAIL_MAX_CHARS:
        return f"must be at most {EMAIL_MAX_CHARS} characters"
    if not _EMAIL_RE.match(stripped) or len(stripped.partition("@")[0]) > EMAIL_LOCAL_MAX_CHARS:
        return "is not a valid e-mail address"
    return None


def validate_registration(reg: Registration) -> list[FieldViolation]:
    """Every problem with the registration, one violation per bad field."""
    violations: list[FieldViolation] = []
    for field, problem in (
        ("email", _email_problem(reg.email)),
        ("first_name", _name_problem(reg.first_name)),
        ("last_name", _name_problem(reg.last_name)),
        (
            "password",
            password_problem(
                reg.password, email=reg.email, names=(reg.first_name.strip(), reg.last_name.strip())
            ),
        ),
    ):
        if problem is not None:
            violations.append(FieldViolation(field, f"{field} {problem}"))
    return violations
