"""The benchmark's smoke test runs against the same real service processes as the
end-to-end tests: their fixtures, reused as they are."""

from __future__ import annotations

from tests.e2e.conftest import gateway_keys, service_env, services

__all__ = ["gateway_keys", "service_env", "services"]
