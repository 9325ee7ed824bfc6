"""job keys, attempt history, lost workers counted apart, done_partial

- ``job.key`` (unique per task type with ``ix_job_task_key``): jobs are found by the identity
  of their work, not by display name. Existing top-level ``register`` jobs get the key
  ``surveydm night`` gives them (``obs_set=...;production=...``; the oldest wins if two exist).
- ``job.claimed`` (start of the current claim), ``job.lost`` / ``job.max_lost`` (claims whose
  worker was lost, bounded apart from the fault budget; existing jobs: 0 and 5).
- ``job_attempt``: one row per claim. Earlier attempts were not recorded one by one (the job
  row kept their count, the last worker and the last fault): each job that ran gets one
  ``migrated`` summary row with those, and ``job.attempts`` keeps the count.
- ``job.status`` may be ``done_partial`` (comment only: the column is a string).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS_OLD = "pending, queued, running, waiting, done, failed, failed_quality, skipped, aborted"
_STATUS_NEW = (
    "pending, queued, running, waiting, done, done_partial, failed, failed_quality, "
    "skipped, aborted"
)
_MAX_ATTEMPTS_OLD = "claims allowed before a fault is final"
_MAX_ATTEMPTS_NEW = "claims not lost (faults + 1) allowed before a fault is final"

_job = sa.table(
    "job",
    sa.column("id", sa.BigInteger),
    sa.column("task", sa.String),
    sa.column("key", sa.String),
    sa.column("config", sa.JSON),
    sa.column("parent_id", sa.BigInteger),
    sa.column("production_id", sa.BigInteger),
    sa.column("status", sa.String),
    sa.column("phase", sa.String),
    sa.column("attempts", sa.Integer),
    sa.column("worker", sa.String),
    sa.column("host", sa.String),
    sa.column("pid", sa.Integer),
    sa.column("created", sa.DateTime(timezone=True)),
    sa.column("queued", sa.DateTime(timezone=True)),
    sa.column("started", sa.DateTime(timezone=True)),
    sa.column("claimed", sa.DateTime(timezone=True)),
    sa.column("ended", sa.DateTime(timezone=True)),
    sa.column("fault", sa.Text),
    sa.column("quality", sa.Text),
    sa.column("wall_time", sa.Float),
)
_attempt = sa.table(
    "job_attempt",
    *(
        sa.column(c)
        for c in (
            "job_id",
            "attempt",
            "phase",
            "worker",
            "host",
            "pid",
            "started",
            "ended",
            "outcome",
            "fault",
            "wall_time",
        )
    ),
)


def _comments(status: str, max_attempts: str, old_status: str, old_max: str) -> None:
    """Column comments exist on PostgreSQL only. (On SQLite, changing one would make a batch
    operation rebuild ``job``, and dropping the old table cascades to every row that refers to
    it: sub-jobs, tags, QC rows. Every change to ``job`` here is native on SQLite.)"""
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column(
        "job",
        "status",
        existing_type=sa.String(length=16),
        existing_nullable=False,
        comment=status,
        existing_comment=old_status,
    )
    op.alter_column(
        "job",
        "max_attempts",
        existing_type=sa.Integer(),
        existing_nullable=False,
        comment=max_attempts,
        existing_comment=old_max,
    )


def upgrade() -> None:
    # plain ALTER TABLE ... ADD COLUMN on both engines (no batch rebuild of ``job``)
    op.add_column(
        "job",
        sa.Column(
            "key",
            sa.String(length=256),
            nullable=True,
            comment="identity of the job's work, unique per task (e.g. its data ID)",
        ),
    )
    op.add_column(
        "job",
        sa.Column(
            "claimed",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="when the current claim began",
        ),
    )
    op.add_column(
        "job",
        sa.Column(
            "lost",
            sa.Integer(),
            server_default="0",
            nullable=False,
            comment="claims of the current phase whose worker was lost",
        ),
    )
    op.add_column(
        "job",
        sa.Column(
            "max_lost",
            sa.Integer(),
            server_default="5",
            nullable=False,
            comment="lost workers allowed before the job fails",
        ),
    )
    _comments(_STATUS_NEW, _MAX_ATTEMPTS_NEW, _STATUS_OLD, _MAX_ATTEMPTS_OLD)
    op.create_table(
        "job_attempt",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "job_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            comment="job it belongs to",
        ),
        sa.Column(
            "attempt", sa.Integer(), nullable=False, comment="job.attempts when it was claimed"
        ),
        sa.Column("phase", sa.String(length=8), nullable=False, comment="prolog or epilog"),
        sa.Column("worker", sa.String(length=128), nullable=True, comment="pilot that ran it"),
        sa.Column("host", sa.String(length=128), nullable=True, comment="host of that pilot"),
        sa.Column("pid", sa.Integer(), nullable=True, comment="process id of that pilot"),
        sa.Column(
            "started", sa.DateTime(timezone=True), nullable=True, comment="when it was claimed"
        ),
        sa.Column("ended", sa.DateTime(timezone=True), nullable=True, comment="when it ended"),
        sa.Column(
            "outcome",
            sa.String(length=16),
            nullable=False,
            comment="ok, fault, quality, lost, aborted (or migrated: a summary)",
        ),
        sa.Column("fault", sa.Text(), nullable=True, comment="error or quality failure text"),
        sa.Column("wall_time", sa.Float(), nullable=True, comment="seconds it executed"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name=op.f("fk_job_attempt_job_id_job"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_attempt")),
    )
    op.create_index(op.f("ix_job_attempt_job_id"), "job_attempt", ["job_id"], unique=False)
    _backfill_keys()
    _summarise_attempts()
    op.create_index(op.f("ix_job_task_key"), "job", ["task", "key"], unique=True)


def _backfill_keys() -> None:
    """Top-level ``register`` jobs: the key ``surveydm night`` now submits them with (the same
    format as ``surveydm.orchestration.job_key``, frozen here)."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_job.c.id, _job.c.config, _job.c.production_id)
        .where(_job.c.task == "register", _job.c.parent_id.is_(None))
        .order_by(_job.c.id)
    ).all()
    seen: set[str] = set()
    for job_id, config, production_id in rows:
        obs_set = (config or {}).get("obs_set")
        if not obs_set or ";" in str(obs_set):
            continue
        key = f"obs_set={obs_set};production={production_id}"
        if key in seen:
            continue  # a second job for the same work: the oldest keeps the key
        seen.add(key)
        conn.execute(sa.update(_job).where(_job.c.id == job_id).values(key=key))


