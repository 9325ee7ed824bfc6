"""The one read API of the job system: job detail, tree summaries, listings, accounting.

``surveydm jobs list/show/stats`` and the portal's job pages both read jobs through these
functions (each takes an open :class:`~sqlalchemy.orm.Session`), so a job looks the same
everywhere. Progress of a tree is derived by aggregate on the ``(root_id, status)`` and
``(parent_id, status)`` indexes (a recursive CTE over ``parent_id`` for an inner super-job);
nothing is cascaded to parents. Listings cost a fixed number of queries whatever the number of
rows (no N+1). The QC colour of a job or tree is the worst of its QC checks and of what its
statuses say (:attr:`~surveydm.orchestration.status.JobStatus.result`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    func,
    literal,
    select,
    true,
    union,
)
from sqlalchemy.orm import Session

from surveydm.db.models.jobs import Dependency, Job, JobAttempt, QualityControl, Tag
from surveydm.orchestration.qc import QCResult
from surveydm.orchestration.records import (
    AttemptRecord,
    JobDetail,
    JobNotFoundError,
    JobQuery,
    JobRecord,
    QCRecord,
    SubJobInfo,
    Summary,
    TagRecord,
    TaskStats,
    TreeRow,
)
from surveydm.orchestration.status import (
    ACTIVE,
    ALL,
    FINAL,
    AttemptOutcome,
    JobStatus,
    statuses_with,
)

J = Job.__table__
D = Dependency.__table__
A = JobAttempt.__table__
TAG = Tag.__table__
QC = QualityControl.__table__

_FAIL_STATUSES = statuses_with(QCResult.FAIL)
_WARN_STATUSES = statuses_with(QCResult.WARN)
#: Statuses listed as "failed in tree" on a job page.
FAILED_STATUSES = (JobStatus.FAILED, JobStatus.FAILED_QUALITY, JobStatus.ABORTED)


# ------------------------------------------------------------------------------------------
# Trees


def get_row(session: Session, job_id: int) -> Any:
    """The ``job`` row ``job_id`` (Core row).

    Raises:
        JobNotFoundError: no such job.
    """
    row = session.execute(select(J).where(J.c.id == job_id)).first()
    if row is None:
        raise JobNotFoundError(f"no job with id {job_id}")
    return row


def tree_select(job_id: int, *, include_self: bool = True) -> Select[Any]:
    """SELECT of the ids of ``job_id``'s descendants (recursive CTE over ``parent_id``)."""
    base = select(J.c.id).where(J.c.parent_id == job_id).cte("tree", recursive=True)
    base = base.union_all(select(J.c.id).where(J.c.parent_id == base.c.id))
    sel = select(base.c.id)
    if include_self:
        sel = sel.union_all(select(literal(job_id)))
    return sel


def descendant_filter(row: Any) -> ColumnElement[bool]:
    """Condition on ``job`` selecting the strict descendants of the job ``row``."""
    if row.root_id == row.id:
        return and_(J.c.root_id == row.id, J.c.id != row.id)
    return J.c.id.in_(tree_select(row.id, include_self=False).scalar_subquery())


def _statuses_result(statuses: Sequence[str]) -> QCResult:
    return QCResult.worst(JobStatus(s).result for s in statuses)


_SUMMARY_CACHE: list[Any] = []


