"""How values are shown: times as ISO UTC (the script localizes), cards masked, labels."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from console_svc.config import Settings
from console_svc.presenting import card_label, iso_time, kind_label, status_label, utc_text
from payrail.payments.v1 import payments_pb2 as pb


def test_times() -> None:
    ts = Timestamp()
    ts.FromDatetime(dt.datetime(2026, 11, 29, 10, 35, 33, tzinfo=dt.UTC))
    assert iso_time(ts) == "2026-11-29T10:35:33Z"
    assert utc_text(ts) == "2026-11-29 10:35:33 UTC"
    assert iso_time(Timestamp()) == ""


def test_labels() -> None:
    assert status_label(pb.PAYMENT_STATUS_REQUIRES_VERIFICATION) == "Needs your verification"
    assert kind_label(pb.PAYMENT_KIND_DEPOSIT) == "Deposit"
    assert status_label(99) == "Unknown"


def test_a_card_shows_only_what_the_platform_masked() -> None:
    card = pb.CardSummary(brand=pb.CARD_BRAND_VISA, masked_number="424242******4242")
    assert card_label(card) == "Visa 424242******4242"
    assert card_label(pb.CardSummary()) == ""


def test_settings_from_env() -> None:
    s = Settings.from_env(
        {"PAYRAIL_CONSOLE_HTTP_PORT": "8081", "PAYRAIL_CONSOLE_COOKIE_SECURE": "1"}
    )
    assert (s.http_port, s.cookie_secure, s.port) == (8081, True, 50055)
