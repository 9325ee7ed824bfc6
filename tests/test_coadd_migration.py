"""Migration 0008 adds the tiling, tile, tile_image and tile_source tables on both engines,
keeps existing rows, and stores aperture arrays (PostgreSQL arrays, SQLite JSON)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, select, text

from surveydm.db.migrate import alembic_config, current, head, upgrade


def test_0008_adds_tile_tables_and_keeps_rows(db_url):
    command.downgrade(alembic_config(db_url), "0005")
    engine = create_engine(db_url)
    try:
        assert "tile" not in inspect(engine).get_table_names()
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO archive_file (path, size, adler32, md5, state, created) "
                    "VALUES ('raw/a', 1, '00000001', NULL, 'archived', CURRENT_TIMESTAMP)"
                )
            )
        upgrade(db_url)
        assert current(db_url) == head()
        names = set(inspect(engine).get_table_names())
        assert {"tiling", "tile", "tile_image", "tile_source"} <= names
        with engine.begin() as conn:
            assert conn.execute(text("SELECT path FROM archive_file")).scalar_one() == "raw/a"
        command.downgrade(alembic_config(db_url), "0005")
        assert "tile_source" not in inspect(engine).get_table_names()
        with engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM archive_file")).scalar_one() == 1
        upgrade(db_url)
    finally:
        engine.dispose()


def test_aperture_arrays_round_trip(registry):
    from surveydm.db.models.production import Product
    from surveydm.db.models.tiles import Tile, TileSource, Tiling

    with registry.session() as s:
        tiling = Tiling(name="t", size_deg=0.1, pixel_scale=0.5)
        s.add(tiling)
        s.flush()
        tile = Tile(tiling_id=tiling.id, name="t-000-000", ra=1.0, dec=2.0, size_deg=0.1,
                    pixel_scale=0.5, naxis1=720, naxis2=720, healpix=5)  # fmt: skip
        prod = Product(product_type="coadd_cat_single", data_id={"tile": "t-000-000"})
        s.add_all([tile, prod])
        s.flush()
        s.add(TileSource(tile_id=tile.id, product_id=prod.id, mode="single", band="r",
                         detection_band="r", number=1, x=1.0, y=2.0, ra=1.0, dec=2.0,
                         healpix=5, a=1.0, b=1.0, theta=0.0, kron_radius=3.5,
                         aper_diameters=[1.0, 3.0], flux_aper=[10.5, None],
                         flux_err_aper=[1.0, None], flags=0))  # fmt: skip
    with registry.session(write=False) as s:
        row = s.scalar(select(TileSource))
        assert row.flux_aper == [10.5, None] and row.aper_diameters == [1.0, 3.0]
