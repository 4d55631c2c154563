"""``python -m consumer_svc.dlq``: see :mod:`consumer_svc.dlq.cli`."""

import sys

from consumer_svc.dlq.cli import main

sys.exit(main())
