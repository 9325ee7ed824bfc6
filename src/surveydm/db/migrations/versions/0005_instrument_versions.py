"""instrument descriptions kept in the registry

* ``instrument_version``: the YAML text and sha256 of each distinct instrument description
  used, numbered per instrument name.
* ``obs_set.instrument_version_id``: the description an obs set was first registered with;
  every task reads the camera from there. Existing obs sets keep NULL and get theirs on their
  next registration or task (from ``obs_set.instrument`` as it is then).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_FK = "fk_obs_set_instrument_version_id_instrument_version"


def upgrade() -> None:
    op.create_table(
        "instrument_version",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False,
                  comment="instrument name (its name field)"),
        sa.Column("version", sa.Integer(), nullable=False,
                  comment="1, 2, ... in order of first use of each distinct text of that name"),
        sa.Column("sha256", sa.String(64), nullable=False,
                  comment="sha256 of the text, 64 lowercase hex"),
        sa.Column("text", sa.Text(), nullable=False,
                  comment="the instrument description (YAML) as read"),
        sa.Column("source", sa.String(512), nullable=False,
                  comment="where it was read: built-in name or file path"),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False,
                  comment="time recorded (UTC)"),
        sa.PrimaryKeyConstraint("id", name="pk_instrument_version"),
        sa.UniqueConstraint("name", "version", name="uq_instrument_version_name_version"),
        sa.UniqueConstraint("sha256", name="uq_instrument_version_sha256"),
    )  # fmt: skip
    # a native ADD COLUMN on both engines: batch mode on SQLite would copy obs_set, whose
    # children (ON DELETE CASCADE) the copy's DROP TABLE would delete
    column = sa.Column(
        "instrument_version_id",
        _ID,
        nullable=True,
        comment="the description every task of this obs set uses, fixed at first registration",
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE obs_set ADD COLUMN instrument_version_id INTEGER "
            f"CONSTRAINT {_FK} REFERENCES instrument_version (id)"
        )
    else:
        op.add_column("obs_set", column)
        op.create_foreign_key(_FK, "obs_set", "instrument_version",
                              ["instrument_version_id"], ["id"])  # fmt: skip
    op.create_index("ix_obs_set_instrument_version_id", "obs_set", ["instrument_version_id"])


def downgrade() -> None:
    op.drop_index("ix_obs_set_instrument_version_id", table_name="obs_set")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE obs_set DROP COLUMN instrument_version_id")
    else:
        op.drop_constraint(_FK, "obs_set", type_="foreignkey")
        op.drop_column("obs_set", "instrument_version_id")
    op.drop_table("instrument_version")