def _summarise_attempts() -> None:
    """One ``migrated`` attempt row per job that was claimed: its last worker and fault, its
    summed wall time; the number of attempts stays in ``job.attempts``."""
    conn = op.get_bind()
    running = _job.c.status == "running"
    conn.execute(
        sa.update(_job)
        .where(running)
        .values(claimed=sa.func.coalesce(_job.c.started, _job.c.created))
    )
    attempt = sa.case((running, _job.c.attempts - 1), else_=_job.c.attempts)
    ended = sa.case((running, None), else_=sa.func.coalesce(_job.c.ended, _job.c.queued))
    conn.execute(
        sa.insert(_attempt).from_select(
            [c.name for c in _attempt.columns],
            sa.select(
                _job.c.id,
                attempt,
                _job.c.phase,
                _job.c.worker,
                _job.c.host,
                _job.c.pid,
                _job.c.started,
                ended,
                sa.literal("migrated"),
                sa.func.coalesce(_job.c.quality, _job.c.fault),
                _job.c.wall_time,
            ).where(attempt > 0),
        )
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_job_task_key"), table_name="job")
    op.drop_index(op.f("ix_job_attempt_job_id"), table_name="job_attempt")
    op.drop_table("job_attempt")
    # done_partial had no meaning before: such jobs become done (their sub-jobs keep theirs).
    op.execute(sa.update(_job).where(_job.c.status == "done_partial").values(status="done"))
    _comments(_STATUS_OLD, _MAX_ATTEMPTS_OLD, _STATUS_NEW, _MAX_ATTEMPTS_NEW)
    # plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): no batch rebuild of ``job``
    for column in ("max_lost", "lost", "claimed", "key"):
        op.drop_column("job", column)
