"""``python -m gateway_svc``: run the public edge until SIGTERM."""

from __future__ import annotations

import sys

from gateway_svc import bootstrap
from gateway_svc.config import Settings
from payrail_common.runtime import run_service

if __name__ == "__main__":
    sys.exit(run_service("gateway_svc", Settings.from_env, bootstrap.build))