def _root_summary_statement() -> Any:
    """The summary of a top-level job as ONE statement (one round trip, built once): its row,
    cross-joined with one aggregate row of its tree's counts per status (``count(*) FILTER``:
    one pass over the ``(root_id, status)`` index, no sort; the job itself is counted and taken
    off afterwards, so the index holds every column read and an index-only scan can serve it)
    and one of its QC rows per result.
    """
    if _SUMMARY_CACHE:
        return _SUMMARY_CACHE[0]
    jid = bindparam("s_id", type_=J.c.id.type)
    sub = J.alias("sub")
    counts = (
        select(*[func.count().filter(sub.c.status == st).label(f"n_{st}") for st in JobStatus])
        .where(sub.c.root_id == jid)  # the job itself too: no `id` needed, index-only
        .subquery("counts")
    )
    tree = J.alias("tree")
    qcs = (
        select(*[func.count().filter(QC.c.result == r).label(f"q_{r}") for r in QCResult])
        .where(QC.c.job_id.in_(select(tree.c.id).where(tree.c.root_id == jid)))
        .subquery("qcs")
    )
    stmt = (
        select(J.c.id, J.c.task, J.c.name, J.c.status, J.c.root_id, counts, qcs)
        .select_from(J.join(counts, true()).join(qcs, true()))  # one row each: a cross join
        .where(J.c.id == jid)
    )
    _SUMMARY_CACHE.append(stmt)
    return stmt


def _tree_counts(
    session: Session, job_id: int
) -> tuple[Any, dict[JobStatus, int], dict[QCResult, int]]:
    """(job row, sub-jobs per status, QC rows per result) of ``job_id``'s tree: one statement
    for a top-level job, three (a recursive CTE over ``parent_id``) for an inner one."""
    row = session.execute(_root_summary_statement(), {"s_id": job_id}).first()
    if row is None:
        raise JobNotFoundError(f"no job with id {job_id}")
    if row.root_id == row.id:
        m = row._mapping
        counts = {st: int(m[f"n_{st}"]) for st in JobStatus}
        counts[JobStatus(row.status)] -= 1  # the job itself (its root_id is its own id)
        return row, counts, {r: int(m[f"q_{r}"]) for r in QCResult}
    desc = descendant_filter(row)
    counts = dict.fromkeys(JobStatus, 0)
    for st, n in session.execute(select(J.c.status, func.count()).where(desc).group_by(J.c.status)):
        counts[JobStatus(st)] += int(n)
    qc_counts = dict.fromkeys(QCResult, 0)
    for res, n in session.execute(
        select(QC.c.result, func.count())
        .where(QC.c.job_id.in_(tree_select(row.id).scalar_subquery()))
        .group_by(QC.c.result)
    ):
        qc_counts[QCResult(res)] = int(n)
    return row, counts, qc_counts


def summarize(session: Session, job_id: int) -> Summary:
    """Counts per status of ``job_id``'s sub-job tree, done fraction and QC result.

    For a top-level job one statement: its row with one aggregate pass over the
    ``(root_id, status)`` index and one over its QC rows (:func:`_root_summary_statement`);
    for an inner one, a recursive CTE over ``parent_id``.

    Raises:
        JobNotFoundError: no such job.
    """
    row, counts, qc_counts = _tree_counts(session, job_id)
    total = sum(counts.values())
    result = QCResult.worst(
        [r for r, n in qc_counts.items() if n]
        + [JobStatus(row.status).result, _statuses_result([s for s, n in counts.items() if n])]
    )
    finished = sum(counts[s] for s in FINAL)
    status = JobStatus(row.status)
    if total:
        done_fraction, finished_fraction = counts[JobStatus.DONE] / total, finished / total
    else:
        done_fraction = 1.0 if status == JobStatus.DONE else 0.0
        finished_fraction = 1.0 if status in FINAL else 0.0
    if status in FINAL:
        state = status
    elif status in (JobStatus.RUNNING, JobStatus.WAITING) or (
        counts[JobStatus.RUNNING] or counts[JobStatus.WAITING]
    ):
        state = JobStatus.RUNNING
    else:
        state = status
    return Summary(
        job_id=row.id,
        task=row.task,
        name=row.name,
        status=status,
        state=state,
        counts=counts,
        total=total,
        done_fraction=done_fraction,
        finished_fraction=finished_fraction,
        result=result,
        qc_counts={str(k): v for k, v in qc_counts.items()},
    )


