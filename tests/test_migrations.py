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
        command.downgrade(alembic_config(db_url), "0002")
        with pytest.raises(IntegrityError):
            command.downgrade(alembic_config(db_url), "0001")
        assert current(db_url) == "0002"
        upgrade(db_url)
        assert current(db_url) == head()
    finally:
        engine.dispose()


def test_0003_keeps_job_rows_keys_register_jobs_and_summarises_attempts(db_url):
    """0003 adds job keys, the attempt history and the lost-worker budget without losing a
    row; going back keeps the jobs too."""
    from alembic import command
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import IntegrityError

    from surveydm.db.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(db_url), "0002")
    engine = create_engine(db_url)
    cols = (
        "id, task, name, config, input, status, phase, root_id, parent_id, created, queued, "
        "started, ended, attempts, max_attempts, not_before, worker, host, pid, fault, "
        "quality, valid, wall_time"
    )
    insert = text(
        f"INSERT INTO job ({cols}) VALUES (:id, :task, :name, :config, '{{}}', :status, "
        ":phase, :root, :parent, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :started, :ended, "
        ":attempts, 3, CURRENT_TIMESTAMP, :worker, 'host1', 42, :fault, NULL, :valid, 1.5)"
    )
    now = "2026-11-20 22:00:00"
    jobs = [  # a register root twice for the same obs set (the oldest keeps the key)
        dict(id=1, task="register", name="register A", config='{"obs_set": "A"}',
             status="done", phase="epilog", root=1, parent=None, attempts=1, fault=None),
        dict(id=2, task="register", name="register A", config='{"obs_set": "A"}',
             status="done", phase="prolog", root=2, parent=None, attempts=1, fault=None),
        dict(id=3, task="t_flaky", name="flaky", config="{}", status="failed",
             phase="prolog", root=1, parent=1, attempts=3, fault="RuntimeError: boom"),
        dict(id=4, task="t_record", name="never ran", config="{}", status="queued",
             phase="prolog", root=1, parent=1, attempts=0, fault=None),
        dict(id=5, task="t_record", name="running", config="{}", status="running",
             phase="prolog", root=1, parent=1, attempts=2, fault="lease expired"),
    ]  # fmt: skip
    try:
        with engine.begin() as conn:
            for j in jobs:
                ended = now if j["status"] in ("done", "failed") else None
                conn.execute(
                    insert,
                    {**j, "started": now, "ended": ended, "worker": f"w{j['id']}", "valid": True},
                )
            conn.execute(
                text(
                    "INSERT INTO tag (job_id, name, value, attempt, time) "
                    "VALUES (3, 'traceback', 'Traceback ...', 3, CURRENT_TIMESTAMP)"
                )
            )
        upgrade(db_url)
        with engine.begin() as conn:
            rows = conn.execute(
                text("SELECT id, key, attempts, lost, max_lost, claimed FROM job ORDER BY id")
            ).all()
            attempts = conn.execute(
                text(
                    "SELECT job_id, attempt, phase, worker, outcome, fault, wall_time "
                    "FROM job_attempt ORDER BY job_id"
                )
            ).all()
        assert [(r.id, r.key, r.attempts, r.lost, r.max_lost) for r in rows] == [
            (1, "obs_set=A;production=None", 1, 0, 5),
            (2, None, 1, 0, 5),
            (3, None, 3, 0, 5),
            (4, None, 0, 0, 5),
            (5, None, 2, 0, 5),
        ]
        assert rows[4].claimed is not None and rows[0].claimed is None  # the claim under way
        with engine.begin() as conn:  # rows referring to jobs (ON DELETE CASCADE) survive
            assert conn.execute(text("SELECT job_id FROM tag")).scalars().all() == [3]
        assert [tuple(a) for a in attempts] == [
            (1, 1, "epilog", "w1", "migrated", None, 1.5),
            (2, 1, "prolog", "w2", "migrated", None, 1.5),
            (3, 3, "prolog", "w3", "migrated", "RuntimeError: boom", 1.5),
            (5, 1, "prolog", "w5", "migrated", "lease expired", 1.5),  # before the running one
        ]
        # keys are unique per task type
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("UPDATE job SET key = 'obs_set=A;production=None' WHERE id = 2"))
        # back to 0002: every job kept, a done_partial job becomes done
        with engine.begin() as conn:
            conn.execute(text("UPDATE job SET status = 'done_partial' WHERE id = 1"))
        command.downgrade(alembic_config(db_url), "0002")
        with engine.begin() as conn:
            back = conn.execute(text("SELECT id, status FROM job ORDER BY id")).all()
        assert [tuple(r) for r in back] == [
            (1, "done"), (2, "done"), (3, "failed"), (4, "queued"), (5, "running")
        ]  # fmt: skip
        with engine.begin() as conn:
            assert conn.execute(text("SELECT job_id FROM tag")).scalars().all() == [3]
        upgrade(db_url)
        assert current(db_url) == head()
    finally:
        engine.dispose()
