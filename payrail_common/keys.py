"""Local development keys, created on first ``make up`` and never committed.

``python -m payrail_common.keys --dir .data/keys --jwt dev-1 --secret vault-dev-1 ...``

* ``--jwt KID`` writes ``jwt-<KID>.pem`` (Ed25519 private key, mode 600) and
  ``jwt-<KID>.pub.pem``;
* ``--secret NAME`` writes ``<NAME>.key``: 32 random bytes, base64, mode 600 (AES-256
  and HMAC keys of the card vault, the internal service token, the edge assertion key).

Existing files are left alone, so it is safe to run on every start.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
from pathlib import Path

from payrail_common.config import ConfigError
from payrail_common.tokens import generate_key_files

SECRET_BYTES = 32


def generate_secret_file(directory: Path, name: str) -> Path:
    """Write ``<name>.key`` (32 random bytes, base64) unless it exists."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode() + "\n")
    return path


def read_secret_file(path: Path) -> bytes:
    """The 32-byte key in a file written by :func:`generate_secret_file`."""
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path} is not base64") from None
    if len(raw) != SECRET_BYTES:
        raise ConfigError(f"{path} must hold {SECRET_BYTES} bytes, found {len(raw)}")
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create local development keys.")
    parser.add_argument("--dir", type=Path, required=True, help="where the key files go")
    parser.add_argument("--jwt", action="append", default=[], metavar="KID")
    parser.add_argument("--secret", action="append", default=[], metavar="NAME")
    args = parser.parse_args(argv)
    for kid in args.jwt:
        private_path, _ = generate_key_files(args.dir, kid)
        print(f"keys: {private_path} (JWT signing key {kid})")  # noqa: T201
    for name in args.secret:
        print(f"keys: {generate_secret_file(args.dir, name)}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
