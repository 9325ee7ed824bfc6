"""Registry models of the job system (seed 000 section 6.2 and table .4, BrownThrower; seed 004
section 2.1, the Pan-STARRS processing database).

Every job, past and present, stays in ``job`` with its configuration, input, output, status,
times, attempts and the worker that ran it, so operations can be audited and accounted for.

- ``job.parent_id`` is the super-job that created it (in its prolog or epilog) and
  ``job.root_id`` the top of its tree, so the progress of a whole tree is one
  ``GROUP BY status`` on an index. A super-job's progress is *derived* by that aggregate; no
  status is cascaded row by row to parents (BrownThrower's hot lock, seed 000 section 9).
- ``fault`` (a transient error: retried with back-off) is kept apart from ``quality`` (the job
  ran but the data is bad: not retried, its dependants are skipped), and both apart from the
  human validity flag ``valid`` (seed 003: system quality flags versus the user's ``is_valid``).
- ``job_attempt`` keeps every claim of a job (worker, phase, start, end, outcome, fault), so
  the history survives retries; a lost worker (``lost``) is counted apart from faults.
- ``dependency`` orders jobs within one super-job (``super_id``); ``tag`` holds logs,
  tracebacks and any name/value pair; ``quality_control`` holds measured QC checks.

Status values and their meaning are in :mod:`surveydm.orchestration.status`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from surveydm.db.base import Base, BigIntPK, utcnow


class Job(Base):
    """One unit of work of a task type, possibly a super-job with sub-jobs."""

    __tablename__ = "job"
    __table_args__ = (
        # The claim query: status = 'queued' [AND task IN (...)] AND not_before <= now.
        Index(None, "status", "task", "not_before"),
        # ... ORDER BY id LIMIT n: the queued jobs alone in id order (partial index), so a claim
        # never walks past the jobs that already ran (migration 0009).
        Index(
            "ix_job_queued_id",
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        # Expired-lease sweep: status = 'running' AND lease_expires < now.
        Index(None, "status", "lease_expires"),
        # Sub-job lookups and the derived progress of a super-job / a whole tree.
        Index(None, "parent_id", "status"),
        Index(None, "root_id", "status"),
        # Accounting and `jobs list --since`.
        Index(None, "task", "created"),
        # One job per task type and key (NULL keys are not constrained, on both engines).
        Index(None, "task", "key", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    task: Mapped[str] = mapped_column(String(64), comment="task type (registered Task.name)")
    name: Mapped[str] = mapped_column(String(256), default="", comment="human-readable job name")
    key: Mapped[str | None] = mapped_column(
        String(256), comment="identity of the job's work, unique per task (e.g. its data ID)"
    )
    config: Mapped[dict[str, Any]] = mapped_column(default=dict, comment="task configuration")
    input: Mapped[dict[str, Any]] = mapped_column(default=dict, comment="task input (data IDs)")
    output: Mapped[dict[str, Any] | None] = mapped_column(comment="task output (run's result)")
    status: Mapped[str] = mapped_column(
        String(16),
        default="queued",
        comment="pending, queued, running, waiting, done, done_partial, failed, failed_quality, "
        "skipped, aborted",
    )
    phase: Mapped[str] = mapped_column(
        String(8),
        default="prolog",
        comment="next step when claimed: prolog (prolog+run+epilog) or epilog (after sub-jobs)",
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), comment="super-job that created this job"
    )
    root_id: Mapped[int | None] = mapped_column(
        BigInteger, comment="top job of this job's tree (itself for a root)"
    )
    production_id: Mapped[int | None] = mapped_column(
        ForeignKey("production.id"), index=True, comment="production the job works for"
    )
    created: Mapped[datetime] = mapped_column(default=utcnow, comment="when it was created")
    queued: Mapped[datetime | None] = mapped_column(comment="when it last became ready")
    started: Mapped[datetime | None] = mapped_column(comment="when it was first claimed")
    claimed: Mapped[datetime | None] = mapped_column(comment="when the current claim began")
    ended: Mapped[datetime | None] = mapped_column(comment="when it reached a final status")
    attempts: Mapped[int] = mapped_column(
        Integer, default=0, comment="claims of the current phase (faults + lost workers + 1)"
    )
    max_attempts: Mapped[int] = mapped_column(
        Integer, default=3, comment="claims not lost (faults + 1) allowed before a fault is final"
    )
    lost: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        comment="claims of the current phase whose worker was lost",
    )
    max_lost: Mapped[int] = mapped_column(
        Integer, default=5, server_default="5", comment="lost workers allowed before the job fails"
    )
    not_before: Mapped[datetime] = mapped_column(
        default=utcnow, comment="not claimable before this time (retry back-off)"
    )
    worker: Mapped[str | None] = mapped_column(String(128), comment="pilot that ran it last")
    host: Mapped[str | None] = mapped_column(String(128), comment="host of that pilot")
    pid: Mapped[int | None] = mapped_column(Integer, comment="process id of that pilot")
    token: Mapped[str | None] = mapped_column(String(32), comment="claim token of the lease")
    lease_expires: Mapped[datetime | None] = mapped_column(
        comment="claim lapses (job re-queued) unless a heartbeat renews it before this time"
    )
    fault: Mapped[str | None] = mapped_column(Text, comment="last transient error (retried)")
    quality: Mapped[str | None] = mapped_column(
        Text, comment="quality failure: the data is bad (not retried, dependants skipped)"
    )
    reason: Mapped[str | None] = mapped_column(Text, comment="why a job was skipped or aborted")
    valid: Mapped[bool] = mapped_column(default=True, comment="human validity flag")
    wall_time: Mapped[float] = mapped_column(
        Float, default=0.0, comment="seconds spent executing, summed over attempts and phases"
    )


class JobAttempt(Base):
    """One claim of a job and how it ended (written when it ends, by whoever ends it: the
    worker, the sweep that finds its lease expired, or an abort). Kept for good: a retry resets
    the job's budget, never its history."""

    __tablename__ = "job_attempt"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), index=True, comment="job it belongs to"
    )
    attempt: Mapped[int] = mapped_column(Integer, comment="job.attempts when it was claimed")
    phase: Mapped[str] = mapped_column(String(8), comment="prolog or epilog")
    worker: Mapped[str | None] = mapped_column(String(128), comment="pilot that ran it")
    host: Mapped[str | None] = mapped_column(String(128), comment="host of that pilot")
    pid: Mapped[int | None] = mapped_column(Integer, comment="process id of that pilot")
    started: Mapped[datetime | None] = mapped_column(comment="when it was claimed")
    ended: Mapped[datetime | None] = mapped_column(comment="when it ended")
    outcome: Mapped[str] = mapped_column(
        String(16), comment="ok, fault, quality, lost, aborted (or migrated: a summary)"
    )
    fault: Mapped[str | None] = mapped_column(Text, comment="error or quality failure text")
    wall_time: Mapped[float | None] = mapped_column(Float, comment="seconds it executed")


