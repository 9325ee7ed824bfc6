"""multi-epoch tables: memba forced photometry and DVO-like association

* ``deep_ref_source``: sources of a deep reference catalog (position, half-light ellipse, r
  magnitude) that forced photometry measures at; the catalog is a ``refcat`` row.
* ``memba_ref_cat``: the reference catalog of each memba production (seed 000 table .3).
* ``forced_aperture``: forced aperture measurements per image and reference source.
* ``forced_aperture_coadd``: per source and band, the combined flux.
* ``dvo_object``, ``dvo_object_band``, ``dvo_measure``: detection-to-object association (seed
  004 DVO Average, SecFilt, Measure).

New tables only: existing rows are untouched.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dvo_object",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "production_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "partition", sa.BigInteger(), nullable=False, comment="HEALPix sky partition (nested)"
        ),
        sa.Column("ra", sa.Float(), nullable=False, comment="mean, deg"),
        sa.Column("dec", sa.Float(), nullable=False, comment="mean, deg"),
        sa.Column(
            "healpix", sa.BigInteger(), nullable=False, comment="nested HEALPix index, order 16"
        ),
        sa.Column("ra_error", sa.Float(), nullable=True, comment="arcsec (times cos dec)"),
        sa.Column("dec_error", sa.Float(), nullable=True, comment="arcsec"),
        sa.Column("pmra", sa.Float(), nullable=True, comment="mas/yr, times cos dec"),
        sa.Column("pmdec", sa.Float(), nullable=True, comment="mas/yr"),
        sa.Column("n_detections", sa.Integer(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False, comment="OR of detection flags"),
        sa.ForeignKeyConstraint(
            ["production_id"],
            ["production.id"],
            name=op.f("fk_dvo_object_production_id_production"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dvo_object")),
    )
    op.create_index(op.f("ix_dvo_object_healpix"), "dvo_object", ["healpix"], unique=False)
    op.create_index(
        op.f("ix_dvo_object_production_id_partition"),
        "dvo_object",
        ["production_id", "partition"],
        unique=False,
    )
    op.create_table(
        "forced_aperture_coadd",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "production_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("ref_id", sa.BigInteger(), nullable=False, comment="reference source identifier"),
        sa.Column("band", sa.String(length=32), nullable=False, comment="filter name"),
        sa.Column(
            "healpix", sa.BigInteger(), nullable=False, comment="nested HEALPix index, order 16"
        ),
        sa.Column("flux", sa.Float(), nullable=True, comment="nJy"),
        sa.Column("flux_error", sa.Float(), nullable=True, comment="nJy"),
        sa.Column("chi2", sa.Float(), nullable=True, comment="of the kept measurements"),
        sa.Column("n_coadd", sa.Integer(), nullable=False, comment="measurements combined"),
        sa.Column("n_rejected", sa.Integer(), nullable=False, comment="outliers rejected"),
        sa.Column("run", sa.Integer(), nullable=False, comment="memba run that computed it"),
        sa.ForeignKeyConstraint(
            ["production_id"],
            ["production.id"],
            name=op.f("fk_forced_aperture_coadd_production_id_production"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forced_aperture_coadd")),
        sa.UniqueConstraint(
            "production_id",
            "ref_id",
            "band",
            name=op.f("uq_forced_aperture_coadd_production_id_ref_id_band"),
        ),
    )
    op.create_index(
        op.f("ix_forced_aperture_coadd_healpix"), "forced_aperture_coadd", ["healpix"], unique=False
    )
    op.create_table(
        "dvo_object_band",
        sa.Column(
            "object_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("band", sa.String(length=32), nullable=False),
        sa.Column("n_measurements", sa.Integer(), nullable=False),
        sa.Column("mag", sa.Float(), nullable=True, comment="weighted mean AB mag"),
        sa.Column("mag_error", sa.Float(), nullable=True, comment="mag"),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["dvo_object.id"],
            name=op.f("fk_dvo_object_band_object_id_dvo_object"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("object_id", "band", name=op.f("pk_dvo_object_band")),
    )
    op.create_table(
        "deep_ref_source",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "refcat_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("ref_id", sa.BigInteger(), nullable=False, comment="identifier in the catalog"),
        sa.Column("ra", sa.Float(), nullable=False, comment="deg, ICRS"),
        sa.Column("dec", sa.Float(), nullable=False, comment="deg, ICRS"),
        sa.Column(
            "healpix", sa.BigInteger(), nullable=False, comment="nested HEALPix index, order 16"
        ),
        sa.Column("a", sa.Float(), nullable=False, comment="half-light semi-major axis, arcsec"),
        sa.Column("b", sa.Float(), nullable=False, comment="half-light semi-minor axis, arcsec"),
        sa.Column("theta", sa.Float(), nullable=False, comment="position angle, deg east of north"),
        sa.Column("mag_r", sa.Float(), nullable=True, comment="r AB magnitude"),
        sa.Column("magerr_r", sa.Float(), nullable=True, comment="mag"),
        sa.Column("point_source", sa.Boolean(), nullable=False, comment="star flag"),
        sa.ForeignKeyConstraint(
            ["refcat_id"],
            ["refcat.id"],
            name=op.f("fk_deep_ref_source_refcat_id_refcat"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deep_ref_source")),
        sa.UniqueConstraint(
            "refcat_id", "ref_id", name=op.f("uq_deep_ref_source_refcat_id_ref_id")
        ),
    )
    op.create_index(
        op.f("ix_deep_ref_source_refcat_id_healpix"),
        "deep_ref_source",
        ["refcat_id", "healpix"],
        unique=False,
    )
    op.create_table(
        "memba_ref_cat",
        sa.Column(
            "production_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "refcat_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "ref_cat", sa.String(length=64), nullable=False, comment="reference catalog name"
        ),
        sa.ForeignKeyConstraint(
            ["production_id"],
            ["production.id"],
            name=op.f("fk_memba_ref_cat_production_id_production"),
        ),
        sa.ForeignKeyConstraint(
            ["refcat_id"], ["refcat.id"], name=op.f("fk_memba_ref_cat_refcat_id_refcat")
        ),
        sa.PrimaryKeyConstraint("production_id", name=op.f("pk_memba_ref_cat")),
    )
    op.create_table(
        "forced_aperture",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "production_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("image_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ref_id", sa.BigInteger(), nullable=False, comment="reference source identifier"),
        sa.Column("band", sa.String(length=32), nullable=False, comment="filter name"),
        sa.Column(
            "healpix", sa.BigInteger(), nullable=False, comment="nested HEALPix index, order 16"
        ),
        sa.Column("aperture_x", sa.Float(), nullable=False, comment="centre column, pixel"),
        sa.Column("aperture_y", sa.Float(), nullable=False, comment="centre row, pixel"),
        sa.Column("aperture_a", sa.Float(), nullable=False, comment="semi-major axis, pixel"),
        sa.Column("aperture_b", sa.Float(), nullable=False, comment="semi-minor axis, pixel"),
        sa.Column("aperture_theta", sa.Float(), nullable=False, comment="angle from +x, deg"),
        sa.Column("annulus_a_in", sa.Float(), nullable=False, comment="pixel"),
        sa.Column("annulus_a_out", sa.Float(), nullable=False, comment="pixel"),
        sa.Column("annulus_b_in", sa.Float(), nullable=False, comment="pixel"),
        sa.Column("annulus_b_out", sa.Float(), nullable=False, comment="pixel"),
        sa.Column("annulus_median", sa.Float(), nullable=True, comment="background, e-/pixel"),
        sa.Column("annulus_samples", sa.Integer(), nullable=False, comment="annulus pixels used"),
        sa.Column("annulus_sigma", sa.Float(), nullable=True, comment="robust rms, e-/pixel"),
        sa.Column(
            "aperture_correction", sa.Float(), nullable=False, comment="multiplied into flux"
        ),
        sa.Column("flux", sa.Float(), nullable=True, comment="nJy"),
        sa.Column("flux_error", sa.Float(), nullable=True, comment="nJy"),
        sa.Column("flag", sa.Integer(), nullable=False, comment="OR of mask bits | forced flags"),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["image.id"],
            name=op.f("fk_forced_aperture_image_id_image"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["production_id"],
            ["production.id"],
            name=op.f("fk_forced_aperture_production_id_production"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forced_aperture")),
        sa.UniqueConstraint(
            "production_id",
            "image_id",
            "ref_id",
            name=op.f("uq_forced_aperture_production_id_image_id_ref_id"),
        ),
    )
    op.create_index(
        op.f("ix_forced_aperture_healpix"), "forced_aperture", ["healpix"], unique=False
    )
    op.create_index(
        op.f("ix_forced_aperture_image_id"), "forced_aperture", ["image_id"], unique=False
    )
    op.create_index(
        op.f("ix_forced_aperture_production_id_ref_id_band"),
        "forced_aperture",
        ["production_id", "ref_id", "band"],
        unique=False,
    )
    op.create_table(
        "dvo_measure",
        sa.Column(
            "detection_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "object_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["detection_id"],
            ["detection.id"],
            name=op.f("fk_dvo_measure_detection_id_detection"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["dvo_object.id"],
            name=op.f("fk_dvo_measure_object_id_dvo_object"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("detection_id", "object_id", name=op.f("pk_dvo_measure")),
    )
    op.create_index(op.f("ix_dvo_measure_object_id"), "dvo_measure", ["object_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_dvo_measure_object_id"), table_name="dvo_measure")
    op.drop_table("dvo_measure")
    op.drop_index(
        op.f("ix_forced_aperture_production_id_ref_id_band"), table_name="forced_aperture"
    )
    op.drop_index(op.f("ix_forced_aperture_image_id"), table_name="forced_aperture")
    op.drop_index(op.f("ix_forced_aperture_healpix"), table_name="forced_aperture")
    op.drop_table("forced_aperture")
    op.drop_table("memba_ref_cat")
    op.drop_index(op.f("ix_deep_ref_source_refcat_id_healpix"), table_name="deep_ref_source")
    op.drop_table("deep_ref_source")
    op.drop_table("dvo_object_band")
    op.drop_index(op.f("ix_forced_aperture_coadd_healpix"), table_name="forced_aperture_coadd")
    op.drop_table("forced_aperture_coadd")
    op.drop_index(op.f("ix_dvo_object_production_id_partition"), table_name="dvo_object")
    op.drop_index(op.f("ix_dvo_object_healpix"), table_name="dvo_object")
    op.drop_table("dvo_object")
