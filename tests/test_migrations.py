"""The Alembic migrations build exactly the schema the models declare, on both engines."""

from __future__ import annotations

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
