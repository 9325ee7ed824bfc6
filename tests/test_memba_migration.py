"""Migration 0007 (multi-epoch tables) on SQLite and PostgreSQL: it adds the memba and
association tables, keeps existing rows, and its downgrade removes only what it added."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, text

from surveydm.db.migrate import alembic_config, upgrade

NEW = {"deep_ref_source", "memba_ref_cat", "forced_aperture", "forced_aperture_coadd",
       "dvo_object", "dvo_object_band", "dvo_measure"}  # fmt: skip


def test_0007_adds_the_multiepoch_tables_and_keeps_rows(db_url):
    command.downgrade(alembic_config(db_url), "0005")
    engine = create_engine(db_url)
    try:
        assert not NEW & set(inspect(engine).get_table_names())
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO refcat (name, epoch, bands, n_sources, created) "
                    "VALUES ('deep', 2016.0, 'r', 0, CURRENT_TIMESTAMP)"
                )
            )
        upgrade(db_url)
        assert set(inspect(engine).get_table_names()) >= NEW
        cols = {c["name"] for c in inspect(engine).get_columns("forced_aperture")}
        assert {"aperture_a", "annulus_b_out", "annulus_median", "flux_error", "healpix",
                "production_id", "image_id", "ref_id"} <= cols  # fmt: skip
        with engine.begin() as conn:
            assert conn.execute(text("SELECT name FROM refcat")).scalars().all() == ["deep"]
        command.downgrade(alembic_config(db_url), "0005")
        assert not NEW & set(inspect(engine).get_table_names())
        with engine.begin() as conn:
            assert conn.execute(text("SELECT name FROM refcat")).scalars().all() == ["deep"]
    finally:
        engine.dispose()
