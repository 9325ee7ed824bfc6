"""archive_file.md5 may be NULL until the file is first read in full after the transfer

The transfer verifies adler32 while copying; md5 is computed at registration or by the first
``archive verify`` (see :mod:`surveydm.archive.checksum`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 10:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMMENT_OLD = "md5 checksum, 32 lowercase hex"
_COMMENT_NEW = (
    "md5 checksum, 32 lowercase hex; NULL until the file is first read in full after the "
    "transfer (registration or verification)"
)


def upgrade() -> None:
    with op.batch_alter_table("archive_file") as batch_op:
        batch_op.alter_column(
            "md5",
            existing_type=sa.String(length=32),
            nullable=True,
            comment=_COMMENT_NEW,
            existing_comment=_COMMENT_OLD,
        )


def downgrade() -> None:
    # Fails (integrity error) while rows without an md5 exist: run ``archive verify`` first.
    with op.batch_alter_table("archive_file") as batch_op:
        batch_op.alter_column(
            "md5",
            existing_type=sa.String(length=32),
            nullable=False,
            comment=_COMMENT_OLD,
            existing_comment=_COMMENT_NEW,
        )
