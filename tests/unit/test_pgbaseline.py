"""The pgbench baseline runs the CreatePayment transaction payment_svc runs today: the
adapter's own statement on the scratch schema, in the same round trips."""

from __future__ import annotations

import re

from bench.pgbaseline import SCHEMA, script
from payment_svc.adapters.postgres import _CREATE_PAYMENT


def statements(text: str) -> list[str]:
    """The script's commands: each ends with ";" or pgbench's "\\gset" at a line end."""
    return [s.strip() for s in re.split(r"(?<=;)\n|(?<=\\gset)\n", text) if s.strip()]


def test_one_round_trip_per_statement_as_the_adapter_sends_them() -> None:
    found = statements(script(400))
    assert found[0] == "BEGIN;"
    assert found[1].startswith(f"INSERT INTO {SCHEMA}.idempotency_keys")
    assert found[1].endswith("\\gset")
    assert found[2].startswith("WITH payment AS (INSERT INTO")
    assert found[3] == "COMMIT;"
    assert len(found) == 4


def test_the_create_statement_is_the_adapters_with_values() -> None:
    create = statements(script(400))[2]
    assert not re.search(r"\$\d", create), "every parameter has a value"
    assert "payments.payments" not in create
    assert f"{SCHEMA}.payments" in create
    # Every table the service's statement writes is written here, in the same order.
    written = re.findall(r"(?:INSERT INTO|UPDATE) payments\.(\w+)", _CREATE_PAYMENT)
    assert written == re.findall(rf"(?:INSERT INTO|UPDATE) {SCHEMA}\.(\w+)", create)
    assert {"payments", "cards", "holds", "ledger_accounts", "outbox"} <= set(written)
    assert "ARRAY['payments.events']" in create  # the topic, not a table
    assert "repeat('ab', 400)" in create
