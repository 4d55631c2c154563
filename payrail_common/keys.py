"""``python -m payrail_common.keys --dir .data/keys --kid dev-1``: make a JWT signing key.

Writes ``jwt-<kid>.pem`` (Ed25519 private key, mode 600) and ``jwt-<kid>.pub.pem`` unless
they exist, so it is safe to run on every ``make up``. Keys are never committed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from payrail_common.tokens import generate_key_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create an Ed25519 JWT signing key pair.")
    parser.add_argument("--dir", type=Path, required=True, help="where the PEM files go")
    parser.add_argument("--kid", required=True, help="key id, e.g. dev-1")
    args = parser.parse_args(argv)
    private_path, public_path = generate_key_files(args.dir, args.kid)
    print(f"keys: {private_path} (private), {public_path} (public)")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
