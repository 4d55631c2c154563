"""``python -m payment_svc``: run the payment core until SIGTERM."""

from __future__ import annotations

import sys

from payment_svc import bootstrap
from payment_svc.config import Settings
from payrail_common.runtime import run_service

if __name__ == "__main__":
    sys.exit(run_service("payment_svc", Settings.from_env, bootstrap.build))
