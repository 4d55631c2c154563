from __future__ import annotations

from pathlib import Path

import pytest

from payrail_common.migrate import COMPONENTS, MigrationError, load_migrations


def test_every_service_migration_is_well_formed() -> None:
    migrations = load_migrations(COMPONENTS)
    assert {m.component for m in migrations} == set(COMPONENTS)
    for component in COMPONENTS:
        versions = [m.version for m in migrations if m.component == component]
        assert versions == sorted(versions)
        assert versions[0] == 1


def test_misnamed_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "create_things.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"0001_create_things\.sql"):
        load_migrations({"x": tmp_path})


def test_duplicate_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 2;")
    with pytest.raises(MigrationError, match="two migrations numbered 0001"):
        load_migrations({"x": tmp_path})
