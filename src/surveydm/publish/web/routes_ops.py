"""Operations control pages (seed 000 section 7.1) and the QC plots of jobs (section 7.2)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from surveydm.db.models.jobs import QualityControl
from surveydm.errors import SurveydmError
from surveydm.orchestration import status as job_status
from surveydm.publish.web import jobqueries as jq
from surveydm.publish.web.plots import pie_png, status_evolution_png
from surveydm.publish.web.portal import Portal, parse_when, portal
from surveydm.publish.web.safepath import safe_archive_path
from surveydm.publish.web.schemas import (
    ErrorBody,
    Health,
    JobDetail,
    JobFilters,
    JobList,
    ObsSetStatus,
)

router = APIRouter()
PNG = {200: {"content": {"image/png": {}}, "description": "PNG image"}}
ERRORS = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}}
QC_FLAGS = ("green", "yellow", "red")


def job_filters(
    task: Annotated[str | None, Query(description="task type")] = None,
    status: Annotated[str | None, Query(description="job status")] = None,
    qc: Annotated[str | None, Query(description="QC flag: green, yellow, red, none")] = None,
    since: Annotated[str | None, Query(description="created on or after (YYYY-MM-DD)")] = None,
    until: Annotated[str | None, Query(description="created on or before (YYYY-MM-DD)")] = None,
    parent: Annotated[int | None, Query(description="list the sub-jobs of this job")] = None,
) -> JobFilters:
    """Job list filters from the query string (empty form fields mean no filter)."""
    if status and status not in job_status.ALL:
        raise SurveydmError(f"unknown status {status!r}; one of {', '.join(job_status.ALL)}")
    if qc and qc not in QC_FLAGS:
        raise SurveydmError(f"unknown QC flag {qc!r}; one of {', '.join(QC_FLAGS)}")
    return JobFilters(
        task=task or None,
        status=status or None,
        qc=qc or None,  # type: ignore[arg-type]
        since=parse_when(since),
        until=parse_when(until, end_of_day=True),
        parent=parent,
    )


def _filters_query(request: Request) -> str:
    keep = {k: v for k, v in request.query_params.items() if k != "page" and v}
    return urlencode(keep)


@router.get("/", include_in_schema=False)
def index() -> RedirectResponse:
    return RedirectResponse("/jobs", status_code=307)


@router.get("/api/health", response_model=Health, tags=["portal"])
def health(p: Annotated[Portal, Depends(portal)]) -> Health:
    """Liveness: answers without touching the database."""
    return Health(database=p.registry.dialect)


def _list(p: Portal, filters: JobFilters, page: int, page_size: int) -> JobList:
    with p.registry.session(write=False) as s:
        return jq.list_jobs(s, filters, page=page, page_size=page_size)


@router.get("/api/jobs", response_model=JobList, responses=ERRORS, tags=["operations"])
def api_jobs(
    p: Annotated[Portal, Depends(portal)],
    filters: Annotated[JobFilters, Depends(job_filters)],
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=jq.MAX_PAGE_SIZE)] = 50,
) -> JobList:
    """Latest top-level jobs (or the sub-jobs of ``parent``), newest first, with totals per
    task and per status."""
    return _list(p, filters, page, page_size)


@router.get("/jobs", response_class=HTMLResponse, include_in_schema=False)
def page_jobs(
    request: Request,
    p: Annotated[Portal, Depends(portal)],
    filters: Annotated[JobFilters, Depends(job_filters)],
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=jq.MAX_PAGE_SIZE)] = 50,
) -> HTMLResponse:
    data = _list(p, filters, page, page_size)
    query = _filters_query(request)
    return p.render(
        request,
        "jobs.html",
        data=data,
        statuses=job_status.ALL,
        qc_flags=QC_FLAGS,
        query=query,
        n_pages=max(1, -(-data.total // page_size)),
        raw=dict(request.query_params),
    )


@router.get("/jobs/pie/{kind}.png", responses=PNG, response_class=Response, tags=["operations"])
def pie(
    kind: str,
    p: Annotated[Portal, Depends(portal)],
    filters: Annotated[JobFilters, Depends(job_filters)],
) -> Response:
    """Pie chart of the matching jobs per ``task`` or per ``status``."""
    if kind not in ("task", "status"):
        raise SurveydmError(f"pie chart of 'task' or 'status', not {kind!r}")
    data = _list(p, filters, 1, 1)
    counts = data.per_task if kind == "task" else data.per_status
    return Response(pie_png(counts, f"jobs per {kind}"), media_type="image/png")


def _plot_url(job_id: int):  # noqa: ANN202
    return lambda qc_id: f"/jobs/{job_id}/qc/{qc_id}/plot"


def _detail(p: Portal, job_id: int) -> JobDetail:
    with p.registry.session(write=False) as s:
        return jq.job_detail(s, job_id, _plot_url(job_id))


@router.get("/api/jobs/{job_id}", response_model=JobDetail, responses=ERRORS, tags=["operations"])
def api_job(job_id: int, p: Annotated[Portal, Depends(portal)]) -> JobDetail:
    """One job: configuration, input, output, logs, traceback, QC checks and its sub-jobs."""
    return _detail(p, job_id)


@router.get("/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
def page_job(job_id: int, request: Request, p: Annotated[Portal, Depends(portal)]) -> HTMLResponse:
    return p.render(request, "job.html", d=_detail(p, job_id))


@router.get(
    "/jobs/{job_id}/qc/{qc_id}/plot",
    responses={**PNG, **ERRORS},
    response_class=FileResponse,
    tags=["quality"],
)
def qc_plot(job_id: int, qc_id: int, p: Annotated[Portal, Depends(portal)]) -> FileResponse:
    """The diagnostic plot file of one QC check (a path in the archive)."""
    with p.registry.session(write=False) as s:
        qc = s.get(QualityControl, qc_id)
        if qc is None or qc.job_id != job_id or not qc.plot_file:
            raise jq.NotFound(f"job {job_id} has no QC plot {qc_id}")
        rel = qc.plot_file
    path = safe_archive_path(p.archive_root, rel)
    return FileResponse(path, content_disposition_type="inline", filename=path.name)


def _evolution(p: Portal, obs_set: str) -> ObsSetStatus:
    with p.registry.session(write=False) as s:
        jobs = jq.obs_set_jobs(s, obs_set)
    return jq.status_evolution(obs_set, jobs)


@router.get(
    "/api/obssets/{obs_set}/jobs-status",
    response_model=ObsSetStatus,
    responses=ERRORS,
    tags=["operations"],
)
def api_obs_set_status(obs_set: str, p: Annotated[Portal, Depends(portal)]) -> ObsSetStatus:
    """Jobs per status over time for the jobs processing one observation set."""
    return _evolution(p, obs_set)


@router.get(
    "/obssets/{obs_set}/jobs-status.png",
    responses={**PNG, **ERRORS},
    response_class=Response,
    tags=["operations"],
)
def obs_set_status_png(obs_set: str, p: Annotated[Portal, Depends(portal)]) -> Response:
    """Stacked chart of jobs per status over time for one observation set (seed 000 fig. 9)."""
    return Response(status_evolution_png(_evolution(p, obs_set)), media_type="image/png")


@router.get("/obssets", include_in_schema=False)
def obs_set_lookup(obs_set: str = "") -> RedirectResponse:
    """Target of the obs-set form of the jobs page."""
    if not obs_set.strip():
        raise SurveydmError("give an observation set, e.g. 20261120_001")
    return RedirectResponse(f"/obssets/{quote(obs_set.strip())}/jobs-status", status_code=303)


@router.get("/obssets/{obs_set}/jobs-status", response_class=HTMLResponse, include_in_schema=False)
def page_obs_set_status(
    obs_set: str, request: Request, p: Annotated[Portal, Depends(portal)]
) -> HTMLResponse:
    ev = _evolution(p, obs_set)
    return p.render(request, "obsset_status.html", ev=ev)
