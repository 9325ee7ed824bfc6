"""The Alembic migrations build exactly the schema the models declare, on both engines."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from typer.testing import CliRunner

from surveydm.db import models  # noqa: F401
from surveydm.db.base import Base
from surveydm.db.migrate import current, head


def test_migrated_schema_matches_models(registry):
    with registry.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], diff
    tables = set(inspect(registry.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert current(registry.url) == head()


def test_db_cli_upgrade_and_current(tmp_path, monkeypatch):
    from surveydm.cli.main import app

    monkeypatch.setenv("SURVEYDM_HOME", str(tmp_path))
    monkeypatch.delenv("SURVEYDM_DATABASE_URL", raising=False)
    runner = CliRunner()
    res = runner.invoke(app, ["db", "current"])
    assert "(empty database)" in res.output
    res = runner.invoke(app, ["db", "upgrade"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["db", "current"])
    assert f"current: {head()}" in res.output


def test_0002_keeps_rows_and_allows_archive_files_without_md5(db_url):
    from alembic import command
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import IntegrityError

    from surveydm.db.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(db_url), "0001")
    engine = create_engine(db_url)
    insert = text(
        "INSERT INTO archive_file (path, size, adler32, md5, state, created) "
        "VALUES (:p, 1, '00000001', :m, 'archived', CURRENT_TIMESTAMP)"
    )
    try:
        with engine.begin() as conn:
            conn.execute(insert, {"p": "raw/a", "m": "0" * 32})
        upgrade(db_url)
        with engine.begin() as conn:
            conn.execute(insert, {"p": "raw/b", "m": None})
            rows = conn.execute(text("SELECT path, md5 FROM archive_file ORDER BY path")).all()
        assert [tuple(r) for r in rows] == [("raw/a", "0" * 32), ("raw/b", None)]
        # Going back needs every md5: refused while one is missing, nothing lost.
        with pytest.raises(IntegrityError):
            command.downgrade(alembic_config(db_url), "0001")
        assert current(db_url) == head()
    finally:
        engine.dispose()
