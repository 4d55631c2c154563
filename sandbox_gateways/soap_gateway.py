"""``python -m sandbox_gateways.soap_gateway``: the SOAP/XML sandbox gateway."""

import sys

from sandbox_gateways.gateway import main

if __name__ == "__main__":
    sys.exit(main("sandbox-soap", "soap", "PAYRAIL_SANDBOX_SOAP_PORT", 50062))
