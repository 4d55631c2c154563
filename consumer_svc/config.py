"""consumer_svc settings, read once from the environment by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from consumer_svc.risk.rules import CARD_SCOPES, RiskPolicy
from payrail_common.config import (
    ConfigError,
    env_bool,
    env_float,
    env_int,
    env_str,
    service_fields,
)

# What one consumer_svc process can run; an operator stops one by leaving it out.
ROLES = frozenset({"processor", "janitor", "notifications"})


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
    # What this process runs (comma-separated subset of ROLES).
    roles: str = "processor,janitor,notifications"
    # Kafka consumer group of the processing pipeline (one per deployment).
    processor_group: str = "payrail-processor"
    # Once a poll returns records, how long a consumer group waits for more before it
    # handles them as one batch (0: at once): a window of a few tens of ms turns many
    # one-record batches (an inbox read, a transaction, an RPC and a commit each) into
    # fewer larger ones, for at most that much more latency per hop.
    consumer_linger_ms: int = 100
    # The risk memory's location cache.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Risk rules (see consumer_svc/risk/rules.py). The defaults are production's; `make up`
    # sets PAYRAIL_RISK_VELOCITY_CARD_SCOPE=user so a shared sandbox test card works.
    risk: RiskPolicy = field(default_factory=RiskPolicy)
    # The development notification sink: its consumer group and the file it appends to.
    notifications_group: str = "payrail-notifications-sink"
    notifications_sink_file: str = ".data/notifications.jsonl"
    # How often the janitor sweeps, and how many payments one sweep handles at most.
    janitor_interval_s: int = 5
    janitor_batch_max: int = 100
    # A payment PENDING this long whose creation event the processor never handled gets
    # that event re-published (and again after each further interval). Keep it far below
    # payment_svc's PAYRAIL_PENDING_TTL_S (1800), so the payment is processed, not expired.
    janitor_redrive_after_s: int = 60
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
            roles=_roles(env_str("PAYRAIL_CONSUMER_ROLES", d.roles, env)),
            processor_group=env_str("PAYRAIL_PROCESSOR_GROUP", d.processor_group, env),
            redis_url=env_str("PAYRAIL_REDIS_URL", d.redis_url, env),
            risk=RiskPolicy(
                max_speed_kmh=env_float(
                    "PAYRAIL_RISK_MAX_SPEED_KMH", d.risk.max_speed_kmh, minimum=1, env=env
                ),
                velocity_window_s=env_int(
                    "PAYRAIL_RISK_VELOCITY_WINDOW_S", d.risk.velocity_window_s, minimum=1, env=env
                ),
                velocity_max_per_card=env_int(
                    "PAYRAIL_RISK_VELOCITY_MAX_PER_CARD",
                    d.risk.velocity_max_per_card,
                    minimum=1,
                    env=env,
                ),
                velocity_max_per_user=env_int(
                    "PAYRAIL_RISK_VELOCITY_MAX_PER_USER",
                    d.risk.velocity_max_per_user,
                    minimum=1,
                    env=env,
                ),
                amount_factor=env_float(
                    "PAYRAIL_RISK_AMOUNT_FACTOR", d.risk.amount_factor, minimum=1, env=env
                ),
                amount_min_history=env_int(
                    "PAYRAIL_RISK_AMOUNT_MIN_HISTORY", d.risk.amount_min_history, minimum=1, env=env
                ),
                velocity_card_scope=_card_scope(
                    env_str("PAYRAIL_RISK_VELOCITY_CARD_SCOPE", d.risk.velocity_card_scope, env)
                ),
                withdrawal_funding_card_only=env_bool(
                    "PAYRAIL_RISK_WITHDRAWAL_FUNDING_CARD_ONLY",
                    d.risk.withdrawal_funding_card_only,
                    env,
                ),
            ),
            consumer_linger_ms=env_int(
                "PAYRAIL_CONSUMER_LINGER_MS",
                d.consumer_linger_ms,
                minimum=0,
                maximum=500,
                env=env,
            ),
            notifications_group=env_str("PAYRAIL_NOTIFICATIONS_GROUP", d.notifications_group, env),
            notifications_sink_file=env_str(
                "PAYRAIL_NOTIFICATIONS_SINK_FILE", d.notifications_sink_file, env
            ),
            janitor_interval_s=env_int(
                "PAYRAIL_JANITOR_INTERVAL_S", d.janitor_interval_s, minimum=1, env=env
            ),
            janitor_batch_max=env_int(
                "PAYRAIL_JANITOR_BATCH_MAX", d.janitor_batch_max, minimum=1, maximum=1000, env=env
            ),
            janitor_redrive_after_s=env_int(
                "PAYRAIL_JANITOR_REDRIVE_AFTER_S",
                d.janitor_redrive_after_s,
                minimum=1,
                maximum=900,
                env=env,
            ),
        )


def _card_scope(raw: str) -> str:
    scope = raw.strip().lower()
    if scope not in CARD_SCOPES:
        raise ConfigError(
            f"PAYRAIL_RISK_VELOCITY_CARD_SCOPE must be one of {list(CARD_SCOPES)}, got {raw!r}"
        )
    return scope


def _roles(raw: str) -> str:
    chosen = [role.strip() for role in raw.split(",") if role.strip()]
    unknown = sorted(set(chosen) - ROLES)
    if unknown or not chosen:
        raise ConfigError(f"PAYRAIL_CONSUMER_ROLES must name some of {sorted(ROLES)}, got {raw!r}")
    return ",".join(chosen)
