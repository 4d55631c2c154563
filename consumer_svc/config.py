"""consumer_svc settings, read once from the environment by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from payrail_common.config import env_int, env_port, env_str


@dataclass(frozen=True)
class Settings:
    """Defaults match the local stack started by ``make up``."""

    host: str = "127.0.0.1"
    # Health and reflection only.
    port: int = 50053
    # Prometheus /metrics port; 0 disables the endpoint.
    metrics_port: int = 9453
    kafka_bootstrap: str = "127.0.0.1:9092"
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/payrail"
    pg_pool_max: int = 10
    startup_timeout_s: int = 30
    shutdown_grace_s: int = 10
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        d = cls()
        return cls(
            host=env_str("PAYRAIL_CONSUMER_HOST", d.host, env),
            port=env_port("PAYRAIL_CONSUMER_PORT", d.port, env),
            metrics_port=env_port("PAYRAIL_CONSUMER_METRICS_PORT", d.metrics_port, env),
            kafka_bootstrap=env_str("PAYRAIL_KAFKA_BOOTSTRAP", d.kafka_bootstrap, env),
            pg_dsn=env_str("PAYRAIL_PG_DSN", d.pg_dsn, env),
            pg_pool_max=env_int(
                "PAYRAIL_CONSUMER_PG_POOL_MAX", d.pg_pool_max, minimum=1, maximum=500, env=env
            ),
            startup_timeout_s=env_int(
                "PAYRAIL_STARTUP_TIMEOUT_S", d.startup_timeout_s, minimum=1, env=env
            ),
            shutdown_grace_s=env_int(
                "PAYRAIL_SHUTDOWN_GRACE_S", d.shutdown_grace_s, minimum=0, env=env
            ),
            log_level=env_str("PAYRAIL_LOG_LEVEL", d.log_level, env),
        )
