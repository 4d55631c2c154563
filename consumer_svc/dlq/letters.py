"""Dead letters as values: their id, what the DLQ headers say, a safe summary, what a
re-drive sends, and which letters a command chooses. Pure: no I/O.

:class:`consumer_svc.consuming.ConsumerLoop` parks a record that fails for good on
``<topic>.dlq`` with its original key, value and headers plus ``error``,
``source-offset`` and ``source-partition``. A re-drive sends the same key and value to
``<topic>`` with the original headers and ``redriven-from: <letter id>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from payrail.events.v1 import events_pb2
from payrail.payments.v1 import payments_pb2 as pb

DLQ_SUFFIX = ".dlq"
# Headers the dead-lettering added; a re-drive drops them (and an earlier redriven-from).
DLQ_HEADERS = frozenset({"error", "source-offset", "source-partition"})
REDRIVEN_FROM = "redriven-from"
# Topics whose values are payrail.events.v1.PaymentEvent messages.
PAYMENT_EVENT_TOPICS = frozenset({"payments.events", "payments.status"})


def source_topic(dlq_topic: str) -> str:
    """The topic a dead letter came from: the DLQ topic's name minus ``.dlq``."""
    if not dlq_topic.endswith(DLQ_SUFFIX) or len(dlq_topic) == len(DLQ_SUFFIX):
        raise ValueError(f"{dlq_topic!r} is not a dead-letter topic (<topic>{DLQ_SUFFIX})")
    return dlq_topic[: -len(DLQ_SUFFIX)]


@dataclass(frozen=True, order=True)
class LetterId:
    """Where a dead letter is: ``<dlq-topic>:<partition>:<offset>``."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> LetterId:
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise ValueError(f"{text!r} is not a dead-letter id (<dlq-topic>:<partition>:<offset>)")
        source_topic(parts[0])
        return cls(parts[0], int(parts[1]), int(parts[2]))


@dataclass(frozen=True)
class Redrive:
    """A recorded re-drive of one letter (consumer.dead_letter_redrives)."""

    time: datetime
    count: int
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    id: LetterId
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str:
        """The last value of header ``name`` (decoded), or "" when absent."""
        found = [value for key, value in self.headers if key == name]
        return found[-1].decode("utf-8", "replace") if found else ""

    @property
    def source_topic(self) -> str:
        return source_topic(self.id.topic)

    @property
    def error(self) -> str:
        return self.header("error")

    @property
    def source_partition(self) -> int | None:
        value = self.header("source-partition")
        return int(value) if value.isdigit() else None

    @property
    def source_offset(self) -> int | None:
        value = self.header("source-offset")
        return int(value) if value.isdigit() else None

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


def redrive_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The original headers, without the DLQ's, plus ``redriven-from: <id>``."""
    kept = [(k, v) for k, v in letter.headers if k not in DLQ_HEADERS and k != REDRIVEN_FROM]
    return [*kept, (REDRIVEN_FROM, str(letter.id).encode())]


def show_key(key: bytes | None) -> str:
    """The key as text when it is printable UTF-8 (payment and user ids), else hex."""
    if key is None:
        return "-"
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + key.hex()
    return text if text.isprintable() else "0x" + key.hex()


def summary(topic: str, value: bytes) -> str:
    """A short description of the value: for payment events the kind, payment and event
    ids and version (never the card, the merchant or the amount); otherwise its size."""
    if topic not in PAYMENT_EVENT_TOPICS:
        return f"{len(value)} bytes"
    try:
        event = events_pb2.PaymentEvent.FromString(value)
    except Exception:
        return f"undecodable ({len(value)} bytes)"
    kind = event.WhichOneof("kind") or "unknown"
    text = (
        f"{kind} payment={event.payment_id or '-'} event={event.event_id or '-'} v{event.version}"
    )
    if kind == "status_changed":
        text += f" -> {pb.PaymentStatus.Name(event.status_changed.payment.status)}"
    return text


def matches(letter: DeadLetter, *, error_contains: str | None) -> bool:
    return error_contains is None or error_contains.lower() in letter.error.lower()


@dataclass(frozen=True)
class Choice:
    """What a redrive command will send, and why it refuses the rest."""

    chosen: list[DeadLetter]
    # (id as given, reason) for each requested id that will not be re-driven.
    refused: list[tuple[str, str]]


def choose(
    letters: Iterable[DeadLetter],
    redrives: Mapping[LetterId, Redrive],
    *,
    ids: Sequence[LetterId] = (),
    error_contains: str | None = None,
    again: bool = False,
) -> Choice:
    """The letters a redrive sends: the given ``ids`` (every one must exist), or, when
    none is given, every letter matching ``error_contains``. A letter re-driven before is
    refused unless ``again``."""
    by_id = {letter.id: letter for letter in letters}
    chosen: list[DeadLetter] = []
    refused: list[tuple[str, str]] = []
    if ids:
        candidates = []
        for letter_id in dict.fromkeys(ids):
            letter = by_id.get(letter_id)
            if letter is None:
                refused.append((str(letter_id), "no such dead letter"))
            else:
                candidates.append(letter)
    else:
        candidates = [
            letter
            for letter in sorted(by_id.values(), key=lambda item: item.id)
            if matches(letter, error_contains=error_contains)
        ]
    for letter in candidates:
        done = redrives.get(letter.id)
        if done is not None and not again:
            if ids:
                refused.append(
                    (
                        str(letter.id),
                        f"already re-driven at {done.time.isoformat(timespec='seconds')}"
                        " (add --again to send it once more)",
                    )
                )
            continue
        chosen.append(letter)
    return Choice(chosen, refused)


def as_dict(letter: DeadLetter, redrive: Redrive | None) -> dict[str, Any]:
    """The machine-readable form of one letter (``list --json``)."""
    return {
        "id": str(letter.id),
        "time": letter.time.isoformat(timespec="milliseconds"),
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "error": letter.error,
        "key": show_key(letter.key),
        "summary": summary(letter.source_topic, letter.value),
        "redriven": None
        if redrive is None
        else {
            "time": redrive.time.isoformat(timespec="seconds"),
            "count": redrive.count,
            "reason": redrive.reason,
        },
    }


def as_line(letter: DeadLetter, redrive: Redrive | None) -> str:
    """One line for people (``list``)."""
    item = as_dict(letter, redrive)
    source = f"{item['source_topic']}:{item['source_partition']}:{item['source_offset']}"
    state = (
        "not re-driven"
        if redrive is None
        else f"re-driven {redrive.time.isoformat(timespec='seconds')}"
        + (f" x{redrive.count}" if redrive.count > 1 else "")
        + (f" ({redrive.reason})" if redrive.reason else "")
    )
    return (
        f"{item['id']}  {letter.time.isoformat(timespec='seconds')}  from {source}"
        f"  error={json.dumps(item['error'])}  key={item['key']}  {item['summary']}  [{state}]"
    )
