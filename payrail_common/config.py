"""Typed reads of environment variables with clear errors.

Each service's ``config.py`` builds a frozen settings object from these; nothing else in
a service reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol


class ConfigError(ValueError):
    """An environment variable is set to something the service cannot use."""


def env_str(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    """The variable's value, or default when unset or empty."""
    value = (os.environ if env is None else env).get(name, "")
    return value if value != "" else default


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """The variable as an integer within [minimum, maximum], or default when unset."""
    raw = env_str(name, "", env)
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    env: Mapping[str, str] | None = None,
) -> float:
    """The variable as a finite number of at least minimum, or default when unset."""
    raw = env_str(name, "", env)
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {value:g}")
    return value


def env_port(name: str, default: int, env: Mapping[str, str] | None = None) -> int:
    """A TCP port; 0 asks the OS for a free one (used by tests)."""
    return env_int(name, default, minimum=0, maximum=65535, env=env)


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """true/false, 1/0, yes/no, on/off (any case)."""
    raw = env_str(name, "", env).strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


class _ServiceDefaults(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def metrics_port(self) -> int: ...
    @property
    def pg_dsn(self) -> str: ...
    @property
    def pg_pool_max(self) -> int: ...
    @property
    def startup_timeout_s(self) -> int: ...
    @property
    def shutdown_grace_s(self) -> int: ...
    @property
    def log_level(self) -> str: ...


def service_fields(
    service: str, defaults: _ServiceDefaults, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The settings every service has, read the same way: ``PAYRAIL_<SERVICE>_HOST``,
    ``_PORT``, ``_METRICS_PORT``, ``_PG_POOL_MAX`` and the shared PAYRAIL_PG_DSN,
    PAYRAIL_STARTUP_TIMEOUT_S, PAYRAIL_SHUTDOWN_GRACE_S and PAYRAIL_LOG_LEVEL."""
    prefix = f"PAYRAIL_{service}"
    d = defaults
    return {
        "host": env_str(f"{prefix}_HOST", d.host, env),
        "port": env_port(f"{prefix}_PORT", d.port, env),
        "metrics_port": env_port(f"{prefix}_METRICS_PORT", d.metrics_port, env),
        "pg_dsn": env_str("PAYRAIL_PG_DSN", d.pg_dsn, env),
        "pg_pool_max": env_int(
            f"{prefix}_PG_POOL_MAX", d.pg_pool_max, minimum=1, maximum=500, env=env
        ),
        "startup_timeout_s": env_int(
            "PAYRAIL_STARTUP_TIMEOUT_S", d.startup_timeout_s, minimum=1, env=env
        ),
        "shutdown_grace_s": env_int(
            "PAYRAIL_SHUTDOWN_GRACE_S", d.shutdown_grace_s, minimum=0, env=env
        ),
        "log_level": env_str("PAYRAIL_LOG_LEVEL", d.log_level, env),
    }
