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


def test_0004_keeps_rows_in_one_qc_vocabulary_and_one_copy_of_each_fact(db_url):
    """0004 maps ok/bad to pass/fail, renames mean_psf_fwhm, moves calibration-frame quality and
    validity into their product (creating one where missing) and image_zp into image, and
    goes back without losing them."""
    import uuid
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import MetaData, create_engine, insert, text

    from surveydm.db.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(db_url), "0002")
    engine = create_engine(db_url)
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    sqlite = engine.dialect.name == "sqlite"
    old = MetaData()
    old.reflect(engine)
    t = old.tables

    def add(conn, table: str, **values) -> int:  # noqa: ANN001
        if "uuid" in t[table].c:
            values["uuid"] = uuid.uuid4().hex if sqlite else uuid.uuid4()
        if "created" in t[table].c:
            values.setdefault("created", now)
        return conn.execute(insert(t[table]).values(**values).returning(t[table].c.id)).scalar()

    try:
        with engine.begin() as conn:
            obs = add(conn, "obs_set", obs_set="20261120_001", night=now.date(),
                      instrument="paucam-mini", manifest={}, n_files=0)  # fmt: skip
            prod = add(conn, "production", pipeline="nightly", release="r1",
                       software_version="0", config={}, config_hash="h")  # fmt: skip
            p_ok = add(conn, "product", product_type="master_bias", data_id={}, quality="ok",
                       valid=True)  # fmt: skip
            p_bad = add(conn, "product", product_type="reduced_sci", data_id={}, quality="bad",
                        valid=True)  # fmt: skip
            frame = dict(instrument="paucam-mini", night="2026-11-20", obs_set_id=obs,
                         valid_from=now, valid_until=now, n_input=3, stats={})  # fmt: skip
            # the frame says warn and invalid, its product ok and valid: the product learns both
            add(conn, "calibration_frame", kind="master_bias", quality="warn", valid=False,
                product_id=p_ok, production_id=prod, job_id=7, **frame)  # fmt: skip
            # a frame without a product gets one
            orphan = add(conn, "calibration_frame", kind="master_flat", quality="bad",
                         valid=True, production_id=prod, job_id=8, **frame)  # fmt: skip
            red = add(conn, "mosaic", obs_set_id=obs, kind="red_science", filename="a.fits",
                      qc_status="ok", mean_psf_fwhm=1.25, production_id=prod)  # fmt: skip
            bad = add(conn, "mosaic", obs_set_id=obs, kind="red_science", filename="b.fits",
                      qc_status="bad")  # fmt: skip
            no_zp = add(conn, "image", mosaic_id=red, ccd_num=1, product_id=p_bad)
            has_zp = add(conn, "image", mosaic_id=red, ccd_num=2, zp_nightly=25.5,
                         zp_nightly_err=0.01, zp_nightly_stars=40)  # fmt: skip
            for image_id, zp in ((no_zp, 25.1), (no_zp, 25.2), (has_zp, 99.0)):
                add(conn, "image_zp", image_id=image_id, production_id=prod,
                    calib_method="refcat-aperture", refcat="pixelsim", zp=zp, zp_error=0.02,
                    n_stars=30, transparency=0.9)  # fmt: skip

        upgrade(db_url)
        assert current(db_url) == head()
        with engine.begin() as conn:
            quality = dict(conn.execute(text("SELECT id, quality FROM product")).all())
            assert quality[p_ok] == "warn" and quality[p_bad] == "fail"
            valid = dict(conn.execute(text("SELECT id, valid FROM product")).all())
            assert not valid[p_ok] and valid[p_bad]
            new = conn.execute(
                text(
                    "SELECT p.product_type, p.quality, p.valid, p.production_id, p.job_id "
                    "FROM calibration_frame c JOIN product p ON p.id = c.product_id "
                    "WHERE c.id = :c"
                ),
                {"c": orphan},
            ).one()
            assert tuple(new) == ("master_flat", "fail", True, prod, 8)
            assert dict(conn.execute(text("SELECT id, qc_status FROM mosaic")).all()) == {
                red: "pass",
                bad: "fail",
            }
            assert (
                conn.execute(
                    text("SELECT median_psf_fwhm FROM mosaic WHERE id = :m"), {"m": red}
                ).scalar()
                == 1.25
            )
            zps = dict(conn.execute(text("SELECT id, zp_nightly FROM image")).all())
            assert zps == {no_zp: 25.2, has_zp: 25.5}  # the newest image_zp; image's own kept
        assert "image_zp" not in inspect(engine).get_table_names()
        cols = {c["name"] for c in inspect(engine).get_columns("calibration_frame")}
        assert not cols & {"quality", "valid", "production_id", "job_id"}

        command.downgrade(alembic_config(db_url), "0002")
        with engine.begin() as conn:
            frames = conn.execute(
                text("SELECT kind, quality, valid, production_id FROM calibration_frame")
            ).all()
            assert sorted((k, q, bool(v), p) for k, q, v, p in frames) == [
                ("master_bias", "warn", False, prod),  # the product learnt it in the upgrade
                ("master_flat", "bad", True, prod),
            ]
            assert conn.execute(
                text("SELECT mean_psf_fwhm, qc_status FROM mosaic WHERE id = :m"), {"m": red}
            ).one() == (1.25, "ok")
            assert conn.execute(text("SELECT count(*) FROM image_zp")).scalar() == 2
        upgrade(db_url)
        assert current(db_url) == head()
    finally:
        engine.dispose()
