"""Migrations against the real PostgreSQL, each test in a database of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from payrail_common.migrate import COMPONENTS, MigrationError, apply_migrations
from tests.conftest import StackEnv

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def scratch_dsn(stack: StackEnv) -> AsyncIterator[str]:
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(stack.pg_dsn, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield stack.pg_dsn.rsplit("/", 1)[0] + "/" + name
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_applies_every_service_once_and_records_it(scratch_dsn: str) -> None:
    conn = await asyncpg.connect(scratch_dsn)
    try:
        first = await apply_migrations(conn)
        second = await apply_migrations(conn)
        recorded = await conn.fetch("SELECT component, version FROM schema_migrations")
    finally:
        await conn.close()
    assert {m.component for m in first} == set(COMPONENTS)
    assert second == []
    assert {(r["component"], r["version"]) for r in recorded} == {
        (m.component, m.version) for m in first
    }


async def test_concurrent_runners_apply_each_migration_once(
    scratch_dsn: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_counter.sql").write_text(
        "CREATE TABLE counter (n int); INSERT INTO counter VALUES (1);"
    )
    conns = [await asyncpg.connect(scratch_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply_migrations(c, {"t": tmp_path}) for c in conns))
        rows = await conns[0].fetchval("SELECT count(*) FROM counter")
    finally:
        for c in conns:
            await c.close()
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    assert rows == 1


async def test_failed_migration_leaves_nothing_behind(scratch_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok_table (n int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE half (n int); SELECT * FROM nope;")
    conn = await asyncpg.connect(scratch_dsn)
    try:
        with pytest.raises(asyncpg.UndefinedTableError):
            await apply_migrations(conn, {"t": tmp_path})
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        versions = await conn.fetch("SELECT version FROM schema_migrations")
    finally:
        await conn.close()
    assert "ok_table" in tables
    assert "half" not in tables
    assert [r["version"] for r in versions] == [1]


async def test_editing_an_applied_migration_is_refused(scratch_dsn: str, tmp_path: Path) -> None:
    migration = tmp_path / "0001_t.sql"
    migration.write_text("CREATE TABLE t (n int);")
    conn = await asyncpg.connect(scratch_dsn)
    try:
        await apply_migrations(conn, {"t": tmp_path})
        migration.write_text("CREATE TABLE t (n bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn, {"t": tmp_path})
    finally:
        await conn.close()