def subjob_infos(session: Session, job_id: int) -> list[SubJobInfo]:
    """Direct sub-jobs of ``job_id`` with their outcome, by id."""
    rows = session.execute(
        select(
            J.c.id,
            J.c.task,
            J.c.name,
            J.c.status,
            J.c.input,
            J.c.output,
            J.c.fault,
            J.c.quality,
            J.c.reason,
        )
        .where(J.c.parent_id == job_id)
        .order_by(J.c.id)
    )
    return [SubJobInfo.from_row(r) for r in rows]


def status_counts(
    session: Session, *, root_id: int | None = None, tasks: Sequence[str] | None = None
) -> dict[str, int]:
    """Jobs per status (every status a key): the sub-jobs of ``root_id``'s tree, or the whole
    queue (of ``tasks``)."""
    q = select(J.c.status, func.count()).group_by(J.c.status)
    if root_id is not None:
        q = q.where(J.c.root_id == root_id, J.c.id != root_id)
    if tasks is not None:
        q = q.where(J.c.task.in_(list(tasks)))
    got = dict(session.execute(q).all())
    return {str(st): int(got.get(st, 0)) for st in JobStatus}


def count_active(
    session: Session, *, root_id: int | None = None, tasks: Sequence[str] | None = None
) -> int:
    """Number of jobs still to do or under way (in the tree of ``root_id`` when given)."""
    q = select(func.count()).where(J.c.status.in_(list(ACTIVE)))
    if root_id is not None:
        q = q.where(J.c.root_id == root_id)
    if tasks is not None:
        q = q.where(J.c.task.in_(list(tasks)))
    return int(session.execute(q).scalar_one())


# ------------------------------------------------------------------------------------------
# Listings


def qc_filter(result: QCResult, *, tree: bool) -> ColumnElement[bool]:
    """Condition on ``job``: its derived QC result is ``result``. ``tree``: over the job's
    whole tree (``root_id``; right for top-level jobs); otherwise over its own checks and
    status. Written as ``id IN (set of flagged owners)``: each set is computed once (hashed
    semi-join) instead of a correlated subquery per listed job."""
    owner = J.c.root_id if tree else J.c.id

    def flagged(qc_result: QCResult, statuses: list[JobStatus]) -> Any:
        with_qc = (
            select(owner)
            .select_from(J.join(QC, QC.c.job_id == J.c.id))
            .where(QC.c.result == qc_result, owner.is_not(None))
        )
        with_status = select(owner).where(J.c.status.in_(statuses), owner.is_not(None))
        ids = union(with_qc, with_status).subquery()
        return J.c.id.in_(select(ids.c[0]))

    red = flagged(QCResult.FAIL, _FAIL_STATUSES)
    warn = flagged(QCResult.WARN, _WARN_STATUSES)
    return {
        QCResult.FAIL: red,
        QCResult.WARN: and_(~red, warn),
        QCResult.PASS: and_(~red, ~warn),
    }[result]


def _where(stmt: Select[Any], q: JobQuery) -> Select[Any]:
    if q.parent is not None:
        stmt = stmt.where(J.c.parent_id == q.parent)
    if q.roots:
        stmt = stmt.where(J.c.parent_id.is_(None))
    if q.statuses:
        stmt = stmt.where(J.c.status.in_(list(q.statuses)))
    if q.tasks:
        stmt = stmt.where(J.c.task.in_(list(q.tasks)))
    if q.since is not None:
        stmt = stmt.where(J.c.created >= q.since)
    if q.until is not None:
        stmt = stmt.where(J.c.created < q.until)
    if q.qc is not None:
        stmt = stmt.where(qc_filter(q.qc, tree=q.parent is None and q.roots))
    return stmt


def list_jobs(
    session: Session, q: JobQuery, *, limit: int = 50, offset: int = 0
) -> list[JobRecord]:
    """Jobs matching ``q``, newest first."""
    stmt = _where(select(J), q).order_by(J.c.id.desc()).limit(limit).offset(offset)
    return [JobRecord.from_row(r) for r in session.execute(stmt)]


