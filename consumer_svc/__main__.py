"""``python -m consumer_svc``: run the Kafka consumer groups until SIGTERM."""

from __future__ import annotations

import sys

from consumer_svc import bootstrap
from consumer_svc.config import Settings
from payrail_common.runtime import run_service

if __name__ == "__main__":
    sys.exit(run_service("consumer_svc", Settings.from_env, bootstrap.build))
