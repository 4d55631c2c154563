"""``python -m sandbox_gateways.keys --dir .data/keys sandbox-json sandbox-soap``

Creates, unless present, each sandbox gateway's X25519 key pair (``<id>.x25519`` private,
``<id>.x25519.pub`` public: 32 raw bytes, base64) and callback secret (``<id>.secret``).
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

from gateway_sdk import CallbackSecret
from gateway_sdk.sealing import generate_key_pair, private_key_to_raw, public_key_to_raw


def _write(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text + "\n")


def ensure_keys(directory: Path, gateway_id: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / f"{gateway_id}.x25519"
    if not private_path.exists():
        private, public = generate_key_pair()
        _write(private_path, base64.b64encode(private_key_to_raw(private)).decode())
        _write(
            directory / f"{gateway_id}.x25519.pub",
            base64.b64encode(public_key_to_raw(public)).decode(),
        )
    secret_path = directory / f"{gateway_id}.secret"
    if not secret_path.exists():
        _write(secret_path, CallbackSecret.generate().to_base64())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create sandbox gateway keys.")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("gateway_ids", nargs="+")
    args = parser.parse_args(argv)
    for gateway_id in args.gateway_ids:
        ensure_keys(args.dir, gateway_id)
        print(f"keys: {args.dir}/{gateway_id}.x25519, .x25519.pub, .secret")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
