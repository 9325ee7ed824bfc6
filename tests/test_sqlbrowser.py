"""The read-only SQL browser: reads work with a row limit, and every way of writing is refused by
the database connection itself (SQLite: read-only URI + authorizer; PostgreSQL: read-only role and
transaction) and changes nothing; a runaway query is stopped by the time limit."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from surveydm.db import Registry
from surveydm.db.models.production import Production
from surveydm.db.models.raw import ArchiveFile
from surveydm.publish.sqlbrowser import (
    MAX_ROW_LIMIT,
    READER_ROLE,
    QueryTimeout,
    SqlBrowser,
    SqlBrowserError,
)

N_FILES = 30


@pytest.fixture
def filled(registry: Registry) -> Registry:
    with registry.session() as s:
        for i in range(N_FILES):
            s.add(ArchiveFile(path=f"raw/2026-11-20/x/f{i:03d}.fits", size=100 + i,
                              adler32=f"{i:08x}", md5=f"{i:032x}"))  # fmt: skip
        s.add(Production(pipeline="nightly", release="dev", software_version="0",
                         config={}, config_hash="h"))  # fmt: skip
    return registry


def _state(registry: Registry) -> tuple:
    """Everything a write attempt could change that the tests can see."""
    with registry.session(write=False) as s:
        n = s.scalar(select(func.count()).select_from(ArchiveFile))
        total = s.scalar(select(func.sum(ArchiveFile.size)))
        prods = s.scalar(select(func.count()).select_from(Production))
        if registry.dialect == "sqlite":
            extra = (
                s.execute(text("PRAGMA user_version")).scalar(),
                s.execute(text("PRAGMA journal_mode")).scalar(),
                tuple(r[1] for r in s.execute(text("PRAGMA database_list"))),
                s.scalar(text("SELECT count(*) FROM sqlite_master")),
            )
        else:
            extra = (
                s.execute(text("SELECT last_value, is_called FROM archive_file_id_seq")).one(),
                s.scalar(text("SELECT count(*) FROM pg_largeobject_metadata")),
                s.scalar(text("SELECT count(*) FROM pg_class WHERE relname = 'evil'")),
            )
    return n, total, prods, extra


def test_select_with_row_limit(filled: Registry) -> None:
    browser = SqlBrowser(filled.url)
    r = browser.run("SELECT id, path, size FROM archive_file ORDER BY id", limit=10)
    assert r.columns == ["id", "path", "size"]
    assert len(r.rows) == 10 and r.truncated
    assert r.rows[0][1] == "raw/2026-11-20/x/f000.fits" and r.rows[0][2] == 100
    full = browser.run("SELECT size FROM archive_file", limit=MAX_ROW_LIMIT)
    assert len(full.rows) == N_FILES and not full.truncated
    assert sorted(full.numeric_column("size")) == [100 + i for i in range(N_FILES)]
    csv_text = full.to_csv()
    assert csv_text.splitlines()[0] == "size" and len(csv_text.splitlines()) == N_FILES + 1
    for bad in (0, MAX_ROW_LIMIT + 1):
        with pytest.raises(SqlBrowserError, match="row limit"):
            browser.run("SELECT 1", limit=bad)
    with pytest.raises(SqlBrowserError, match="empty"):
        browser.run("   ")


COMMON_WRITES = [
    "INSERT INTO archive_file (path, size, adler32, md5, state, created) "
    "VALUES ('evil', 1, '0', '0', 'archived', '2026-01-01')",
    "UPDATE archive_file SET size = 0",
    "DELETE FROM archive_file",
    "DROP TABLE archive_file",
    "CREATE TABLE evil (x integer)",
    "ALTER TABLE archive_file ADD COLUMN evil integer",
    "SELECT 1; DELETE FROM archive_file",
    "SELECT count(*) FROM archive_file; DROP TABLE production",
    "WITH gone AS (DELETE FROM archive_file RETURNING id) SELECT count(*) FROM gone",
]
SQLITE_WRITES = [
    "ATTACH DATABASE ':memory:' AS evil",
    "PRAGMA user_version = 42",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA writable_schema = ON",
    "VACUUM",
    "SELECT load_extension('/tmp/evil.so')",
    "BEGIN",
    "CREATE TEMP TABLE evil (x)",
    "REINDEX",
]
PG_WRITES = [
    "SELECT nextval('archive_file_id_seq')",
    "SELECT setval('archive_file_id_seq', 1000)",
    "SELECT set_config('role', 'postgres', false)",
    "SELECT set_config('transaction_read_only', 'off', false)",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT pg_cancel_backend(pg_backend_pid())",
    "SELECT pg_logical_emit_message(false, 'evil', 'x')",
    "SELECT lo_import('/etc/hostname')",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT pg_reload_conf()",
    "COPY archive_file TO STDOUT",
    "ATTACH DATABASE 'x' AS evil",
    "CREATE TEMP TABLE evil (x integer)",
    "SET ROLE postgres",
]


def test_write_attempts_fail_and_change_nothing(filled: Registry) -> None:
    browser = SqlBrowser(filled.url)
    before = _state(filled)
    attempts = COMMON_WRITES + (SQLITE_WRITES if filled.dialect == "sqlite" else PG_WRITES)
    for sql in attempts:
        with pytest.raises(SqlBrowserError) as err:
            browser.run(sql)
        message = str(err.value)
        assert "read-only" in message or "SQL error" in message, (sql, message)
        assert _state(filled) == before, f"state changed after {sql!r}"
    # The browser still works after all that.
    assert browser.run("SELECT count(*) AS n FROM archive_file").rows == [[N_FILES]]


def test_functions_with_effects_undone_on_postgres(filled: Registry) -> None:
    """What a read-only transaction lets through (lo_create, advisory locks, NOTIFY) runs in a
    transaction that is never committed and a connection that is closed: nothing remains."""
    if filled.dialect != "postgresql":
        pytest.skip("PostgreSQL behaviour")
    browser = SqlBrowser(filled.url)
    before = _state(filled)
    browser.run("SELECT lo_create(0)")
    browser.run("SELECT pg_advisory_lock(4242)")
    browser.run("SELECT pg_notify('surveydm', 'x')")
    assert _state(filled) == before
    with filled.session(write=False) as s:
        assert s.scalar(text("SELECT pg_try_advisory_lock(4242)")) is True
    who = browser.run("SELECT current_user, current_setting('transaction_read_only')")
    assert who.rows == [[READER_ROLE, "on"]]


def test_runaway_query_is_stopped(filled: Registry) -> None:
    browser = SqlBrowser(filled.url, time_limit_s=0.5)
    runaway = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    )
    with pytest.raises(QueryTimeout, match="time limit"):
        browser.run(runaway)
    assert browser.run("SELECT 2 AS two").rows == [[2]]


def test_sqlite_in_memory_is_refused() -> None:
    with pytest.raises(SqlBrowserError, match="file-backed"):
        SqlBrowser("sqlite:///:memory:")


def test_postgres_role_itself_cannot_write(filled: Registry) -> None:
    """Below the single-SELECT cursor, the role and its read-only sessions refuse writes too:
    plain statements sent as the reader role fail on privileges or read-only transactions."""
    if filled.dialect != "postgresql":
        pytest.skip("PostgreSQL behaviour")
    import psycopg

    browser = SqlBrowser(filled.url)
    browser.ensure_reader_role()
    url = filled.engine.url
    before = _state(filled)
    for sql in (
        "INSERT INTO production (pipeline, release, software_version, config, config_hash, "
        "created) VALUES ('x', 'x', 'x', '{}', 'x', now())",
        "DELETE FROM archive_file",
        "CREATE TABLE evil (x integer)",
    ):
        denied = (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege)
        with (
            psycopg.connect(
                host=url.host, port=url.port or 5432, dbname=url.database, user=READER_ROLE,
                autocommit=True,
            ) as conn,
            pytest.raises(denied),
        ):  # fmt: skip
            conn.execute(sql)
    assert _state(filled) == before
