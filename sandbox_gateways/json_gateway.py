"""``python -m sandbox_gateways.json_gateway``: the JSON sandbox gateway."""

import sys

from sandbox_gateways.gateway import main

if __name__ == "__main__":
    sys.exit(main("sandbox-json", "json", "PAYRAIL_SANDBOX_JSON_PORT", 50061))
