"""Operator actions on job trees: abort and retry. Each takes an open
:class:`~sqlalchemy.orm.Session` (one transaction the caller commits)."""

from __future__ import annotations

from sqlalchemy import case, insert, or_, select, update
from sqlalchemy.orm import Session

from surveydm.db.base import utcnow
from surveydm.db.models.jobs import Dependency, Job, Tag
from surveydm.orchestration.reads import descendant_filter, get_row
from surveydm.orchestration.records import JobStateError
from surveydm.orchestration.status import ACTIVE, FINAL, RETRYABLE, AttemptOutcome, JobStatus, Phase
from surveydm.orchestration.transitions import (
    ACTIVE_CHILD,
    LOST_COLUMNS,
    attempt_row,
    blocked_by_unfinished,
    chunks,
    record_attempts,
    skip_dependants,
    wake_parents,
)
from surveydm.orchestration.wakeup import announce_ready

J = Job.__table__
D = Dependency.__table__
TAG = Tag.__table__


def abort(session: Session, job_id: int, *, reason: str = "aborted by operator") -> int:
    """Abort ``job_id`` and every active job of its sub-job tree; returns how many were aborted.

    Running jobs are marked at once (their attempt ends ``aborted``); their workers notice at
    the next heartbeat and their results are discarded (the end-of-step compare-and-set
    fails). Dependants outside the aborted set are skipped and the super-job is woken for its
    epilog.

    Raises:
        JobNotFoundError: no such job.
        JobStateError: the job and its whole tree already ended.
    """
    now = utcnow()
    row = get_row(session, job_id)
    in_tree = or_(descendant_filter(row), J.c.id == row.id)
    rows = session.execute(
        select(J.c.id, J.c.status).where(in_tree, J.c.status.in_(list(ACTIVE)))
    ).all()
    if not rows:
        raise JobStateError(f"job {job_id} and its sub-jobs already ended ({row.status})")
    ids = [int(r.id) for r in rows]
    aborted = {
        "status": JobStatus.ABORTED,
        "reason": reason,
        "ended": now,
        "token": None,
        "lease_expires": None,
    }
    running = [int(r.id) for r in rows if r.status == JobStatus.RUNNING]
    claims = []  # running jobs: their attempt ends here (RETURNING: exactly those aborted)
    for chunk in chunks(running):
        claims += session.execute(
            update(J)
            .where(J.c.id.in_(chunk), J.c.status == JobStatus.RUNNING)
            .values(**aborted)
            .returning(*LOST_COLUMNS)
        ).all()
    for chunk in chunks(ids):
        session.execute(
            update(J).where(J.c.id.in_(chunk), J.c.status.in_(list(ACTIVE))).values(**aborted)
        )
    record_attempts(
        session, [attempt_row(r, AttemptOutcome.ABORTED, now, fault=reason) for r in claims]
    )
    skip_dependants(session, ids, now)
    wake_parents(session, [row.parent_id], now)
    return len(ids)


def retry(session: Session, job_id: int) -> int:
    """Put a failed job back in the queue, or all failed/skipped/aborted jobs of a super-job's
    tree; their ended super-jobs go back to ``waiting`` so their epilogs run again. Returns the
    number of jobs re-queued.

    Their budgets start afresh (``attempts`` and ``lost`` reset, the last fault cleared); their
    history stays: every past attempt keeps its ``job_attempt`` row and a ``retry`` tag marks
    where the operator stepped in.

    Raises:
        JobNotFoundError: no such job.
        JobStateError: nothing in the tree can be retried.
    """
    now = utcnow()
    row = get_row(session, job_id)
    rows = session.execute(
        select(J.c.id, J.c.parent_id, J.c.status, J.c.attempts, J.c.lost).where(
            or_(descendant_filter(row), J.c.id == row.id), J.c.status.in_(list(RETRYABLE))
        )
    ).all()
    if not rows:
        raise JobStateError(
            f"job {job_id} ({row.status}) has no failed, skipped or aborted job to retry"
        )
    ids = [int(r.id) for r in rows]
    with_deps = {
        int(r[0])
        for chunk in chunks(ids)
        for r in session.execute(select(D.c.child_id).where(D.c.child_id.in_(chunk)).distinct())
    }
    reset = {
        "attempts": 0,
        "lost": 0,
        "fault": None,
        "quality": None,
        "reason": None,
        "ended": None,
        "token": None,
        "lease_expires": None,
        "not_before": now,
    }
    for chunk in chunks(ids):
        session.execute(
            update(J)
            .where(J.c.id.in_(chunk))
            .values(
                status=case((J.c.id.in_(with_deps), JobStatus.PENDING), else_=JobStatus.QUEUED),
                queued=case((J.c.id.in_(with_deps), None), else_=now),
                **reset,
            )
        )
    session.execute(
        insert(TAG),
        [
            {
                "job_id": r.id,
                "name": "retry",
                "value": f"re-queued by an operator after it ended {r.status} "
                f"({r.attempts} attempts, {r.lost} lost workers)",
                "attempt": None,
                "time": now,
            }
            for r in rows
        ],
    )
    # A retried super-job whose sub-jobs are retried with it waits for them, epilog next.
    for chunk in chunks(ids):
        session.execute(
            update(J)
            .where(
                J.c.id.in_(chunk),
                J.c.status == JobStatus.QUEUED,
                J.c.phase == Phase.EPILOG,
                ACTIVE_CHILD,
            )
            .values(status=JobStatus.WAITING, queued=None)
        )
    _reopen_ancestors(session, rows, set(ids))
    announce_ready(session)
    if with_deps:
        session.execute(
            update(J)
            .where(
                J.c.id.in_(with_deps),
                J.c.status == JobStatus.PENDING,
                ~blocked_by_unfinished(J.c.id),
            )
            .values(status=JobStatus.QUEUED, queued=now)
        )
    return len(ids)


def _reopen_ancestors(session: Session, rows: list, ids: set[int]) -> None:
    """Ended ancestors of retried jobs wait again for their epilog (with a fresh budget)."""
    ancestors: set[int] = set()
    frontier = {int(r.parent_id) for r in rows if r.parent_id is not None} - ids
    while frontier:
        ancestors |= frontier
        frontier = {
            int(p)
            for (p,) in session.execute(
                select(J.c.parent_id).where(J.c.id.in_(frontier), J.c.parent_id.is_not(None))
            )
        } - ancestors
    if ancestors:
        session.execute(
            update(J)
            .where(J.c.id.in_(ancestors), J.c.status.in_(list(FINAL)))
            .values(status=JobStatus.WAITING, phase=Phase.EPILOG, ended=None, attempts=0, lost=0)
        )
