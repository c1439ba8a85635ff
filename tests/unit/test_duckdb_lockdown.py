"""The process's DuckDB databases: no extensions on demand, files only under the data
directories, settings locked."""

from __future__ import annotations

import duckdb
import pytest

from service import duckdb_shared


@pytest.fixture
def restricted(tmp_path):
    data = tmp_path / "data"
    (data / "tmp").mkdir(parents=True)
    (tmp_path / "outside.csv").write_text("a\n1\n")
    (data / "inside.csv").write_text("a\n2\n")
    saved = duckdb_shared._ALLOWED_DIRECTORIES
    duckdb_shared.restrict_to([data])
    try:
        yield tmp_path, data
    finally:
        duckdb_shared._ALLOWED_DIRECTORIES = saved


def test_files_outside_the_data_directories_are_refused(restricted):
    root, data = restricted
    with duckdb_shared.cursor({"threads": 1}, data / "tmp") as con:
        assert con.execute(f"SELECT a FROM read_csv('{data / 'inside.csv'}')").fetchall() == [(2,)]
        con.execute(f"COPY (SELECT 1 AS n) TO '{data / 'out.parquet'}'")
        for sql in (
            f"SELECT * FROM read_csv('{root / 'outside.csv'}')",
            f"SELECT * FROM read_csv('{data}/../outside.csv')",
            "SELECT * FROM read_csv('/etc/passwd')",
            f"COPY (SELECT 1) TO '{root / 'evil.csv'}'",
        ):
            with pytest.raises(duckdb.PermissionException):
                con.execute(sql)


def test_settings_are_locked_and_extensions_stay_off(restricted):
    _, data = restricted
    with duckdb_shared.cursor({"threads": 1, "TimeZone": "UTC"}, data / "tmp") as con:
        settings = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN ('autoload_known_extensions', "
                "'autoinstall_known_extensions', 'allow_community_extensions', 'enable_external_access', "
                "'lock_configuration', 'TimeZone')"
            ).fetchall()
        )
        assert settings == {
            "autoload_known_extensions": "false",
            "autoinstall_known_extensions": "false",
            "allow_community_extensions": "false",
            "enable_external_access": "false",
            "lock_configuration": "true",
            "TimeZone": "Etc/UTC",
        }
        for sql in ("SET enable_external_access = true", "SET memory_limit = '8GB'", "SET allowed_directories = ['/']"):
            with pytest.raises(duckdb.InvalidInputException):
                con.execute(sql)
        with pytest.raises(duckdb.Error):
            con.execute("INSTALL httpfs")
