"""claim index: the queued jobs in id order

* ``ix_job_queued_id``: a partial index ``ON job (id) WHERE status = 'queued'``. A claim takes
  the oldest ready jobs (``WHERE status = 'queued' ... ORDER BY id LIMIT n``); without it the
  database walks the primary key past every job that already ran (35 ms per claim behind
  16,000 done jobs, growing with the table's history), with it only the queued ones (0.7 ms).
  Existing rows are kept; the index is built from them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    op.create_index(
        "ix_job_queued_id",
        "job",
        ["id"],
        postgresql_where=_QUEUED,
        sqlite_where=_QUEUED,
    )


def downgrade() -> None:
    op.drop_index("ix_job_queued_id", table_name="job")
