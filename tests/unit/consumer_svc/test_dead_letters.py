"""Dead letters as values: ids, DLQ headers, the safe summary, re-drive headers, choice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from consumer_svc.dlq.cli import main
from consumer_svc.dlq.letters import (
    DeadLetter,
    LetterId,
    Redrive,
    as_dict,
    as_line,
    choose,
    redrive_headers,
    source_topic,
    summary,
)
from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2 as pb

PAYMENT_ID = str(uuid.uuid4())
EVENT_ID = str(uuid.uuid4())


def created_event() -> bytes:
    payment = pb.Payment(
        payment_id=PAYMENT_ID,
        card=pb.CardSummary(masked_number="424242******4242", exp_month=12, exp_year=2031),
        amount=pb.Money(currency_code="USD", amount_minor=1234),
    )
    return events_pb2.PaymentEvent(
        event_id=EVENT_ID,
        payment_id=PAYMENT_ID,
        version=1,
        created=events_pb2.PaymentCreated(payment=payment, card_fingerprint="f" * 64),
    ).SerializeToString()


def letter(offset: int = 7, error: bytes = b"payment_svc answered NOT_FOUND") -> DeadLetter:
    return DeadLetter(
        id=LetterId("payments.events.dlq", 0, offset),
        timestamp_ms=1_790_000_000_000,
        key=PAYMENT_ID.encode(),
        value=created_event(),
        headers=(
            ("event-type", b"payment.created"),
            ("event-id", EVENT_ID.encode()),
            ("error", error),
            ("source-offset", b"4711"),
            ("source-partition", b"3"),
        ),
    )


def test_ids_round_trip_and_bad_ones_are_refused() -> None:
    parsed = LetterId.parse("payments.events.dlq:0:42")
    assert parsed == LetterId("payments.events.dlq", 0, 42)
    assert str(parsed) == "payments.events.dlq:0:42"
    for bad in (
        "payments.events:0:1",
        "payments.events.dlq:0",
        "payments.events.dlq:a:1",
        ".dlq:0:1",
    ):
        with pytest.raises(ValueError, match="dead-letter"):
            LetterId.parse(bad)


def test_the_source_is_the_topic_minus_dlq() -> None:
    assert source_topic("payments.events.dlq") == "payments.events"
    assert source_topic("notifications.dlq") == "notifications"
    with pytest.raises(ValueError, match="not a dead-letter topic"):
        source_topic("payments.events")


def test_dlq_headers_are_read() -> None:
    item = letter()
    assert (item.error, item.source_partition, item.source_offset) == (
        "payment_svc answered NOT_FOUND",
        3,
        4711,
    )
    assert item.source_topic == "payments.events"
    bare = DeadLetter(LetterId("notifications.dlq", 0, 1), 0, None, b"x", ())
    assert (bare.error, bare.source_partition, bare.source_offset) == ("", None, None)


def test_the_summary_names_the_event_and_never_the_card() -> None:
    text = summary("payments.events", created_event())
    assert text == f"created payment={PAYMENT_ID} event={EVENT_ID} v1"
    line = as_line(letter(), None)
    for secret in ("4242", "f" * 64, "1234", "USD"):
        assert secret not in line.replace(PAYMENT_ID, "").replace(EVENT_ID, "")
    assert summary("payments.events", b"\xff\xff garbage") == "undecodable (10 bytes)"
    # A notification carries a one-time code: only its size is shown.
    assert summary("notifications", b"code 123456") == "11 bytes"


def test_a_redrive_keeps_the_original_headers_and_says_where_it_came_from() -> None:
    item = letter()
    again = DeadLetter(
        LetterId("payments.events.dlq", 0, 9),
        0,
        item.key,
        item.value,
        (*redrive_headers(item), ("error", b"again"), ("source-offset", b"5000")),
    )
    assert redrive_headers(item) == [
        ("event-type", b"payment.created"),
        ("event-id", EVENT_ID.encode()),
        ("redriven-from", b"payments.events.dlq:0:7"),
    ]
    # A letter that was re-driven and parked again points at its latest place only.
    assert redrive_headers(again)[-1] == ("redriven-from", b"payments.events.dlq:0:9")
    assert [k for k, _ in redrive_headers(again)].count("redriven-from") == 1


def test_all_chooses_matching_letters_not_yet_redriven() -> None:
    letters = [letter(1), letter(2, b"undecodable event: DecodeError"), letter(3)]
    done = {LetterId("payments.events.dlq", 0, 3): Redrive(datetime.now(UTC), 1, "")}
    choice = choose(letters, done, error_contains="not_found")
    assert [c.id.offset for c in choice.chosen] == [1]
    assert choice.refused == []
    assert [c.id.offset for c in choose(letters, done, again=True).chosen] == [1, 2, 3]


def test_ids_must_exist_and_a_redriven_one_needs_again() -> None:
    letters = [letter(1), letter(3)]
    done = {LetterId("payments.events.dlq", 0, 3): Redrive(datetime.now(UTC), 1, "oops")}
    ids = [LetterId("payments.events.dlq", 0, n) for n in (1, 2, 3)]
    choice = choose(letters, done, ids=ids)
    assert [c.id.offset for c in choice.chosen] == [1]
    assert [i for i, _ in choice.refused] == ["payments.events.dlq:0:2", "payments.events.dlq:0:3"]
    assert "--again" in choice.refused[1][1]
    assert [c.id.offset for c in choose(letters, done, ids=ids[2:], again=True).chosen] == [3]


def test_json_form_says_whether_and_when_it_was_redriven() -> None:
    when = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    item = as_dict(letter(), Redrive(when, 2, "payment_svc was down"))
    assert item["id"] == "payments.events.dlq:0:7"
    assert item["redriven"] == {
        "time": "2026-12-01T10:00:00+00:00",
        "count": 2,
        "reason": "payment_svc was down",
    }
    assert as_dict(letter(), None)["redriven"] is None


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["redrive"],
        ["redrive", "payments.events.dlq:0:1", "--all"],
        ["redrive", "payments.events.dlq:0:1", "--topic", "payments.events.dlq"],
        ["redrive", "nonsense"],
        ["list", "--topic", "payments.events"],
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2, argv
    assert "not a dead-letter" in capsys.readouterr().err
