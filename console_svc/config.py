"""console_svc settings, read once from the environment by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from payrail_common.config import env_bool, env_int, env_port, env_str


@dataclass(frozen=True)
class Settings:
    """Defaults match the local stack started by ``make up``."""

    # The gRPC port serves only grpc.health.v1 (readiness, `make status`).
    host: str = "127.0.0.1"
    port: int = 50055
    # Prometheus /metrics port; 0 disables the endpoint.
    metrics_port: int = 9455
    # Where browsers reach the console (HTTP).
    http_host: str = "127.0.0.1"
    http_port: int = 50080
    # The public edge, the console's only upstream.
    gateway_target: str = "127.0.0.1:50051"
    # Deadline of every unary call to the edge.
    rpc_deadline_ms: int = 5000
    # 32-byte key (base64 file, as payrail_common.keys writes) sealing the session
    # cookie with AES-256-GCM and keying the CSRF tokens.
    cookie_key_file: str = ".data/keys/console-cookie.key"
    # Secure cookies (and the __Host- name prefix) for a console served over HTTPS, e.g.
    # behind a TLS-terminating proxy; off for the plain-HTTP development console.
    cookie_secure: bool = False
    # How long a browser session lasts at most, whatever the refresh token allows.
    session_max_age_s: int = 12 * 3600
    # How long a live timeline (WatchPayment bridged to server-sent events) stays open.
    watch_max_s: int = 600
    startup_timeout_s: int = 30
    shutdown_grace_s: int = 10
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        d = cls()
        return cls(
            host=env_str("PAYRAIL_CONSOLE_HOST", d.host, env),
            port=env_port("PAYRAIL_CONSOLE_PORT", d.port, env),
            metrics_port=env_port("PAYRAIL_CONSOLE_METRICS_PORT", d.metrics_port, env),
            http_host=env_str("PAYRAIL_CONSOLE_HTTP_HOST", d.http_host, env),
            http_port=env_port("PAYRAIL_CONSOLE_HTTP_PORT", d.http_port, env),
            gateway_target=env_str("PAYRAIL_CONSOLE_GATEWAY_TARGET", d.gateway_target, env),
            rpc_deadline_ms=env_int(
                "PAYRAIL_CONSOLE_RPC_DEADLINE_MS",
                d.rpc_deadline_ms,
                minimum=10,
                maximum=120_000,
                env=env,
            ),
            cookie_key_file=env_str("PAYRAIL_CONSOLE_COOKIE_KEY", d.cookie_key_file, env),
            cookie_secure=env_bool("PAYRAIL_CONSOLE_COOKIE_SECURE", d.cookie_secure, env),
            session_max_age_s=env_int(
                "PAYRAIL_CONSOLE_SESSION_MAX_AGE_S",
                d.session_max_age_s,
                minimum=60,
                maximum=7 * 24 * 3600,
                env=env,
            ),
            watch_max_s=env_int(
                "PAYRAIL_CONSOLE_WATCH_MAX_S", d.watch_max_s, minimum=1, maximum=3600, env=env
            ),
            startup_timeout_s=env_int(
                "PAYRAIL_STARTUP_TIMEOUT_S", d.startup_timeout_s, minimum=1, env=env
            ),
            shutdown_grace_s=env_int(
                "PAYRAIL_SHUTDOWN_GRACE_S", d.shutdown_grace_s, minimum=0, env=env
            ),
            log_level=env_str("PAYRAIL_LOG_LEVEL", d.log_level, env),
        )
