"""Loyalty's pure parts: tier thresholds, the standing they give, and their settings."""

from __future__ import annotations

import pytest

from consumer_svc.insights.config import Settings
from consumer_svc.insights.domain import Tier, TierConfigError, parse_tiers, tier_standing
from payrail_common.config import ConfigError

DEFAULT = parse_tiers("MEMBER:1,VIP:5")


def test_default_tiers_make_vip_at_the_fifth_visit() -> None:
    assert parse_tiers("MEMBER:1,VIP:5") == (Tier("MEMBER", 1), Tier("VIP", 5))
    assert [tier_standing(v, DEFAULT).tier for v in range(7)] == [
        "",
        "MEMBER",
        "MEMBER",
        "MEMBER",
        "MEMBER",
        "VIP",
        "VIP",
    ]


def test_standing_says_what_the_next_tier_needs() -> None:
    below = tier_standing(0, DEFAULT)
    assert (below.tier, below.next_tier, below.visits_to_next_tier) == ("", "MEMBER", 1)
    member = tier_standing(3, DEFAULT)
    assert (member.tier, member.next_tier, member.visits_to_next_tier) == ("MEMBER", "VIP", 2)
    top = tier_standing(12, DEFAULT)
    assert (top.tier, top.next_tier, top.visits_to_next_tier) == ("VIP", "", 0)


def test_three_tiers_at_configured_thresholds() -> None:
    tiers = parse_tiers(" BRONZE:2, SILVER:4 ,GOLD:10")
    assert tier_standing(1, tiers).tier == ""
    assert tier_standing(2, tiers).tier == "BRONZE"
    assert tier_standing(9, tiers).visits_to_next_tier == 1
    assert tier_standing(10, tiers).tier == "GOLD"


@pytest.mark.parametrize(
    "spec",
    ["", "VIP", "VIP:x", "VIP:0", "VIP:5,MEMBER:1", "VIP:1,VIP:2", "vip:1", "MEMBER:1,VIP:1"],
)
def test_unusable_tier_specs_are_refused(spec: str) -> None:
    with pytest.raises(TierConfigError):
        parse_tiers(spec)


def test_settings_read_tiers_groups_and_ports() -> None:
    settings = Settings.from_env(
        {
            "PAYRAIL_LOYALTY_TIERS": "MEMBER:1,VIP:3",
            "PAYRAIL_INSIGHTS_GROUPS": "benefits",
            "PAYRAIL_INSIGHTS_PORT": "0",
        }
    )
    assert settings.tiers[-1] == Tier("VIP", 3)
    assert settings.enabled_groups == {"benefits"}
    assert settings.port == 0
    defaults = Settings.from_env({})
    assert (defaults.port, defaults.metrics_port) == (50054, 9454)
    assert defaults.enabled_groups == {"loyalty", "benefits"}
    assert (defaults.loyalty_group, defaults.benefits_group) == (
        "payrail-loyalty",
        "payrail-benefits",
    )
    assert Settings.from_env({"PAYRAIL_INSIGHTS_GROUPS": ""}).enabled_groups == set()


@pytest.mark.parametrize(
    "env",
    [
        {"PAYRAIL_LOYALTY_TIERS": "VIP:0"},
        {"PAYRAIL_INSIGHTS_GROUPS": "loyalty,fraud"},
    ],
)
def test_bad_settings_are_configuration_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_group_lag_counts_uncommitted_partitions_from_their_beginning() -> None:
    from aiokafka import TopicPartition

    from consumer_svc.insights.lag import group_lag

    p0, p1, p2 = (TopicPartition("payments.events", p) for p in range(3))
    end = {p0: 10, p1: 7, p2: 5}
    beginning = {p0: 0, p1: 2, p2: 5}
    assert group_lag([p0, p1, p2], {p0: 4, p1: 7}, beginning, end) == 6 + 0 + 0
    assert group_lag([p0, p1, p2], {}, beginning, end) == 10 + 5 + 0
    # -1 means "never committed"; a committed offset past the end (a race) is no lag.
    assert group_lag([p0, p1], {p0: -1, p1: 9}, beginning, end) == 10
