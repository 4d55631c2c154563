"""gateway_svc settings, read once from the environment by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from payrail_common.config import ConfigError, env_int, env_str, service_fields


@dataclass(frozen=True)
class Settings:
    """Defaults match the local stack started by ``make up``."""

    host: str = "127.0.0.1"
    port: int = 50051
    # Prometheus /metrics port; 0 disables the endpoint.
    metrics_port: int = 9451
    # Internal address of payment_svc.
    payment_target: str = "127.0.0.1:50052"
    # Internal address of consumer_svc's insights process (InsightsService and
    # BenefitCatalogService); payments never depend on it.
    insights_target: str = "127.0.0.1:50054"
    # Besides itself, payment_svc and insights: the components whose health
    # OperatorService.GetPlatformHealth reports, "name=host:port,..." ("-" for none).
    health_targets: str = (
        "consumer_svc=127.0.0.1:50053,sandbox_json=127.0.0.1:50061,"
        "sandbox_soap=127.0.0.1:50062,sandbox_go=127.0.0.1:50063,"
        "sandbox_ts=127.0.0.1:50064,console_svc=127.0.0.1:50055"
    )
    # Upper bound on the deadline of every forwarded unary call.
    upstream_deadline_ms: int = 5000
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/payrail"
    pg_pool_max: int = 10
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Kafka, for the notices gateway_svc sends users on the notifications topic. Nothing
    # waits for it: notices queue in memory while it is down (health shows it, non-essential).
    kafka_bootstrap: str = "127.0.0.1:9092"
    # JWT signing keys "kid=/path/private.pem[,kid=...]", the one that signs new tokens,
    # and extra verify-only public keys (keys being retired).
    jwt_signing_keys: str = "dev-1=.data/keys/jwt-dev-1.pem"
    jwt_active_kid: str = "dev-1"
    jwt_public_keys: str = ""
    jwt_issuer: str = "payrail"
    jwt_audience: str = "payrail-api"
    # Edge assertion keys (32 bytes, base64) "/path/new.key[,/path/old.key]": the first
    # signs, every one verifies (rotation). gateway_svc signs each call it authenticated
    # and forwards; payment_svc and insights accept a bearer token only with one.
    edge_assertion_keys: str = ".data/keys/edge-assertion.key"
    access_token_ttl_s: int = 900
    # Lifetime of a session and its refresh tokens (sliding: each refresh extends it).
    session_ttl_s: int = 7 * 24 * 3600
    login_window_s: int = 900
    login_max_failures_per_email: int = 5
    login_max_failures_per_peer: int = 50
    # Register attempts (new and taken e-mails alike) per window, per e-mail and per
    # client address; test and benchmark stacks raise the per-peer one.
    register_window_s: int = 900
    register_max_per_email: int = 5
    register_max_per_peer: int = 30
    argon2_memory_kib: int = 19 * 1024
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    startup_timeout_s: int = 30
    shutdown_grace_s: int = 10
    log_level: str = "INFO"

    def health_target_list(self) -> list[tuple[str, str]]:
        """health_targets as (name, address) pairs; ConfigError when malformed."""
        pairs: list[tuple[str, str]] = []
        if self.health_targets.strip() == "-":
            return pairs
        for item in filter(None, (part.strip() for part in self.health_targets.split(","))):
            name, sep, target = item.partition("=")
            if not sep or not name.strip() or not target.strip():
                raise ConfigError(f"PAYRAIL_HEALTH_TARGETS: {item!r} is not name=host:port")
            pairs.append((name.strip(), target.strip()))
        return pairs

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        d = cls()
        return cls(
            **service_fields("GATEWAY", d, env),
            payment_target=env_str("PAYRAIL_PAYMENT_TARGET", d.payment_target, env),
            insights_target=env_str("PAYRAIL_INSIGHTS_TARGET", d.insights_target, env),
            health_targets=env_str("PAYRAIL_HEALTH_TARGETS", d.health_targets, env),
            upstream_deadline_ms=env_int(
                "PAYRAIL_UPSTREAM_DEADLINE_MS",
                d.upstream_deadline_ms,
                minimum=10,
                maximum=120_000,
                env=env,
            ),
            redis_url=env_str("PAYRAIL_REDIS_URL", d.redis_url, env),
            kafka_bootstrap=env_str("PAYRAIL_KAFKA_BOOTSTRAP", d.kafka_bootstrap, env),
            jwt_signing_keys=env_str("PAYRAIL_JWT_SIGNING_KEYS", d.jwt_signing_keys, env),
            jwt_active_kid=env_str("PAYRAIL_JWT_ACTIVE_KID", d.jwt_active_kid, env),
            jwt_public_keys=env_str("PAYRAIL_JWT_PUBLIC_KEYS", d.jwt_public_keys, env),
            jwt_issuer=env_str("PAYRAIL_JWT_ISSUER", d.jwt_issuer, env),
            jwt_audience=env_str("PAYRAIL_JWT_AUDIENCE", d.jwt_audience, env),
            edge_assertion_keys=env_str("PAYRAIL_EDGE_ASSERTION_KEYS", d.edge_assertion_keys, env),
            access_token_ttl_s=env_int(
                "PAYRAIL_ACCESS_TOKEN_TTL_S", d.access_token_ttl_s, minimum=1, maximum=900, env=env
            ),
            session_ttl_s=env_int("PAYRAIL_SESSION_TTL_S", d.session_ttl_s, minimum=60, env=env),
            login_window_s=env_int("PAYRAIL_LOGIN_WINDOW_S", d.login_window_s, minimum=1, env=env),
            login_max_failures_per_email=env_int(
                "PAYRAIL_LOGIN_MAX_FAILURES_PER_EMAIL",
                d.login_max_failures_per_email,
                minimum=1,
                env=env,
            ),
            login_max_failures_per_peer=env_int(
                "PAYRAIL_LOGIN_MAX_FAILURES_PER_PEER",
                d.login_max_failures_per_peer,
                minimum=1,
                env=env,
            ),
            register_window_s=env_int(
                "PAYRAIL_REGISTER_WINDOW_S", d.register_window_s, minimum=1, env=env
            ),
            register_max_per_email=env_int(
                "PAYRAIL_REGISTER_MAX_PER_EMAIL", d.register_max_per_email, minimum=1, env=env
            ),
            register_max_per_peer=env_int(
                "PAYRAIL_REGISTER_MAX_PER_PEER", d.register_max_per_peer, minimum=1, env=env
            ),
            argon2_memory_kib=env_int(
                "PAYRAIL_ARGON2_MEMORY_KIB", d.argon2_memory_kib, minimum=19 * 1024, env=env
            ),
            argon2_time_cost=env_int(
                "PAYRAIL_ARGON2_TIME_COST", d.argon2_time_cost, minimum=2, env=env
            ),
            argon2_parallelism=env_int(
                "PAYRAIL_ARGON2_PARALLELISM", d.argon2_parallelism, minimum=1, env=env
            ),
        )
