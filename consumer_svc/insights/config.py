"""Settings of the insights process, read once from the environment by its composition
root (``PAYRAIL_INSIGHTS_*`` plus the shared PostgreSQL, Kafka and JWT settings)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from consumer_svc.insights.domain import Tier, TierConfigError, parse_tiers
from payrail_common.config import ConfigError, env_int, env_str, service_fields

LOYALTY = "loyalty"
BENEFITS = "benefits"
GROUP_ROLES = (LOYALTY, BENEFITS)


@dataclass(frozen=True)
class Settings:
    """Defaults match the local stack started by ``make up``."""

    host: str = "127.0.0.1"
    # InsightsService, BenefitCatalogService, health and reflection.
    port: int = 50054
    # Prometheus /metrics port; 0 disables the endpoint.
    metrics_port: int = 9454
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Public keys that verify the access tokens gateway_svc forwards: "kid=/path.pem,...".
    jwt_public_keys: str = "dev-1=.data/keys/jwt-dev-1.pub.pem"
    jwt_issuer: str = "payrail"
    jwt_audience: str = "payrail-api"
    # Edge assertion keys (32 bytes, base64) "/path/new.key[,/path/old.key]": the first
    # signs, every one verifies (rotation). gateway_svc signs each call it authenticated
    # and forwards; payment_svc and insights accept a bearer token only with one.
    edge_assertion_keys: str = ".data/keys/edge-assertion.key"
    # Kafka consumer groups (one per deployment each).
    loyalty_group: str = "payrail-loyalty"
    benefits_group: str = "payrail-benefits"
    # Which groups this process runs: a subset of "loyalty,benefits"; "" runs none (the
    # RPCs still answer from what was recorded). Lag is reported for both either way.
    groups: str = "loyalty,benefits"
    # Loyalty tiers "NAME:visits,..." in increasing order of visits.
    loyalty_tiers: str = "MEMBER:1,VIP:5"
    # How often each group's lag is measured, busy or idle.
    lag_interval_s: int = 5
    # Once a poll returns records, how long a consumer group waits for more before it
    # handles them as one batch (0: at once): a window of a few tens of ms turns many
    # one-record batches (an inbox read, a transaction, an RPC and a commit each) into
    # fewer larger ones, for at most that much more latency per hop.
    consumer_linger_ms: int = 100
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/payrail"
    pg_pool_max: int = 10
    startup_timeout_s: int = 30
    shutdown_grace_s: int = 10
    log_level: str = "INFO"

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return parse_tiers(self.loyalty_tiers)

    @property
    def enabled_groups(self) -> frozenset[str]:
        return frozenset(filter(None, (g.strip().lower() for g in self.groups.split(","))))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        d = cls()
        # "" is a valid choice here (no group), so it is read without env_str's fallback.
        raw_groups = (os.environ if env is None else env).get("PAYRAIL_INSIGHTS_GROUPS")
        settings = cls(
            **service_fields("INSIGHTS", d, env),
            kafka_bootstrap=env_str("PAYRAIL_KAFKA_BOOTSTRAP", d.kafka_bootstrap, env),
            jwt_public_keys=env_str("PAYRAIL_JWT_PUBLIC_KEYS", d.jwt_public_keys, env),
            jwt_issuer=env_str("PAYRAIL_JWT_ISSUER", d.jwt_issuer, env),
            jwt_audience=env_str("PAYRAIL_JWT_AUDIENCE", d.jwt_audience, env),
            edge_assertion_keys=env_str("PAYRAIL_EDGE_ASSERTION_KEYS", d.edge_assertion_keys, env),
            loyalty_group=env_str("PAYRAIL_LOYALTY_GROUP", d.loyalty_group, env),
            benefits_group=env_str("PAYRAIL_BENEFITS_GROUP", d.benefits_group, env),
            groups=d.groups if raw_groups is None else raw_groups,
            loyalty_tiers=env_str("PAYRAIL_LOYALTY_TIERS", d.loyalty_tiers, env),
            consumer_linger_ms=env_int(
                "PAYRAIL_CONSUMER_LINGER_MS",
                d.consumer_linger_ms,
                minimum=0,
                maximum=500,
                env=env,
            ),
            lag_interval_s=env_int(
                "PAYRAIL_INSIGHTS_LAG_INTERVAL_S", d.lag_interval_s, minimum=1, maximum=300, env=env
            ),
        )
        unknown = settings.enabled_groups - set(GROUP_ROLES)
        if unknown:
            raise ConfigError(
                f"PAYRAIL_INSIGHTS_GROUPS: unknown group(s) {sorted(unknown)};"
                f" choose from {','.join(GROUP_ROLES)}"
            )
        try:
            settings.tiers  # noqa: B018 - validated now, not at the first event
        except TierConfigError as exc:
            raise ConfigError(f"PAYRAIL_LOYALTY_TIERS: {exc}") from None
        return settings