class Dependency(Base):
    """Ordering edge: ``child_id`` runs only after ``parent_id`` ended ``done``.

    Both jobs belong to the super-job ``super_id`` (seed 000 table .4 ``dependency``).
    """

    __tablename__ = "dependency"

    parent_id: Mapped[int] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), primary_key=True, comment="job run first"
    )
    child_id: Mapped[int] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
        comment="job that waits for parent_id",
    )
    super_id: Mapped[int | None] = mapped_column(
        BigInteger, index=True, comment="super-job both belong to"
    )


class Tag(Base):
    """A name/value pair attached to a job: logs, tracebacks, anything (seed 000 table .4)."""

    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), index=True, comment="job it belongs to"
    )
    name: Mapped[str] = mapped_column(String(64), comment="log, traceback, or any name")
    value: Mapped[str] = mapped_column(Text, default="", comment="text value")
    attempt: Mapped[int | None] = mapped_column(Integer, comment="attempt that wrote it")
    time: Mapped[datetime] = mapped_column(default=utcnow, comment="when it was recorded")


class QualityControl(Base):
    """One quality-control check measured by a job (seed 000 table .4 ``quality_control``).

    ``result`` is ``fail`` when ``value`` lies outside [``min_value``, ``max_value``], ``warn``
    when outside [``warn_min``, ``warn_max``], else ``pass``; ``qc_pass`` is ``result != fail``.
    """

    __tablename__ = "quality_control"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), index=True, comment="job that measured it"
    )
    check_name: Mapped[str] = mapped_column(String(64), comment="name of the check")
    description: Mapped[str] = mapped_column(Text, default="", comment="what is measured")
    value: Mapped[float | None] = mapped_column(Float, comment="measured value")
    min_value: Mapped[float | None] = mapped_column(Float, comment="fail below this")
    max_value: Mapped[float | None] = mapped_column(Float, comment="fail above this")
    warn_min: Mapped[float | None] = mapped_column(Float, comment="warn below this")
    warn_max: Mapped[float | None] = mapped_column(Float, comment="warn above this")
    units: Mapped[str] = mapped_column(String(32), default="", comment="units of value")
    result: Mapped[str] = mapped_column(String(8), comment="pass, warn or fail")
    qc_pass: Mapped[bool] = mapped_column(comment="result is not fail")
    reference: Mapped[str | None] = mapped_column(Text, comment="reference value or document")
    plot_file: Mapped[str | None] = mapped_column(Text, comment="diagnostic plot (archive path)")
    time: Mapped[datetime] = mapped_column(default=utcnow, comment="when it was measured")