def count_jobs(session: Session, q: JobQuery) -> dict[tuple[str, str], int]:
    """Jobs matching ``q`` per ``(task, status)``."""
    stmt = _where(select(J.c.task, J.c.status, func.count()), q).group_by(J.c.task, J.c.status)
    return {(t, s): int(n) for t, s, n in session.execute(stmt)}


def task_names(session: Session, *, parent: int | None = None) -> list[str]:
    """Task types of the top-level jobs (or of ``parent``'s sub-jobs), sorted."""
    cond = J.c.parent_id.is_(None) if parent is None else J.c.parent_id == parent
    return sorted(session.scalars(select(J.c.task).where(cond).distinct()))


def tree_rows(session: Session, jobs: Sequence[JobRecord], *, tree: bool = True) -> list[TreeRow]:
    """``jobs`` with the counts per status of the jobs below them and their QC result, in two
    aggregate queries. ``tree``: the whole tree below each job (jobs with ``root_id`` = id:
    right for top-level jobs); otherwise the direct sub-jobs (``parent_id`` = id), and the QC
    result from the job's own checks and status."""
    ids = [j.id for j in jobs]
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    levels: dict[int, int] = {}
    if ids:
        key = J.c.root_id if tree else J.c.parent_id
        stmt = (
            select(key, J.c.status, func.count())
            .where(key.in_(ids), J.c.id != key)
            .group_by(key, J.c.status)
        )
        for jid, status, n in session.execute(stmt):
            counts[jid][status] = int(n)
        owner = J.c.root_id if tree else J.c.id
        level = func.max(
            case((QC.c.result == QCResult.FAIL, 2), (QC.c.result == QCResult.WARN, 1), else_=0)
        )
        qstmt = (
            select(owner, level)
            .select_from(J.join(QC, QC.c.job_id == J.c.id))
            .where(owner.in_(ids))
            .group_by(owner)
        )
        for jid, lvl in session.execute(qstmt):
            if lvl is not None:
                levels[jid] = int(lvl)
    out = []
    for j in jobs:
        results = [QCResult.from_severity(levels.get(j.id, 0)), j.status.result]
        if tree:
            results.append(_statuses_result(list(counts[j.id])))
        out.append(TreeRow(job=j, counts=dict(counts[j.id]), result=QCResult.worst(results)))
    return out


# ------------------------------------------------------------------------------------------
# One job


def attempts_of(session: Session, job: JobRecord) -> list[AttemptRecord]:
    """Every attempt of ``job``, oldest first; the one under way (a running job's claim) last,
    with outcome None."""
    rows = session.execute(select(A).where(A.c.job_id == job.id).order_by(A.c.id))
    out = [AttemptRecord.from_row(r) for r in rows]
    if job.status == JobStatus.RUNNING:
        out.append(
            AttemptRecord(
                job_id=job.id,
                attempt=job.attempts,
                phase=job.phase,
                worker=job.worker,
                host=job.host,
                pid=job.pid,
                started=job.claimed,
                ended=None,
                outcome=None,
                fault=None,
                wall_time=None,
            )
        )
    return out


def _ancestors(session: Session, job: JobRecord, limit: int = 100) -> list[int]:
    out: list[int] = []
    pid = job.parent_id
    while pid is not None and len(out) < limit:
        out.append(pid)
        pid = session.scalar(select(J.c.parent_id).where(J.c.id == pid))
    out.reverse()
    return out


