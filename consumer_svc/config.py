"""consumer_svc settings, read once from the environment by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from payrail_common.config import env_int, env_str, service_fields


@dataclass(frozen=True)
class Settings:
    """Defaults match the local stack started by ``make up``."""

    host: str = "127.0.0.1"
    # Health and reflection only.
    port: int = 50053
    # Prometheus /metrics port; 0 disables the endpoint.
    metrics_port: int = 9453
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Internal address of payment_svc (PaymentOpsService).
    payment_target: str = "127.0.0.1:50052"
    # Shared secret presented on payment_svc's internal PaymentOpsService.
    internal_token_file: str = ".data/keys/internal-token.key"  # noqa: S105 - a path
    # Kafka consumer group of the processing pipeline (one per deployment).
    processor_group: str = "payrail-processor"
    # How often the janitor sweeps, and how many payments one sweep handles at most.
    janitor_interval_s: int = 5
    janitor_batch_max: int = 100
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/payrail"
    pg_pool_max: int = 10
    startup_timeout_s: int = 30
    shutdown_grace_s: int = 10
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        d = cls()
        return cls(
            **service_fields("CONSUMER", d, env),
            kafka_bootstrap=env_str("PAYRAIL_KAFKA_BOOTSTRAP", d.kafka_bootstrap, env),
            payment_target=env_str("PAYRAIL_PAYMENT_TARGET", d.payment_target, env),
            internal_token_file=env_str("PAYRAIL_INTERNAL_TOKEN_FILE", d.internal_token_file, env),
            processor_group=env_str("PAYRAIL_PROCESSOR_GROUP", d.processor_group, env),
            janitor_interval_s=env_int(
                "PAYRAIL_JANITOR_INTERVAL_S", d.janitor_interval_s, minimum=1, env=env
            ),
            janitor_batch_max=env_int(
                "PAYRAIL_JANITOR_BATCH_MAX", d.janitor_batch_max, minimum=1, maximum=1000, env=env
            ),
        )
