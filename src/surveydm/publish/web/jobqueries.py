"""Read queries behind the operations pages (seed 000 section 7.1).

Jobs are read through the job system's one read API (:mod:`surveydm.orchestration.reads`, which
``surveydm jobs show`` uses too) and turned into the portal's response models here; only the
astronomy-aware reads (jobs of an observation set, their status over time) are the portal's
own. Every page is a fixed number of queries whatever the number of jobs shown (no N+1).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

from surveydm.db.models.jobs import Job
from surveydm.errors import SurveydmError
from surveydm.orchestration import reads
from surveydm.orchestration.qc import QCResult
from surveydm.orchestration.records import (
    AttemptRecord,
    JobNotFoundError,
    JobQuery,
    QCRecord,
    TagRecord,
    TreeRow,
)
from surveydm.publish.web.schemas import (
    AttemptRow,
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
_BY_COLOUR = {r.colour: r for r in QCResult}


class NotFound(SurveydmError):
    """The requested job, file or exposure does not exist (HTTP 404)."""

    http_status = 404


def _query(filters: JobFilters) -> JobQuery:
    """The job system's query for the page's filters: top-level jobs unless ``parent``."""
    return JobQuery(
        statuses=(filters.status,) if filters.status else (),
        tasks=(filters.task,) if filters.task else (),
        since=filters.since,
        until=filters.until,
        parent=filters.parent,
        roots=filters.parent is None,
        qc=_BY_COLOUR[filters.qc] if filters.qc else None,
    )


def job_row(row: TreeRow) -> JobRow:
    """A table row of the portal from the job system's :class:`TreeRow`."""
    j = row.job
    return JobRow(
        id=j.id,
        name=j.name,
        task=j.task,
        status=j.status,
        n_subjobs=row.total,
        subjobs_by_status=row.counts,
        qc_flag=row.result.colour,  # type: ignore[arg-type]
        created=j.created,
        started=j.started,
        ended=j.ended,
        duration_s=j.duration,
    )


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
    q = _query(filters)
    jobs = reads.list_jobs(session, q, limit=page_size, offset=(page - 1) * page_size)
    per_task: dict[str, int] = defaultdict(int)
    per_status: dict[str, int] = defaultdict(int)
    for (task, status), n in reads.count_jobs(session, q).items():
        per_task[task] += n
        per_status[status] += n
    rows = reads.tree_rows(session, jobs, tree=filters.parent is None)
    return JobList(
        jobs=[job_row(r) for r in rows],
        total=sum(per_status.values()),
        page=page,
        page_size=page_size,
        filters=filters,
        per_task=dict(sorted(per_task.items())),
        per_status=dict(sorted(per_status.items())),
        tasks=reads.task_names(session, parent=filters.parent),
    )


def qc_row(q: QCRecord, plot_url: Callable[[int], str]) -> QcRow:
    """A QC check of a job; ``plot_url(qc_id)`` builds the plot link."""
    return QcRow(
        id=q.id or 0,
        check_name=q.check_name,
        description=q.description,
        value=q.value,
        units=q.units,
        min_value=q.min_value,
        max_value=q.max_value,
        warn_min=q.warn_min,
        warn_max=q.warn_max,
        result=q.result,
        qc_pass=q.result != QCResult.FAIL,
        reference=q.reference,
        plot_url=plot_url(q.id) if q.plot_file and q.id is not None else None,
    )


def _tag_row(t: TagRecord) -> TagRow:
    return TagRow(name=t.name, value=t.value, attempt=t.attempt, time=t.time)


def _attempt_row(a: AttemptRecord) -> AttemptRow:
    return AttemptRow(
        attempt=a.attempt,
        phase=a.phase,
        worker=a.worker,
        host=a.host,
        pid=a.pid,
        started=a.started,
        ended=a.ended,
        outcome=a.outcome,
        fault=a.fault,
        wall_time_s=a.wall_time,
    )


def job_detail(session: Session, job_id: int, plot_url: Callable[[int], str]) -> JobDetail:
    """Everything the job page shows (:func:`surveydm.orchestration.reads.job_detail`).

    Raises:
        NotFound: no job ``job_id``.
    """
    try:
        d = reads.job_detail(session, job_id, children=CHILDREN_SHOWN, failed=FAILED_SHOWN)
    except JobNotFoundError:
        raise NotFound(f"no job {job_id}") from None
    job, summary = d.job, d.summary
    # The job's own line uses the job system's derived summary (whole tree below it).
    row = job_row(TreeRow(job=job, counts={}, result=summary.result))
    row.subjobs_by_status = {k: v for k, v in summary.counts.items() if v}
    row.n_subjobs = summary.total
    return JobDetail(
        job=row,
        failed_in_tree=[job_row(r) for r in d.failed_in_tree],
        parent_id=job.parent_id,
        root_id=job.root_id,
        ancestors=d.ancestors,
        config=job.config,
        input=job.input,
        output=job.output,
        fault=job.fault,
        quality=job.quality,
        reason=job.reason,
        key=job.key,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        lost=job.lost,
        max_lost=job.max_lost,
        attempt_history=[_attempt_row(a) for a in d.attempts],
        worker=job.worker,
        host=job.host,
        wall_time_s=job.wall_time,
        logs=[_tag_row(t) for t in d.tags if t.name == "log"],
        tracebacks=[_tag_row(t) for t in d.tags if t.name == "traceback"],
        other_tags=[_tag_row(t) for t in d.tags if t.name not in ("log", "traceback")],
        qc=[qc_row(q, plot_url) for q in d.qc],
        children_by_status=d.children_by_status,
        children=[job_row(r) for r in d.children],
        n_children=d.n_children,
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
    created = np.array([j[2].timestamp() for j in jobs])
    started = np.array([j[3].timestamp() if j[3] else inf for j in jobs])
    ended = np.array([j[4].timestamp() if j[4] else inf for j in jobs])
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
