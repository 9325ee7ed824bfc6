"""Read queries behind the operations pages (seed 000 section 7.1).

Every page is a fixed number of queries whatever the number of jobs shown (no N+1): one page of
jobs, one ``GROUP BY root_id, status`` for the sub-job counts of the rows shown, one aggregate
for their QC flags, and ``GROUP BY`` queries for the pie charts. Sub-job progress is derived by
aggregate on the ``(root_id, status)`` and ``(parent_id, status)`` indexes, as the job system
keeps it (no status cascaded to parents).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Select, String, and_, case, cast, func, or_, select, union
from sqlalchemy.orm import Session

from surveydm.db.models.jobs import Job, QualityControl, Tag
from surveydm.errors import SurveydmError
from surveydm.orchestration.store import summarize, tree_select
from surveydm.publish.web.schemas import (
    JobDetail,
    JobFilters,
    JobList,
    JobRow,
    ObsSetStatus,
    QcRow,
    StatusPoint,
    TagRow,
)

#: Largest page of the job table.
MAX_PAGE_SIZE = 500
#: Direct sub-jobs listed on a job page.
CHILDREN_SHOWN = 200
#: Failed, quality-failed or aborted jobs of a tree listed on a job page.
FAILED_SHOWN = 50
_QC_FLAGS = {0: "green", 1: "yellow", 2: "red"}
_QUALITY_FAILED = "failed_quality"


class NotFound(SurveydmError):
    """The requested job, file or exposure does not exist (HTTP 404)."""

    http_status = 404


def _aware(t: datetime | None) -> datetime | None:
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t


def _duration(started: datetime | None, ended: datetime | None) -> float | None:
    started, ended = _aware(started), _aware(ended)
    if started is None:
        return None
    return ((ended or datetime.now(UTC)) - started).total_seconds()


def _qc_conditions(tree: bool) -> dict[str, Any]:
    """SQL conditions on ``Job`` for each QC flag, with the job system's meaning
    (:class:`surveydm.orchestration.Summary`): red = a failed check or a quality failure,
    yellow = a warning, green = neither. ``tree``: over the job's whole tree (``root_id``,
    top-level jobs); otherwise over the job's own checks and status.

    Written as ``id IN (set of flagged owners)``: each set is computed once (hashed semi-join)
    instead of a correlated subquery per listed job."""
    owner = Job.root_id if tree else Job.id

    def with_qc(result: str) -> Any:
        return (
            select(owner)
            .join(QualityControl, QualityControl.job_id == Job.id)
            .where(QualityControl.result == result, owner.is_not(None))
        )

    quality_failed = select(owner).where(Job.status == _QUALITY_FAILED, owner.is_not(None))
    red_ids = union(with_qc("fail"), quality_failed).subquery()
    warn_ids = with_qc("warn").subquery()
    red = Job.id.in_(select(red_ids.c[0]))
    warn = Job.id.in_(select(warn_ids.c[0]))
    return {"red": red, "yellow": and_(~red, warn), "green": and_(~red, ~warn)}


def _apply_filters(stmt: Select, filters: JobFilters) -> Select:
    if filters.parent is not None:
        stmt = stmt.where(Job.parent_id == filters.parent)
    else:
        stmt = stmt.where(Job.parent_id.is_(None))
    if filters.task:
        stmt = stmt.where(Job.task == filters.task)
    if filters.status:
        stmt = stmt.where(Job.status == filters.status)
    if filters.since:
        stmt = stmt.where(Job.created >= filters.since)
    if filters.until:
        stmt = stmt.where(Job.created <= filters.until)
    if filters.qc:
        stmt = stmt.where(_qc_conditions(tree=filters.parent is None)[filters.qc])
    return stmt


def job_rows(session: Session, jobs: Sequence[Job], *, tree: bool = True) -> list[JobRow]:
    """Table rows for ``jobs`` with sub-job counts and QC flags, in two aggregate queries.

    ``tree``: count the whole tree below each job (jobs with ``root_id`` = id; right for
    top-level jobs); otherwise the direct sub-jobs (``parent_id`` = id).
    """
    ids = [j.id for j in jobs]
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    levels: dict[int, int] = {}
    if ids:
        key = Job.root_id if tree else Job.parent_id
        stmt = (
            select(key, Job.status, func.count())
            .where(key.in_(ids), Job.id != key)
            .group_by(key, Job.status)
        )
        for jid, status, n in session.execute(stmt):
            counts[jid][status] = n
        owner = Job.root_id if tree else Job.id
        level = func.max(
            case(
                (QualityControl.result == "fail", 2),
                (QualityControl.result == "warn", 1),
                else_=0,
            )
        )
        qstmt = (
            select(owner, level)
            .join(QualityControl, QualityControl.job_id == Job.id)
            .where(owner.in_(ids))
            .group_by(owner)
        )
        for jid, lvl in session.execute(qstmt):
            if lvl is not None:
                levels[jid] = int(lvl)
    for j in jobs:
        own_bad = j.status == _QUALITY_FAILED
        tree_bad = tree and counts[j.id].get(_QUALITY_FAILED, 0) > 0
        if own_bad or tree_bad:
            levels[j.id] = 2
    return [
        JobRow(
            id=j.id,
            name=j.name or "",
            task=j.task,
            status=j.status,
            n_subjobs=sum(counts[j.id].values()),
            subjobs_by_status=counts[j.id],
            qc_flag=_QC_FLAGS[levels.get(j.id, 0)],  # type: ignore[arg-type]
            created=_aware(j.created),
            started=_aware(j.started),
            ended=_aware(j.ended),
            duration_s=_duration(j.started, j.ended),
        )
        for j in jobs
    ]


def list_jobs(
    session: Session, filters: JobFilters, *, page: int = 1, page_size: int = 50
) -> JobList:
    """One page of jobs (newest first) matching ``filters`` with per-task and per-status totals.

    Top-level jobs unless ``filters.parent`` is set (then that job's direct sub-jobs).

    Raises:
        SurveydmError: ``page`` < 1 or ``page_size`` outside 1..:data:`MAX_PAGE_SIZE`.
    """
    if page < 1:
        raise SurveydmError(f"page must be >= 1, not {page}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise SurveydmError(f"page size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
    base = _apply_filters(select(Job), filters)
    jobs = list(
        session.scalars(
            base.order_by(Job.id.desc()).limit(page_size).offset((page - 1) * page_size)
        )
    )
    counted = _apply_filters(select(Job.task, Job.status, func.count()), filters).group_by(
        Job.task, Job.status
    )
    per_task: dict[str, int] = defaultdict(int)
    per_status: dict[str, int] = defaultdict(int)
    for task, status, n in session.execute(counted):
        per_task[task] += n
        per_status[status] += n
    tasks_stmt = select(Job.task).where(
        Job.parent_id.is_(None) if filters.parent is None else Job.parent_id == filters.parent
    )
    tasks = sorted(set(session.scalars(tasks_stmt.distinct())))
    return JobList(
        jobs=job_rows(session, jobs, tree=filters.parent is None),
        total=sum(per_status.values()),
        page=page,
        page_size=page_size,
        filters=filters,
        per_task=dict(sorted(per_task.items())),
        per_status=dict(sorted(per_status.items())),
        tasks=tasks,
    )


def qc_rows(session: Session, job_id: int, plot_url: Any) -> list[QcRow]:
    """The QC checks of one job; ``plot_url(qc_id)`` builds the plot link."""
    rows = session.scalars(
        select(QualityControl).where(QualityControl.job_id == job_id).order_by(QualityControl.id)
    )
    return [
        QcRow(
            id=q.id,
            check_name=q.check_name,
            description=q.description or "",
            value=q.value,
            units=q.units or "",
            min_value=q.min_value,
            max_value=q.max_value,
            warn_min=q.warn_min,
            warn_max=q.warn_max,
            result=q.result,
            qc_pass=bool(q.qc_pass),
            reference=q.reference,
            plot_url=plot_url(q.id) if q.plot_file else None,
        )
        for q in rows
    ]


def job_detail(session: Session, job_id: int, plot_url: Any) -> JobDetail:
    """Everything the job page shows.

    Raises:
        NotFound: no job ``job_id``.
    """
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    ancestors: list[int] = []
    pid = job.parent_id
    while pid is not None and len(ancestors) < 100:
        ancestors.append(pid)
        pid = session.scalar(select(Job.parent_id).where(Job.id == pid))
    ancestors.reverse()
    # The job's own line uses the job system's derived summary (whole tree below it).
    summary = summarize(session, job_id)
    row = job_rows(session, [job], tree=job.parent_id is None)[0]
    row.subjobs_by_status = {k: v for k, v in summary.counts.items() if v}
    row.n_subjobs = summary.total
    row.qc_flag = summary.qc  # type: ignore[assignment]
    tags = list(session.scalars(select(Tag).where(Tag.job_id == job_id).order_by(Tag.time, Tag.id)))

    def tag_row(t: Tag) -> TagRow:
        return TagRow(name=t.name, value=t.value or "", attempt=t.attempt, time=_aware(t.time))

    children_by_status = dict(
        session.execute(
            select(Job.status, func.count()).where(Job.parent_id == job_id).group_by(Job.status)
        ).all()
    )
    failed_first = case((Job.status.in_(("failed", "failed_quality", "aborted")), 0), else_=1)
    children = list(
        session.scalars(
            select(Job)
            .where(Job.parent_id == job_id)
            .order_by(failed_first, Job.id)
            .limit(CHILDREN_SHOWN)
        )
    )
    failed_statuses = ("failed", "failed_quality", "aborted")
    if job.parent_id is None:
        in_tree = and_(Job.root_id == job_id, Job.id != job_id)
    else:
        in_tree = Job.id.in_(tree_select(job_id, include_self=False).scalar_subquery())
    failed_below = list(
        session.scalars(
            select(Job)
            .where(in_tree, Job.status.in_(failed_statuses))
            .order_by(Job.id)
            .limit(FAILED_SHOWN)
        )
    )
    return JobDetail(
        job=row,
        failed_in_tree=job_rows(session, failed_below, tree=False),
        parent_id=job.parent_id,
        root_id=job.root_id,
        ancestors=ancestors,
        config=job.config or {},
        input=job.input or {},
        output=job.output,
        fault=job.fault,
        quality=job.quality,
        reason=job.reason,
        attempts=job.attempts,
        worker=job.worker,
        host=job.host,
        wall_time_s=job.wall_time or 0.0,
        logs=[tag_row(t) for t in tags if t.name == "log"],
        tracebacks=[tag_row(t) for t in tags if t.name == "traceback"],
        other_tags=[tag_row(t) for t in tags if t.name not in ("log", "traceback")],
        qc=qc_rows(session, job_id, plot_url),
        children_by_status=children_by_status,
        children=job_rows(session, children, tree=False),
        n_children=sum(children_by_status.values()),
    )


def obs_set_jobs(session: Session, obs_set: str) -> list[tuple[Any, ...]]:
    """``(id, status, created, started, ended)`` of every job processing ``obs_set``: the jobs
    whose configuration or input names it, and every job in their trees.

    Raises:
        SurveydmError: ``obs_set`` is empty or holds characters other than letters, digits,
            ``_``, ``-``, ``.``.
    """
    if not obs_set or not all(c.isalnum() or c in "_-." for c in obs_set):
        raise SurveydmError(f"not an observation set identifier: {obs_set!r}")
    pattern = f'%"{obs_set}"%'  # a whole JSON string value: 20261120_001 is not 20261120_0010
    roots = select(func.coalesce(Job.root_id, Job.id)).where(
        or_(cast(Job.config, String).like(pattern), cast(Job.input, String).like(pattern))
    )
    stmt = select(Job.id, Job.status, Job.created, Job.started, Job.ended).where(
        or_(Job.root_id.in_(roots), Job.id.in_(roots))
    )
    return [tuple(r) for r in session.execute(stmt)]


def status_evolution(
    obs_set: str, jobs: Sequence[tuple[Any, ...]], *, n_points: int = 200
) -> ObsSetStatus:
    """Jobs per status over time for one obs set (seed 000 figure 9).

    A job counts as ``queued`` (created, not started) from ``created`` to ``started``,
    ``running`` from ``started`` to ``ended``, then as its final status. ``jobs`` are
    ``(id, status, created, started, ended)`` as :func:`obs_set_jobs` returns. ``n_points``
    sample times are spread evenly from the first creation to the last end (or now).
    """
    if not jobs:
        return ObsSetStatus(obs_set=obs_set, n_jobs=0, root_ids=[], series=[])
    now = datetime.now(UTC).timestamp()
    inf = np.inf
    created = np.array([_aware(j[2]).timestamp() for j in jobs])
    started = np.array([_aware(j[3]).timestamp() if j[3] else inf for j in jobs])
    ended = np.array([_aware(j[4]).timestamp() if j[4] else inf for j in jobs])
    status = np.array([j[1] for j in jobs])
    t0 = float(created.min())
    t1 = max(float(np.where(np.isfinite(ended), ended, now).max()), t0)
    times = np.linspace(t0, t1, max(2, n_points))[:, None]  # (n_points, 1)
    exists = times >= created
    is_ended = exists & (times >= ended)
    is_running = exists & ~is_ended & (times >= started)
    is_waiting = exists & ~is_ended & ~is_running
    series: list[StatusPoint] = []
    finals = sorted(set(status.tolist()))
    waiting_name = np.where(status == "pending", "pending", "queued")
    for k in range(times.shape[0]):
        counts: dict[str, int] = {}
        for st in finals:
            n = int(np.count_nonzero(is_ended[k] & (status == st)))
            if n:
                counts[st] = n
        n_run = int(np.count_nonzero(is_running[k]))
        if n_run:
            counts["running"] = counts.get("running", 0) + n_run
        for st in ("pending", "queued"):
            n = int(np.count_nonzero(is_waiting[k] & (waiting_name == st)))
            if n:
                counts[st] = counts.get(st, 0) + n
        series.append(
            StatusPoint(time=datetime.fromtimestamp(float(times[k, 0]), UTC), counts=counts)
        )
    return ObsSetStatus(obs_set=obs_set, n_jobs=len(jobs), root_ids=[], series=series)
