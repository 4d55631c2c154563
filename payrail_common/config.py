"""Typed reads of environment variables with clear errors.

Each service's ``config.py`` builds a frozen settings object from these; nothing else in
a service reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


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
