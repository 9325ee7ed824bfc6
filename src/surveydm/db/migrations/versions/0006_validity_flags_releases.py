"""validity flags with history, data releases and errata

* ``product.validity``: the human validity flag, ``bad``/``ok``/``qualified`` (seed 003
  ``is_valid`` 0/1/2); existing rows get ``bad`` where ``valid`` was false, else ``ok``.
* ``validity_flag``: every change of it (who, when, why; an undo names what it undoes).
* ``data_release``, ``release_production``, ``erratum``: frozen data releases.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    # a native ADD COLUMN on both engines (batch mode on SQLite would copy product)
    op.add_column(
        "product",
        sa.Column("validity", sa.String(16), nullable=False, server_default="ok",
                  comment="human validity flag: bad, ok or qualified (valid = not bad)"),
    )  # fmt: skip
    op.execute("UPDATE product SET validity = 'bad' WHERE NOT valid")
    op.create_table(
        "validity_flag",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("product_id", _ID, nullable=False, comment="product flagged"),
        sa.Column("validity", sa.String(16), nullable=False, comment="bad, ok or qualified (set)"),
        sa.Column("previous", sa.String(16), nullable=False, comment="the flag it replaced"),
        sa.Column("reason", sa.Text(), nullable=False, comment="why, in the author's words"),
        sa.Column("author", sa.String(128), nullable=False, comment="who set it"),
        sa.Column("time", _WHEN, nullable=False, comment="when it was set (UTC)"),
        sa.Column("undoes_id", _ID, nullable=True,
                  comment="the change this row undoes, if an undo"),
        sa.PrimaryKeyConstraint("id", name="pk_validity_flag"),
        sa.ForeignKeyConstraint(["product_id"], ["product.id"],
                                name="fk_validity_flag_product_id_product"),
        sa.ForeignKeyConstraint(["undoes_id"], ["validity_flag.id"],
                                name="fk_validity_flag_undoes_id_validity_flag"),
    )  # fmt: skip
    op.create_index("ix_validity_flag_product_id", "validity_flag", ["product_id"])
    op.create_table(
        "data_release",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, comment="release name, e.g. DR1"),
        sa.Column("notes", sa.Text(), nullable=False, comment="generated release notes"),
        sa.Column("author", sa.String(128), nullable=False, comment="who froze it"),
        sa.Column("created", _WHEN, nullable=False, comment="when it was frozen (UTC)"),
        sa.PrimaryKeyConstraint("id", name="pk_data_release"),
        sa.UniqueConstraint("name", name="uq_data_release_name"),
    )
    op.create_table(
        "release_production",
        sa.Column("release_id", _ID, nullable=False),
        sa.Column("production_id", _ID, nullable=False),
        sa.PrimaryKeyConstraint("release_id", "production_id", name="pk_release_production"),
        sa.ForeignKeyConstraint(["release_id"], ["data_release.id"],
                                name="fk_release_production_release_id_data_release"),
        sa.ForeignKeyConstraint(["production_id"], ["production.id"],
                                name="fk_release_production_production_id_production"),
    )  # fmt: skip
    op.create_index("ix_release_production_production_id", "release_production", ["production_id"])
    op.create_table(
        "erratum",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("release_id", _ID, nullable=False),
        sa.Column("product_id", _ID, nullable=False),
        sa.Column("flag_id", _ID, nullable=False),
        sa.Column("text", sa.Text(), nullable=False, comment="what changed and why"),
        sa.Column("created", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_erratum"),
        sa.ForeignKeyConstraint(["release_id"], ["data_release.id"],
                                name="fk_erratum_release_id_data_release"),
        sa.ForeignKeyConstraint(["product_id"], ["product.id"],
                                name="fk_erratum_product_id_product"),
        sa.ForeignKeyConstraint(["flag_id"], ["validity_flag.id"],
                                name="fk_erratum_flag_id_validity_flag"),
    )  # fmt: skip
    op.create_index("ix_erratum_release_id", "erratum", ["release_id"])


def downgrade() -> None:
    op.drop_table("erratum")
    op.drop_table("release_production")
    op.drop_table("data_release")
    op.drop_table("validity_flag")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE product DROP COLUMN validity")
    else:
        op.drop_column("product", "validity")
