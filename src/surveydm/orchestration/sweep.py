"""The sweep: idempotent maintenance that idle pilots run (safe concurrently).

It finds the jobs whose worker was lost (lease expired) and, rarely, repairs what a finishing
job normally does itself: pending jobs whose dependencies all ended, waiting super-jobs whose
sub-jobs all ended (left by the race of two last finishers on PostgreSQL, or by manual edits).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, literal, select, update
from sqlalchemy.orm import Session

from surveydm.db.base import utcnow
from surveydm.db.models.jobs import Dependency, Job
from surveydm.orchestration.records import SweepResult
from surveydm.orchestration.status import BLOCKING, JobStatus
from surveydm.orchestration.transitions import (
    ACTIVE_CHILD,
    LOST_COLUMNS,
    WAKE_VALUES,
    blocked_by_unfinished,
    lose,
    skip_dependants,
)
from surveydm.orchestration.wakeup import announce_ready

J = Job.__table__
D = Dependency.__table__
_P = J.alias("blocker")
_D2 = D.alias("dep_of")

#: Advisory-lock key serialising full sweeps on PostgreSQL ("SDMSWEEP" in ASCII, as int).
SWEEP_LOCK_KEY = 0x53444D5357454550


def sweep_lost(session: Session, now: datetime, limit: int, out: SweepResult) -> None:
    """Jobs whose lease expired: the worker was lost (:func:`~.transitions.lose`)."""
    lost = session.execute(
        select(*LOST_COLUMNS)
        .where(J.c.status == JobStatus.RUNNING, J.c.lease_expires < now)
        .order_by(J.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for r in lost:
        new = lose(session, r, now, where=J.c.lease_expires < now, why="lease expired")
        if new == JobStatus.FAILED:
            out.failed_lost += 1
        elif new == JobStatus.QUEUED:
            out.requeued_lost += 1


def sweep(
    session: Session, *, now: datetime | None = None, limit: int = 10_000, full: bool = True
) -> SweepResult:
    """Maintenance run by idle pilots (idempotent, safe concurrently):

    1. jobs whose lease expired (their worker was killed or lost) go back to the queue, or end
       ``failed`` once ``max_lost`` workers were lost with them (an index range scan: cheap);
    2. (``full``) pending jobs whose dependencies all ended are queued (or skipped);
    3. (``full``) waiting super-jobs with no active sub-job are queued for their epilog.

    Steps 2 and 3 scan the pending and waiting jobs, so pilots run them rarely, and on
    PostgreSQL one pilot at a time (``pg_try_advisory_xact_lock``: the others skip them).
    """
    now = now or utcnow()
    out = SweepResult()
    sweep_lost(session, now, limit, out)
    if not full:
        return out
    if (
        session.get_bind().dialect.name == "postgresql"
        and not session.execute(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK_KEY))).scalar_one()
    ):
        return out  # another pilot is doing it

    # 2. dependencies: skip the blocked-for-good first, then queue the ready.
    dead = (
        select(J.c.id)
        .where(
            J.c.status == JobStatus.PENDING,
            select(literal(1))
            .select_from(_D2.join(_P, _P.c.id == _D2.c.parent_id))
            .where(_D2.c.child_id == J.c.id, _P.c.status.in_(list(BLOCKING)))
            .exists(),
        )
        .limit(limit)
    )
    blockers = [
        int(r[0])
        for r in session.execute(
            select(D.c.parent_id)
            .join(J, J.c.id == D.c.parent_id)
            .where(D.c.child_id.in_(dead.scalar_subquery()), J.c.status.in_(list(BLOCKING)))
            .distinct()
        )
    ]
    if blockers:
        out.skipped += skip_dependants(session, blockers, now)
    res = session.execute(
        update(J)
        .where(J.c.status == JobStatus.PENDING, ~blocked_by_unfinished(J.c.id))
        .values(status=JobStatus.QUEUED, queued=now, not_before=now)
    )
    out.promoted += res.rowcount or 0

    # 3. super-jobs whose sub-jobs all ended.
    res = session.execute(
        update(J)
        .where(J.c.status == JobStatus.WAITING, ~ACTIVE_CHILD)
        .values(queued=now, not_before=now, **WAKE_VALUES)
    )
    out.woken += res.rowcount or 0
    if out.promoted or out.woken:
        announce_ready(session)
    return out