def job_detail(
    session: Session, job_id: int, *, children: int = 200, failed: int = 50
) -> JobDetail:
    """Everything about one job (:class:`~surveydm.orchestration.records.JobDetail`): the
    row, its tree summary, dependencies, ancestors, attempts, tags, QC checks, the first
    ``children`` direct sub-jobs (failed ones first) and the first ``failed`` failed,
    quality-failed or aborted jobs below it.

    Raises:
        JobNotFoundError: no such job.
    """
    row = get_row(session, job_id)
    job = JobRecord.from_row(row)
    tags = session.execute(select(TAG).where(TAG.c.job_id == job_id).order_by(TAG.c.time, TAG.c.id))
    qcs = session.execute(select(QC).where(QC.c.job_id == job_id).order_by(QC.c.id))
    deps = session.scalars(
        select(D.c.parent_id).where(D.c.child_id == job_id).order_by(D.c.parent_id)
    )
    by_status = {
        str(s): int(n)
        for s, n in session.execute(
            select(J.c.status, func.count()).where(J.c.parent_id == job_id).group_by(J.c.status)
        )
    }
    failed_first = case((J.c.status.in_(FAILED_STATUSES), 0), else_=1)
    kids = session.execute(
        select(J).where(J.c.parent_id == job_id).order_by(failed_first, J.c.id).limit(children)
    )
    below = session.execute(
        select(J)
        .where(descendant_filter(row), J.c.status.in_(FAILED_STATUSES))
        .order_by(J.c.id)
        .limit(failed)
    )
    return JobDetail(
        job=job,
        summary=summarize(session, job_id),
        depends_on=[int(d) for d in deps],
        ancestors=_ancestors(session, job),
        attempts=attempts_of(session, job),
        tags=[TagRecord.from_row(t) for t in tags],
        qc=[QCRecord.from_row(q) for q in qcs],
        children_by_status=by_status,
        children=tree_rows(session, [JobRecord.from_row(r) for r in kids], tree=False),
        n_children=sum(by_status.values()),
        failed_in_tree=tree_rows(session, [JobRecord.from_row(r) for r in below], tree=False),
    )


# ------------------------------------------------------------------------------------------
# Accounting


def task_stats(
    session: Session, *, since: datetime | None = None, until: datetime | None = None
) -> list[TaskStats]:
    """Per task type: job counts by outcome, jobs that had a fault, attempts whose worker was
    lost, total and mean wall time (seconds), over jobs created in [since, until)."""

    def n(cond: Any) -> Any:
        return func.sum(case((cond, 1), else_=0))

    lost = (
        select(A.c.job_id, func.count().label("n"))
        .where(A.c.outcome == AttemptOutcome.LOST)
        .group_by(A.c.job_id)
        .subquery()
    )
    q = (
        select(
            J.c.task,
            func.count(),
            *(n(J.c.status == s) for s in _STATS_STATUSES),
            n(J.c.status.in_(list(ACTIVE))),
            n(J.c.fault.is_not(None)),
            func.coalesce(func.sum(lost.c.n), 0),
            func.coalesce(func.sum(J.c.wall_time), 0.0),
            func.avg(case((J.c.wall_time > 0, J.c.wall_time), else_=None)),
        )
        .select_from(J.outerjoin(lost, lost.c.job_id == J.c.id))
        .group_by(J.c.task)
    )
    if since is not None:
        q = q.where(J.c.created >= since)
    if until is not None:
        q = q.where(J.c.created < until)
    out = []
    for r in session.execute(q.order_by(J.c.task)):
        by_status = dict(zip(_STATS_STATUSES, (int(v or 0) for v in r[2:8]), strict=True))
        out.append(
            TaskStats(
                task=r[0],
                count=int(r[1]),
                **{str(s): v for s, v in by_status.items()},
                active=int(r[8] or 0),
                faults=int(r[9] or 0),
                lost=int(r[10] or 0),
                wall_time_total=float(r[11] or 0.0),
                wall_time_mean=None if r[12] is None else float(r[12]),
            )
        )
    return out


#: The final statuses, in the order of :class:`JobStatus` (the columns of the task table).
_STATS_STATUSES = tuple(s for s in ALL if s in FINAL)
