"""``python -m console_svc``: serve the web console until SIGTERM."""

from __future__ import annotations

import sys

from console_svc import bootstrap
from console_svc.config import Settings
from payrail_common.runtime import run_service

if __name__ == "__main__":
    sys.exit(run_service("console_svc", Settings.from_env, bootstrap.build))
