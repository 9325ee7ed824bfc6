"""tilings, co-added tiles and tile catalogs (issue 15)

* ``tiling``: named sky tilings; ``tile``: their tiles (centre, size, TAN grid, HEALPix
  coverage).
* ``tile_image``: one co-added tile and band per production (depth, PSF, area, QC).
* ``tile_source``: single- and dual-mode tile catalogs, aperture fluxes as ``double
  precision[]`` on PostgreSQL and JSON arrays on SQLite.

New tables only: existing rows are untouched; the downgrade drops the four tables.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 18:38:49.776078
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tiling",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False, comment="tiling name"),
        sa.Column("size_deg", sa.Float(), nullable=False, comment="tile side, deg"),
        sa.Column("pixel_scale", sa.Float(), nullable=False, comment="arcsec/pixel of the tiles"),
        sa.Column("overlap_deg", sa.Float(), nullable=False, comment="min overlap, deg"),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tiling")),
        sa.UniqueConstraint("name", name=op.f("uq_tiling_name")),
    )
    op.create_table(
        "tile",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "tiling_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.String(length=64), nullable=False, comment="<tiling>-<ring>-<n>"),
        sa.Column("ra", sa.Float(), nullable=False, comment="centre, deg ICRS"),
        sa.Column("dec", sa.Float(), nullable=False, comment="centre, deg ICRS"),
        sa.Column("size_deg", sa.Float(), nullable=False, comment="side, deg"),
        sa.Column("pixel_scale", sa.Float(), nullable=False, comment="arcsec/pixel"),
        sa.Column("naxis1", sa.Integer(), nullable=False, comment="columns"),
        sa.Column("naxis2", sa.Integer(), nullable=False, comment="rows"),
        sa.Column("projection", sa.String(length=8), nullable=False, comment="FITS projection"),
        sa.Column(
            "healpix", sa.BigInteger(), nullable=False, comment="nested HEALPix, order 16, centre"
        ),
        sa.Column(
            "coverage",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
            comment="{'order': k, 'cells': [nested HEALPix cells touched]}",
        ),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tiling_id"], ["tiling.id"], name=op.f("fk_tile_tiling_id_tiling"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tile")),
        sa.UniqueConstraint("name", name=op.f("uq_tile_name")),
    )
    with op.batch_alter_table("tile", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tile_dec_ra"), ["dec", "ra"], unique=False)
        batch_op.create_index(batch_op.f("ix_tile_healpix"), ["healpix"], unique=False)
        batch_op.create_index(batch_op.f("ix_tile_tiling_id"), ["tiling_id"], unique=False)

    op.create_table(
        "tile_image",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tile_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("band", sa.String(length=32), nullable=False, comment="filter name"),
        sa.Column(
            "production_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "product_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            comment="the coadd_sci product (files, lineage)",
        ),
        sa.Column("n_inputs", sa.Integer(), nullable=False, comment="reduced CCD images combined"),
        sa.Column("zp", sa.Float(), nullable=False, comment="AB mag for 1 unit of the co-add"),
        sa.Column("psf_fwhm", sa.Float(), nullable=True, comment="PSF FWHM, arcsec"),
        sa.Column(
            "depth", sa.Float(), nullable=True, comment="5-sigma limiting AB mag in depth_aperture"
        ),
        sa.Column(
            "depth_aperture", sa.Float(), nullable=False, comment="aperture diameter, arcsec"
        ),
        sa.Column(
            "area_fraction",
            sa.Float(),
            nullable=False,
            comment="fraction of the tile in the tile area (exposure > fraction of the max)",
        ),
        sa.Column("exptime_max", sa.Float(), nullable=False, comment="max summed exposure time, s"),
        sa.Column(
            "rejected_fraction",
            sa.Float(),
            nullable=False,
            comment="input pixels rejected / input pixels with data",
        ),
        sa.Column(
            "completeness",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
            comment="{'mag': [...], 'fraction': [...]} from injected point sources",
        ),
        sa.Column("n_sources", sa.Integer(), nullable=False, comment="single-mode sources"),
        sa.Column("quality", sa.String(length=16), nullable=False, comment="worst QC result"),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"], ["product.id"], name=op.f("fk_tile_image_product_id_product")
        ),
        sa.ForeignKeyConstraint(
            ["production_id"],
            ["production.id"],
            name=op.f("fk_tile_image_production_id_production"),
        ),
        sa.ForeignKeyConstraint(
            ["tile_id"], ["tile.id"], name=op.f("fk_tile_image_tile_id_tile"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tile_image")),
        sa.UniqueConstraint("product_id", name=op.f("uq_tile_image_product_id")),
        sa.UniqueConstraint(
            "tile_id",
            "band",
            "production_id",
            name=op.f("uq_tile_image_tile_id_band_production_id"),
        ),
    )
    with op.batch_alter_table("tile_image", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tile_image_production_id"), ["production_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_tile_image_tile_id"), ["tile_id"], unique=False)

    op.create_table(
        "tile_source",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tile_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "production_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "product_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            comment="the catalog product it belongs to",
        ),
        sa.Column("mode", sa.String(length=8), nullable=False, comment="single or dual"),
        sa.Column("band", sa.String(length=32), nullable=False, comment="band measured"),
        sa.Column(
            "detection_band", sa.String(length=32), nullable=False, comment="band detected in"
        ),
        sa.Column(
            "number", sa.Integer(), nullable=False, comment="source number in its catalog (1..n)"
        ),
        sa.Column("x", sa.Float(), nullable=False, comment="tile pixel, 0-based column"),
        sa.Column("y", sa.Float(), nullable=False, comment="tile pixel, 0-based row"),
        sa.Column("ra", sa.Float(), nullable=False, comment="deg, ICRS"),
        sa.Column("dec", sa.Float(), nullable=False, comment="deg, ICRS"),
        sa.Column(
            "healpix", sa.BigInteger(), nullable=False, comment="nested HEALPix index, order 16"
        ),
        sa.Column("a", sa.Float(), nullable=False, comment="semi-major axis, pixels"),
        sa.Column("b", sa.Float(), nullable=False, comment="semi-minor axis, pixels"),
        sa.Column("theta", sa.Float(), nullable=False, comment="position angle, rad"),
        sa.Column("kron_radius", sa.Float(), nullable=False, comment="units of a"),
        sa.Column(
            "aper_diameters",
            sa.JSON().with_variant(postgresql.ARRAY(sa.Float()), "postgresql"),
            nullable=False,
            comment="arcsec",
        ),
        sa.Column(
            "flux_aper",
            sa.JSON().with_variant(postgresql.ARRAY(sa.Float()), "postgresql"),
            nullable=False,
            comment="per aperture",
        ),
        sa.Column(
            "flux_err_aper",
            sa.JSON().with_variant(postgresql.ARRAY(sa.Float()), "postgresql"),
            nullable=False,
        ),
        sa.Column("flux_auto", sa.Float(), nullable=True, comment="Kron flux"),
        sa.Column("flux_err_auto", sa.Float(), nullable=True),
        sa.Column("flux_psf", sa.Float(), nullable=True, comment="PSF-fit flux"),
        sa.Column("flux_err_psf", sa.Float(), nullable=True),
        sa.Column("mag_auto", sa.Float(), nullable=True, comment="AB mag, Kron"),
        sa.Column("mag_psf", sa.Float(), nullable=True, comment="AB mag, PSF fit"),
        sa.Column("flags", sa.Integer(), nullable=False, comment="sep flags | FLAG_* bits"),
        sa.ForeignKeyConstraint(
            ["product_id"], ["product.id"], name=op.f("fk_tile_source_product_id_product")
        ),
        sa.ForeignKeyConstraint(
            ["production_id"],
            ["production.id"],
            name=op.f("fk_tile_source_production_id_production"),
        ),
        sa.ForeignKeyConstraint(
            ["tile_id"], ["tile.id"], name=op.f("fk_tile_source_tile_id_tile"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tile_source")),
    )
    with op.batch_alter_table("tile_source", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tile_source_healpix"), ["healpix"], unique=False)
        batch_op.create_index(batch_op.f("ix_tile_source_product_id"), ["product_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_tile_source_production_id"), ["production_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_tile_source_tile_id_mode_band"),
            ["tile_id", "mode", "band"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("tile_source", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tile_source_tile_id_mode_band"))
        batch_op.drop_index(batch_op.f("ix_tile_source_production_id"))
        batch_op.drop_index(batch_op.f("ix_tile_source_product_id"))
        batch_op.drop_index(batch_op.f("ix_tile_source_healpix"))

    op.drop_table("tile_source")
    with op.batch_alter_table("tile_image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tile_image_tile_id"))
        batch_op.drop_index(batch_op.f("ix_tile_image_production_id"))

    op.drop_table("tile_image")
    with op.batch_alter_table("tile", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tile_tiling_id"))
        batch_op.drop_index(batch_op.f("ix_tile_healpix"))
        batch_op.drop_index(batch_op.f("ix_tile_dec_ra"))

    op.drop_table("tile")
    op.drop_table("tiling")
