"""payment_svc settings, read once from the environment by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from payrail_common.config import env_int, env_str, service_fields


@dataclass(frozen=True)
class Settings:
    """Defaults match the local stack started by ``make up``."""

    host: str = "127.0.0.1"
    port: int = 50052
    # Prometheus /metrics port; 0 disables the endpoint.
    metrics_port: int = 9452
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/payrail"
    pg_pool_max: int = 20
    redis_url: str = "redis://127.0.0.1:6379/0"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Public keys that verify the access tokens gateway_svc forwards: "kid=/path.pem,...".
    jwt_public_keys: str = "dev-1=.data/keys/jwt-dev-1.pub.pem"
    jwt_issuer: str = "payrail"
    jwt_audience: str = "payrail-api"
    # Edge assertion keys (32 bytes, base64) "/path/new.key[,/path/old.key]": the first
    # signs, every one verifies (rotation). gateway_svc signs each call it authenticated
    # and forwards; payment_svc and insights accept a bearer token only with one.
    edge_assertion_keys: str = ".data/keys/edge-assertion.key"
    # ISO-4217 codes accepted by CreatePayment (each needs a limit in the domain table).
    supported_currencies: str = "USD,EUR,GBP,JPY,KRW,CHF,CAD,AUD"
    # Card vault: AES-256-GCM data keys "kid=/path.key,...", the one new seals use, and
    # the separate HMAC key for card fingerprints. Files hold 32 bytes, base64.
    vault_keys: str = "dev-1=.data/keys/vault-dev-1.key"
    vault_active_key: str = "dev-1"
    vault_fingerprint_key: str = ".data/keys/vault-fingerprint.key"
    # Sealed CVCs live in Redis this long, for the gateway dispatch only.
    cvc_ttl_s: int = 900
    # GetPayment cache-aside entries expire after this long even without invalidation.
    payment_cache_ttl_s: int = 300
    # Shared secret that internal callers (consumer_svc) present on PaymentOpsService.
    internal_token_file: str = ".data/keys/internal-token.key"  # noqa: S105 - a path
    # Janitor policy: PENDING and REQUIRES_VERIFICATION lifetimes, dispatch attempts.
    pending_ttl_s: int = 1800
    # Admission control: CreatePayment answers RESOURCE_EXHAUSTED (PROCESSING_BACKLOG)
    # while this many payments are PENDING or PROCESSING (0 = never); the count is read
    # every unsettled_check_ms.
    unsettled_max: int = 1000
    unsettled_check_ms: int = 500
    verification_ttl_s: int = 600
    dispatch_attempts_max: int = 3
    # Outbox rows the relay claims and publishes per cycle.
    outbox_batch_max: int = 500
    # After a commit wakes the outbox relay, how long it waits for more commits before it
    # claims (0: none): the commits of that window cost one claim, produce and mark.
    outbox_linger_ms: int = 50
    # How long start-up waits for PostgreSQL before giving up (Redis and Kafka are not
    # waited for: without them the service starts degraded).
    startup_timeout_s: int = 30
    # In-flight calls get this long to finish on SIGTERM.
    shutdown_grace_s: int = 10
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        d = cls()
        return cls(
            **service_fields("PAYMENT", d, env),
            redis_url=env_str("PAYRAIL_REDIS_URL", d.redis_url, env),
            kafka_bootstrap=env_str("PAYRAIL_KAFKA_BOOTSTRAP", d.kafka_bootstrap, env),
            jwt_public_keys=env_str("PAYRAIL_JWT_PUBLIC_KEYS", d.jwt_public_keys, env),
            jwt_issuer=env_str("PAYRAIL_JWT_ISSUER", d.jwt_issuer, env),
            jwt_audience=env_str("PAYRAIL_JWT_AUDIENCE", d.jwt_audience, env),
            edge_assertion_keys=env_str("PAYRAIL_EDGE_ASSERTION_KEYS", d.edge_assertion_keys, env),
            supported_currencies=env_str(
                "PAYRAIL_SUPPORTED_CURRENCIES", d.supported_currencies, env
            ),
            vault_keys=env_str("PAYRAIL_VAULT_KEYS", d.vault_keys, env),
            vault_active_key=env_str("PAYRAIL_VAULT_ACTIVE_KEY", d.vault_active_key, env),
            vault_fingerprint_key=env_str(
                "PAYRAIL_VAULT_FINGERPRINT_KEY", d.vault_fingerprint_key, env
            ),
            cvc_ttl_s=env_int("PAYRAIL_CVC_TTL_S", d.cvc_ttl_s, minimum=10, maximum=3600, env=env),
            payment_cache_ttl_s=env_int(
                "PAYRAIL_PAYMENT_CACHE_TTL_S", d.payment_cache_ttl_s, minimum=1, env=env
            ),
            internal_token_file=env_str("PAYRAIL_INTERNAL_TOKEN_FILE", d.internal_token_file, env),
            pending_ttl_s=env_int("PAYRAIL_PENDING_TTL_S", d.pending_ttl_s, minimum=1, env=env),
            unsettled_max=env_int("PAYRAIL_UNSETTLED_MAX", d.unsettled_max, minimum=0, env=env),
            unsettled_check_ms=env_int(
                "PAYRAIL_UNSETTLED_CHECK_MS",
                d.unsettled_check_ms,
                minimum=10,
                maximum=60_000,
                env=env,
            ),
            verification_ttl_s=env_int(
                "PAYRAIL_VERIFICATION_TTL_S", d.verification_ttl_s, minimum=1, env=env
            ),
            dispatch_attempts_max=env_int(
                "PAYRAIL_DISPATCH_ATTEMPTS_MAX",
                d.dispatch_attempts_max,
                minimum=1,
                maximum=20,
                env=env,
            ),
            outbox_batch_max=env_int(
                "PAYRAIL_OUTBOX_BATCH_MAX", d.outbox_batch_max, minimum=1, maximum=10_000, env=env
            ),
            outbox_linger_ms=env_int(
                "PAYRAIL_OUTBOX_LINGER_MS", d.outbox_linger_ms, minimum=0, maximum=1000, env=env
            ),
        )
