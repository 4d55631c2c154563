"""``python -m consumer_svc.insights``: run the loyalty and benefits consumer groups and
serve InsightsService and BenefitCatalogService until SIGTERM."""

from __future__ import annotations

import sys

from consumer_svc.insights import bootstrap
from consumer_svc.insights.config import Settings
from payrail_common.runtime import run_service

if __name__ == "__main__":
    sys.exit(run_service("insights_svc", Settings.from_env, bootstrap.build))
