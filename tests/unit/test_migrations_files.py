from pathlib import Path

import pytest

from realchat.storage.migrations import MigrationError, load_migrations


def write(folder: Path, name: str, sql: str = "SELECT 1;") -> None:
    (folder / name).write_text(sql)


def test_migrations_load_in_version_order(tmp_path: Path) -> None:
    write(tmp_path, "0002_second.sql")
    write(tmp_path, "0001_first.sql", "CREATE TABLE t (id int);")
    migrations = load_migrations(tmp_path)
    assert [(m.version, m.name) for m in migrations] == [(1, "first"), (2, "second")]
    assert migrations[0].checksum != migrations[1].checksum


def test_badly_named_file_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "1_first.sql")
    with pytest.raises(MigrationError, match="NNNN_name"):
        load_migrations(tmp_path)


def test_duplicate_versions_are_an_error(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql")
    write(tmp_path, "0001_b.sql")
    with pytest.raises(MigrationError, match="duplicate"):
        load_migrations(tmp_path)


def test_shipped_migrations_are_well_formed() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
