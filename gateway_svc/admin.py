"""``python -m gateway_svc.admin``: give or take the admin role, for operators.

    python -m gateway_svc.admin grant ada@example.com
    python -m gateway_svc.admin revoke ada@example.com
    python -m gateway_svc.admin show ada@example.com

Roles are administrative, so this is a CLI on the database (whoever can run it already
holds PAYRAIL_PG_DSN), never an RPC. The role travels in the access token, read from
``auth.users`` at login and at every refresh: a grant takes effect at the user's next
login (or refresh), a revoke at their next refresh at the latest, i.e. within the access
token's lifetime (15 minutes at most).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from payrail_common.config import env_str
from payrail_common.migrate import DEFAULT_DSN

ROLES = {"grant": "admin", "revoke": "customer"}


async def _run(dsn: str, command: str, email: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if command == "show":
            role = await conn.fetchval(
                "SELECT u.role FROM auth.users u JOIN auth.credentials c"
                " ON c.id = u.credential_id WHERE lower(c.email) = lower($1)",
                email,
            )
        else:
            role = await conn.fetchval(
                "UPDATE auth.users u SET role = $2 FROM auth.credentials c"
                " WHERE c.id = u.credential_id AND lower(c.email) = lower($1)"
                " RETURNING u.role",
                email,
                ROLES[command],
            )
    finally:
        await conn.close()
    if role is None:
        print(f"no user with e-mail {email}", file=sys.stderr)  # noqa: T201
        return 1
    suffix = "" if command == "show" else " (effective at the user's next login)"
    print(f"{email}: {role}{suffix}")  # noqa: T201
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway_svc.admin", description="Grant or revoke the admin role."
    )
    parser.add_argument("--dsn", default=env_str("PAYRAIL_PG_DSN", DEFAULT_DSN))
    parser.add_argument("command", choices=["grant", "revoke", "show"])
    parser.add_argument("email")
    args = parser.parse_args(argv)
    return asyncio.run(_run(args.dsn, args.command, args.email.strip()))


if __name__ == "__main__":
    sys.exit(main())
