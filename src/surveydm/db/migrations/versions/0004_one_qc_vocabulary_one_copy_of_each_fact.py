"""One QC vocabulary and one copy of each nightly fact

* ``product.quality`` and ``mosaic.qc_status`` use the QC vocabulary
  (:class:`surveydm.orchestration.qc.QCResult`): ``ok`` becomes ``pass``, ``bad`` becomes
  ``fail``.
* ``mosaic.mean_psf_fwhm`` is renamed ``median_psf_fwhm`` (it always held the median).
* ``calibration_frame.quality/valid/production_id/job_id`` repeated the frame's product: they are
  dropped after moving any differing value to the product (the worse quality, the human
  invalidation, a production or job the product lacked); a frame without a product gets one.
  ``calibration_frame.product_id`` becomes NOT NULL.
* ``image_zp`` repeated ``image.zp_nightly*``: its values fill the image rows that lack them,
  then the table is dropped.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 09:00:00
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_PRODUCT_QUALITY = ("ok, warn, bad", "worst QC result of the job that made it: pass, warn, fail")
_QC_STATUS = (
    "overall quality control status: ok, warn, bad",
    "worst QC result of the exposure: pass, warn, fail",
)
_PSF = ("mean PSF FWHM over the CCDs, arcsec", "median PSF FWHM over the CCDs, arcsec")
_KIND = (
    "bias, dark, flat, science, test, focus (raw); red_science, master_bias, master_flat (reduced)",
    "bias, dark, flat, science, test, focus (raw); red_science (reduced)",
)
_PRODUCT_ID = (None, "the frame's product: file, production, job, quality and validity")
#: old quality word -> QC result, and back.
_TO_QC = {"ok": "pass", "bad": "fail"}
_FROM_QC = {v: k for k, v in _TO_QC.items()}


def _rename_values(table: str, column: str, mapping: dict[str, str]) -> None:
    for old, new in mapping.items():
        op.get_bind().execute(
            sa.text(f"UPDATE {table} SET {column} = :new WHERE {column} = :old"),
            {"old": old, "new": new},
        )


def _comments(new: int) -> None:
    """Set the column comments of the ``new`` (1) or old (0) schema. SQLite keeps no comments,
    and altering a column there would rebuild ``product`` and ``mosaic``, which other rows
    reference."""
    if op.get_bind().dialect.name == "sqlite":
        return
    old = 1 - new
    for table, column, kind, nullable, comments in (
        ("product", "quality", sa.String(length=16), False, _PRODUCT_QUALITY),
        ("mosaic", "qc_status", sa.String(length=16), True, _QC_STATUS),
        ("mosaic", "median_psf_fwhm", sa.Float(), True, _PSF),  # renamed before / after
        ("mosaic", "kind", sa.String(length=16), False, _KIND),
    ):
        op.alter_column(
            table,
            column,
            existing_type=kind,
            existing_nullable=nullable,
            comment=comments[new],
            existing_comment=comments[old],
        )


def upgrade() -> None:
    _rename_values("product", "quality", _TO_QC)
    _rename_values("mosaic", "qc_status", _TO_QC)
    op.execute("ALTER TABLE mosaic RENAME COLUMN mean_psf_fwhm TO median_psf_fwhm")
    _comments(new=1)
    _calibration_frames_upgrade()
    _image_zp_upgrade()


def _calibration_frames_upgrade() -> None:
    bind = op.get_bind()
    _rename_values("calibration_frame", "quality", _TO_QC)
    # A frame without a product gets one carrying its quality, validity, production and job.
    frame = sa.table(
        "calibration_frame",
        *(sa.column(c, _ID) for c in ("id", "obs_set_id", "production_id", "product_id")),
        sa.column("kind", sa.String()),
        sa.column("quality", sa.String()),
        sa.column("valid", sa.Boolean()),
        sa.column("job_id", sa.BigInteger()),
        sa.column("created", sa.DateTime(timezone=True)),
    )
    obs_set = sa.table("obs_set", sa.column("id", _ID), sa.column("obs_set", sa.String()))
    orphans = bind.execute(
        sa.select(frame, obs_set.c.obs_set)
        .outerjoin(obs_set, obs_set.c.id == frame.c.obs_set_id)
        .where(frame.c.product_id.is_(None))
    ).all()
    product = sa.table(
        "product",
        sa.column("id", _ID),
        sa.column("uuid", sa.Uuid()),
        sa.column("product_type", sa.String()),
        sa.column("data_id", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
        sa.column("production_id", _ID),
        sa.column("job_id", sa.BigInteger()),
        sa.column("quality", sa.String()),
        sa.column("valid", sa.Boolean()),
        sa.column("created", sa.DateTime(timezone=True)),
    )
    for row in orphans:
        new_id = bind.execute(
            sa.insert(product)
            .values(
                uuid=uuid.uuid4(),
                product_type=row.kind,
                data_id={"obs_set": row.obs_set},
                production_id=row.production_id,
                job_id=row.job_id,
                quality=row.quality,
                valid=row.valid,
                created=row.created,
            )
            .returning(product.c.id)
        ).scalar_one()
        bind.execute(
            sa.text("UPDATE calibration_frame SET product_id = :p WHERE id = :c"),
            {"p": new_id, "c": row.id},
        )
    # Where frame and product disagree, the product takes the worse quality, the human
    # invalidation, and the production and job it lacked.
    for sql in (
        "UPDATE product SET quality = 'fail' WHERE id IN (SELECT product_id FROM "
        "calibration_frame WHERE quality = 'fail')",
        "UPDATE product SET quality = 'warn' WHERE quality = 'pass' AND id IN (SELECT product_id "
        "FROM calibration_frame WHERE quality = 'warn')",
        "UPDATE product SET valid = :false WHERE id IN (SELECT product_id FROM "
        "calibration_frame WHERE valid = :false)",
        "UPDATE product SET production_id = (SELECT c.production_id FROM calibration_frame c "
        "WHERE c.product_id = product.id) WHERE production_id IS NULL AND id IN "
        "(SELECT product_id FROM calibration_frame WHERE production_id IS NOT NULL)",
        "UPDATE product SET job_id = (SELECT c.job_id FROM calibration_frame c "
        "WHERE c.product_id = product.id) WHERE job_id IS NULL AND id IN "
        "(SELECT product_id FROM calibration_frame WHERE job_id IS NOT NULL)",
    ):
        bind.execute(sa.text(sql), {"false": False} if ":false" in sql else {})
    with op.batch_alter_table("calibration_frame") as batch_op:
        batch_op.drop_constraint(
            "fk_calibration_frame_production_id_production", type_="foreignkey"
        )
        batch_op.drop_column("quality")
        batch_op.drop_column("valid")
        batch_op.drop_column("production_id")
        batch_op.drop_column("job_id")
        batch_op.alter_column(
            "product_id", existing_type=_ID, nullable=False, comment=_PRODUCT_ID[1]
        )


def _image_zp_upgrade() -> None:
    # The newest image_zp row of an image fills its zp_nightly* columns when they are empty.
    newest = "(SELECT {col} FROM image_zp z WHERE z.image_id = image.id ORDER BY z.id DESC LIMIT 1)"
    sets = ", ".join(
        f"{dst} = {newest.format(col=src)}"
        for dst, src in (
            ("zp_nightly", "zp"),
            ("zp_nightly_err", "zp_error"),
            ("zp_nightly_stars", "n_stars"),
            ("transparency", "COALESCE(z.transparency, image.transparency)"),
        )
    )
    op.get_bind().execute(
        sa.text(
            f"UPDATE image SET {sets} WHERE zp_nightly IS NULL "
            "AND EXISTS (SELECT 1 FROM image_zp z WHERE z.image_id = image.id)"
        )
    )
    with op.batch_alter_table("image_zp") as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_zp_image_id"))
    op.drop_table("image_zp")


def downgrade() -> None:
    op.create_table(
        "image_zp",
        sa.Column("id", _ID, nullable=False),
        sa.Column("image_id", _ID, nullable=False),
        sa.Column("production_id", _ID, nullable=True),
        sa.Column("calib_method", sa.String(length=32), nullable=False, comment="e.g. refcat-aper"),
        sa.Column("refcat", sa.String(length=64), nullable=False),
        sa.Column("zp", sa.Float(), nullable=False, comment="AB mag giving 1 e-/s"),
        sa.Column("zp_error", sa.Float(), nullable=False),
        sa.Column("n_stars", sa.Integer(), nullable=False),
        sa.Column("transparency", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"], ["image.id"], name=op.f("fk_image_zp_image_id_image"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["production_id"], ["production.id"], name=op.f("fk_image_zp_production_id_production")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_zp")),
    )
    with op.batch_alter_table("image_zp") as batch_op:
        batch_op.create_index(batch_op.f("ix_image_zp_image_id"), ["image_id"], unique=False)
    # The reference catalog comes from the image product's lineage (role refcat).
    op.get_bind().execute(
        sa.text(
            "INSERT INTO image_zp (image_id, production_id, calib_method, refcat, zp, zp_error, "
            "n_stars, transparency) SELECT i.id, m.production_id, 'refcat-aperture', "
            "COALESCE((SELECT r.name FROM product_input pi JOIN refcat r "
            "ON r.product_id = pi.input_id WHERE pi.product_id = i.product_id "
            "AND pi.role = 'refcat' ORDER BY r.id LIMIT 1), 'unknown'), i.zp_nightly, "
            "COALESCE(i.zp_nightly_err, 0), COALESCE(i.zp_nightly_stars, 0), i.transparency "
            "FROM image i JOIN mosaic m ON m.id = i.mosaic_id WHERE i.zp_nightly IS NOT NULL "
            "AND m.kind = 'red_science'"
        )
    )
    with op.batch_alter_table("calibration_frame") as batch_op:
        batch_op.add_column(
            sa.Column("quality", sa.String(length=8), nullable=True, comment="ok, warn, bad")
        )
        batch_op.add_column(
            sa.Column("valid", sa.Boolean(), nullable=True, comment="human validity flag")
        )
        batch_op.add_column(sa.Column("production_id", _ID, nullable=True))
        batch_op.add_column(sa.Column("job_id", sa.BigInteger(), nullable=True))
        batch_op.create_foreign_key(
            "fk_calibration_frame_production_id_production",
            "production",
            ["production_id"],
            ["id"],
        )
        batch_op.alter_column(
            "product_id", existing_type=_ID, nullable=True, comment=None,
            existing_comment=_PRODUCT_ID[1],
        )  # fmt: skip
    op.get_bind().execute(
        sa.text(
            "UPDATE calibration_frame SET "
            + ", ".join(
                f"{col} = (SELECT p.{col} FROM product p WHERE p.id = calibration_frame.product_id)"
                for col in ("quality", "valid", "production_id", "job_id")
            )
        )
    )
    _rename_values("calibration_frame", "quality", _FROM_QC)
    with op.batch_alter_table("calibration_frame") as batch_op:
        batch_op.alter_column("quality", existing_type=sa.String(length=8), nullable=False)
        batch_op.alter_column("valid", existing_type=sa.Boolean(), nullable=False)
    _comments(new=0)
    op.execute("ALTER TABLE mosaic RENAME COLUMN median_psf_fwhm TO mean_psf_fwhm")
    _rename_values("product", "quality", _FROM_QC)
    _rename_values("mosaic", "qc_status", _FROM_QC)
