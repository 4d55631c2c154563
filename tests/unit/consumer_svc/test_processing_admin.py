"""Dead letters as operators see them: the same summary as the CLI, never the value."""

from __future__ import annotations

from datetime import UTC, datetime

from consumer_svc.dlq.letters import DeadLetter, LetterId, Redrive
from consumer_svc.insights.admin import letter_to_pb


def letter() -> DeadLetter:
    return DeadLetter(
        id=LetterId("payments.events.dlq", 0, 7),
        timestamp_ms=1_795_306_000_000,
        key=b"5b0f3c1e-0000-4000-8000-000000000001",
        value=b"\x0a\x03abc4242424242424242",
        headers=(("error", b"payment_svc answered UNAVAILABLE"), ("source-offset", b"265")),
    )


def test_a_letter_never_shows_its_value() -> None:
    shown = letter_to_pb(letter(), None)
    assert shown.letter_id == "payments.events.dlq:0:7"
    assert shown.source_topic == "payments.events"
    assert shown.error == "payment_svc answered UNAVAILABLE"
    assert shown.key == "5b0f3c1e-0000-4000-8000-000000000001"
    assert "4242" not in shown.summary
    assert shown.redrive_count == 0
    assert not shown.HasField("redrive_time")


def test_a_redriven_letter_says_when_and_why() -> None:
    done = Redrive(datetime(2026, 11, 29, 10, 0, tzinfo=UTC), 2, "payment_svc is back")
    shown = letter_to_pb(letter(), done)
    assert (shown.redrive_count, shown.redrive_reason) == (2, "payment_svc is back")
    assert shown.redrive_time.ToDatetime(tzinfo=UTC) == done.time
