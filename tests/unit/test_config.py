from __future__ import annotations

import pytest

from consumer_svc.config import Settings as ConsumerSettings
from gateway_svc.config import Settings as GatewaySettings
from payment_svc.config import Settings as PaymentSettings
from payrail_common.config import ConfigError, env_bool, env_int, env_port


def test_defaults_match_the_local_stack() -> None:
    gateway = GatewaySettings.from_env({})
    payment = PaymentSettings.from_env({})
    assert (gateway.port, payment.port) == (50051, 50052)
    assert gateway.payment_target == f"127.0.0.1:{payment.port}"
    assert payment.pg_dsn == "postgresql://postgres@127.0.0.1:5432/payrail"


def test_environment_overrides_defaults() -> None:
    settings = GatewaySettings.from_env(
        {"PAYRAIL_GATEWAY_PORT": "6000", "PAYRAIL_PAYMENT_TARGET": "10.0.0.5:7000"}
    )
    assert settings.port == 6000
    assert settings.payment_target == "10.0.0.5:7000"


@pytest.mark.parametrize(
    ("raw", "message"),
    [("abc", "must be an integer"), ("70000", "at most 65535"), ("-1", "at least 0")],
)
def test_bad_port_is_a_clear_error(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        env_port("PAYRAIL_GATEWAY_PORT", 50051, env={"PAYRAIL_GATEWAY_PORT": raw})
    assert "PAYRAIL_GATEWAY_PORT" in str(info.value)


def test_int_bounds_and_empty_value() -> None:
    assert env_int("X", 7, env={"X": ""}) == 7
    with pytest.raises(ConfigError):
        env_int("X", 7, minimum=10, env={"X": "9"})


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("Yes", True), ("off", False)])
def test_bools(raw: str, expected: bool) -> None:
    assert env_bool("B", not expected, env={"B": raw}) is expected


def test_bad_bool() -> None:
    with pytest.raises(ConfigError, match="true or false"):
        env_bool("B", False, env={"B": "maybe"})


@pytest.mark.parametrize(
    ("settings_type", "prefix"),
    [(GatewaySettings, "GATEWAY"), (PaymentSettings, "PAYMENT"), (ConsumerSettings, "CONSUMER")],
)
def test_every_service_reads_the_common_settings_under_its_prefix(
    settings_type: type[GatewaySettings | PaymentSettings | ConsumerSettings], prefix: str
) -> None:
    settings = settings_type.from_env(
        {
            f"PAYRAIL_{prefix}_PORT": "7001",
            f"PAYRAIL_{prefix}_HOST": "0.0.0.0",
            f"PAYRAIL_{prefix}_METRICS_PORT": "0",
            f"PAYRAIL_{prefix}_PG_POOL_MAX": "3",
            "PAYRAIL_PG_DSN": "postgresql://x@db/payrail",
            "PAYRAIL_SHUTDOWN_GRACE_S": "4",
            "PAYRAIL_LOG_LEVEL": "DEBUG",
        }
    )
    assert (settings.port, settings.host, settings.metrics_port) == (7001, "0.0.0.0", 0)
    assert (settings.pg_pool_max, settings.pg_dsn) == (3, "postgresql://x@db/payrail")
    assert (settings.shutdown_grace_s, settings.log_level) == (4, "DEBUG")
