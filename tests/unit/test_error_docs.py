"""docs/errors.md lists exactly the catalogues' reasons and failure codes, both ways,
with the same gRPC codes, retry answers, metadata keys, details and final statuses
(payrail_common.reasons, payrail_common.failure_codes)."""

from __future__ import annotations

import re

import pytest

from payrail_common import failure_codes, reasons
from payrail_common.reasons import CATALOGUE, Reason
from tests.conftest import ROOT

DOC = ROOT / "docs" / "errors.md"


def table(section: str) -> list[list[str]]:
    """The cells of the first table under the ``## section`` heading, header excluded."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/errors.md has no '## {section}' section"
    rows = [line for line in match.group(1).splitlines() if line.startswith("|")]
    assert len(rows) > 2, f"no table under '## {section}'"
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def ticked(cell: str) -> list[str]:
    """The `quoted` names of a cell, in order."""
    return re.findall(r"`([^`]+)`", cell)


def first_name(cell: str) -> str:
    names = ticked(cell)
    assert len(names) == 1, f"expected one `name` in {cell!r}"
    return names[0]


@pytest.fixture(scope="module")
def reason_rows() -> dict[str, list[str]]:
    rows = table("Reasons")
    named = {first_name(row[0]): row for row in rows}
    assert len(named) == len(rows), "a reason is listed twice"
    return named


@pytest.fixture(scope="module")
def failure_rows() -> dict[str, list[str]]:
    rows = table("Failure codes")
    named = {first_name(row[0]): row for row in rows}
    assert len(named) == len(rows), "a failure code is listed twice"
    return named


def test_the_reason_table_lists_exactly_the_catalogue(reason_rows: dict[str, list[str]]) -> None:
    documented = set(reason_rows)
    catalogued = {reason.value for reason in Reason}
    assert catalogued - documented == set(), "catalogued but not in docs/errors.md"
    assert documented - catalogued == set(), "in docs/errors.md but not catalogued"


def test_each_reason_row_agrees_with_the_catalogue(reason_rows: dict[str, list[str]]) -> None:
    for name, row in reason_rows.items():
        _, codes, meaning, sent_by, retry, metadata, details = row
        info = CATALOGUE[Reason(name)]
        assert ticked(codes) == list(info.codes), name
        assert meaning, name
        assert sent_by, name
        assert retry.split(",")[0].split(":")[0].strip() == ("yes" if info.retriable else "no"), (
            name
        )
        assert ticked(metadata) == list(info.metadata), name
        shown = {word for word in (reasons.BAD_REQUEST, reasons.RETRY_INFO) if word in details}
        assert shown == set(info.details), name


def test_the_failure_code_table_lists_exactly_the_catalogue(
    failure_rows: dict[str, list[str]],
) -> None:
    documented = set(failure_rows)
    catalogued = set(failure_codes.CATALOGUE)
    assert catalogued - documented == set(), "catalogued but not in docs/errors.md"
    assert documented - catalogued == set(), "in docs/errors.md but not catalogued"


def test_each_failure_code_row_agrees_with_the_catalogue(
    failure_rows: dict[str, list[str]],
) -> None:
    for code, row in failure_rows.items():
        _, status, meaning, set_by = row
        assert ticked(status) == [failure_codes.CATALOGUE[code].status], code
        assert meaning, code
        assert set_by, code


def test_the_readme_links_the_reference() -> None:
    assert "(docs/errors.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
