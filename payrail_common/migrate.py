"""Numbered SQL migrations, applied once each and recorded in ``public.schema_migrations``.

Each service owns a ``migrations/`` folder of files named ``NNNN_description.sql`` and a
PostgreSQL schema of its own. :func:`apply_migrations` applies the pending files of every
component in version order, each file in its own transaction together with its record,
under an advisory lock so two runners started at once do not race. A migration that was
applied and then edited is refused (its checksum no longer matches): applied migrations
are history; change the schema with a new file.

``python -m payrail_common.migrate`` applies every service's migrations to PAYRAIL_PG_DSN.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from payrail_common.config import env_str
from payrail_common.logs import configure_logging

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
# Component name -> its migrations folder. Order matters only across components that
# reference each other's tables; each component's files apply in version order.
COMPONENTS: dict[str, Path] = {
    "gateway_svc": ROOT / "gateway_svc" / "migrations",
    "payment_svc": ROOT / "payment_svc" / "migrations",
    "consumer_svc": ROOT / "consumer_svc" / "migrations",
}
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/payrail"
# Arbitrary constant shared by every runner: pg_advisory_lock key for "migrations".
_LOCK_KEY = 0x7061_7972
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration file is misnamed, duplicated or was changed after being applied."""


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(components: dict[str, Path]) -> list[Migration]:
    """Read every component's files; refuse misnamed files and duplicate versions."""
    found: list[Migration] = []
    for component, folder in components.items():
        seen: set[int] = set()
        for path in sorted(folder.glob("*.sql")):
            match = _NAME_RE.match(path.name)
            if match is None:
                raise MigrationError(f"{path}: name must look like 0001_create_things.sql")
            version = int(match.group(1))
            if version in seen:
                raise MigrationError(f"{component}: two migrations numbered {version:04d}")
            seen.add(version)
            found.append(Migration(component, version, match.group(2), path.read_text()))
    return found


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


async def apply_migrations(
    conn: asyncpg.Connection, components: dict[str, Path] | None = None
) -> list[Migration]:
    """Apply what is pending; return the migrations applied by this call."""
    migrations = load_migrations(COMPONENTS if components is None else components)
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_BOOKKEEPING)
        rows = await conn.fetch("SELECT component, version, checksum FROM schema_migrations")
        done = {(r["component"], r["version"]): r["checksum"] for r in rows}
        for migration in migrations:
            key = (migration.component, migration.version)
            if key in done:
                if done[key] != migration.checksum:
                    raise MigrationError(
                        f"{migration.component} {migration.version:04d}_{migration.name} "
                        "changed after it was applied; add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (component, version, name, checksum)"
                    " VALUES ($1, $2, $3, $4)",
                    migration.component,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info(
                "migration applied",
                extra={
                    "component": migration.component,
                    "version": migration.version,
                    "migration": migration.name,
                },
            )
            applied_now.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def _main(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        applied = await apply_migrations(conn)
    finally:
        await conn.close()
    print(f"migrations: {len(applied)} applied, database up to date")  # noqa: T201
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Apply payrail's SQL migrations.")
    parser.add_argument("--dsn", default=env_str("PAYRAIL_PG_DSN", DEFAULT_DSN))
    args = parser.parse_args(argv)
    configure_logging("migrate")
    try:
        return asyncio.run(_main(args.dsn))
    except MigrationError as exc:
        print(f"migrations: {exc}", file=sys.stderr)  # noqa: T201
        return 1


if __name__ == "__main__":
    sys.exit(main())
