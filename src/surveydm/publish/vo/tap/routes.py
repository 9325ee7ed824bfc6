"""The ``/tap`` router (TAP 1.1): ``sync``, ``async`` (UWS 1.1), VOSI ``capabilities``,
``availability``, ``tables`` and DALI ``examples``. Errors are DALI error VOTables.

Every path is open to every caller (the portal's gate finds who it is); queries read the
published tables through the caller's row filters (:mod:`surveydm.publish.vo.tap.access`: no
row of a data release the caller may not read), and an asynchronous job is seen only by its
owner (anonymous jobs by everyone) and by curators; see docs/vo.md.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from surveydm.db.access import Role, User, visible_releases
from surveydm.errors import SurveydmError
from surveydm.publish.vo.tap import vosi
from surveydm.publish.vo.tap.access import row_filters
from surveydm.publish.vo.tap.output import error_votable
from surveydm.publish.vo.tap.service import TapService, param
from surveydm.publish.vo.tap.uws import PHASES, Job, JobStore, UwsError
from surveydm.publish.web.auth import AccessPolicy, current_user

XML = "text/xml"
VOTABLE = "application/x-votable+xml"

router = APIRouter(prefix="/tap", tags=["tap"])


def _tap(request: Request) -> tuple[TapService, JobStore]:
    return request.app.state.tap, request.app.state.tap_jobs


#: Seconds a caller's row filters are reused (per user and access policy): working them out
#: takes two queries on the registry (1-3 ms of CPU, more on a loaded machine), as much as a
#: cone search itself. A change of release visibility or grants reaches TAP within this time.
FILTERS_TTL_S = 1.0
_filters_lock = threading.Lock()


def _filters(request: Request) -> dict[str, str]:
    """The caller's row filters (none for curators, or when nothing is hidden from them)."""
    user = current_user(request)
    if user.has(Role.CURATOR):
        return {}
    policy = request.app.state.access
    key = (user.id, user.role, policy)
    now = time.monotonic()
    cache = request.app.state.tap_filters  # per app (and so per registry)
    with _filters_lock:
        hit = cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    with request.app.state.portal.registry.session(write=False) as s:
        vis = visible_releases(s, user, open_unreleased=policy == AccessPolicy.OPEN)
        filters = row_filters(s, vis)
    with _filters_lock:
        if len(cache) > 4096:
            cache.clear()
        cache[key] = (now + FILTERS_TTL_S, filters)
    return filters


def _may_see(user: User, job: Job) -> bool:
    """A job is seen by its owner, by curators, and (anonymous jobs) by everyone."""
    return job.owner_id is None or job.owner_id == user.name or user.has(Role.CURATOR)


def _job(request: Request, job_id: str) -> Job:
    """The job ``job_id`` if the caller may see it.

    Raises:
        UwsError: no such job, or another user's (404 both: its existence is not told).
    """
    _, jobs = _tap(request)
    job = jobs.get(job_id)
    if not _may_see(current_user(request), job):
        raise UwsError(f"no job {job_id!r}", 404)
    return job


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/tap"


async def _params(request: Request) -> dict[str, str]:
    params, _files = await _params_files(request)
    return params


async def _params_files(request: Request) -> tuple[dict[str, str], dict[str, bytes]]:
    """Query and form parameters, and posted files (UPLOAD) up to the upload size limit."""
    params: dict[str, str] = dict(request.query_params)
    files: dict[str, bytes] = {}
    if request.method == "POST":
        limit = request.app.state.tap.limits.upload_max_bytes
        form = await request.form()
        for k, v in form.multi_items():
            if isinstance(v, str):
                params[k] = v
            else:
                files[k] = await v.read(limit + 1)
    return params, files


def _error(message: str, status: int = 400) -> Response:
    return Response(error_votable(message), status_code=status, media_type=VOTABLE)


@router.get("", include_in_schema=False)
def tap_root(request: Request) -> Response:
    """A landing page naming the endpoints."""
    base = _base(request)
    links = "".join(
        f'<li><a href="{base}/{p}">{p}</a></li>'
        for p in ("capabilities", "availability", "tables", "examples", "async")
    )
    return Response(
        f"<html><body><h1>surveydm TAP</h1><ul>{links}</ul></body></html>", media_type="text/html"
    )


@router.get("/sync")
async def tap_sync_get(request: Request) -> Response:
    """Synchronous query (TAP 1.1 section 2.2.1) by GET: the result or an error VOTable."""
    return await _sync(request)


@router.post("/sync")
async def tap_sync_post(request: Request) -> Response:
    """Synchronous query by POST (form or multipart with UPLOAD files)."""
    return await _sync(request)


async def _sync(request: Request) -> Response:
    service, _ = _tap(request)
    params, files = await _params_files(request)

    def start():  # in a worker thread: the statement may run long before its first row
        q = service.prepare(params, files, _filters(request))
        pieces = service.stream(q, service.limits.sync_time_limit_s)
        return q, *_head(pieces)

    try:
        q, head, rest = await run_in_threadpool(start)
    except SurveydmError as exc:
        return _error(str(exc))
    if rest is None:  # the whole document: one response, no further thread hops
        return Response(head, media_type=q.fmt.mime)
    return StreamingResponse(itertools.chain([head], rest), media_type=q.fmt.mime)


#: A sync result up to this size is sent as one response body (a cone search's VOTable);
#: a longer one is streamed after it (each streamed piece is read in a worker thread).
WHOLE_BYTES = 1 << 20


def _head(pieces: Iterator[bytes]) -> tuple[bytes, Iterator[bytes] | None]:
    """The first pieces of a document up to :data:`WHOLE_BYTES`, and the rest (None: the
    document ended within them)."""
    head, size = [], 0
    for piece in pieces:
        head.append(piece)
        size += len(piece)
        if size >= WHOLE_BYTES:
            return b"".join(head), pieces
    return b"".join(head), None


@router.get("/capabilities")
def tap_capabilities(request: Request) -> Response:
    """VOSI capabilities."""
    service, _ = _tap(request)
    return Response(vosi.capabilities(_base(request), service.limits), media_type=XML)


@router.get("/availability")
def tap_availability(request: Request) -> Response:
    """VOSI availability: a trivial query through the read-only connection."""
    service, _ = _tap(request)
    try:
        q = service.prepare(
            {"LANG": "ADQL", "QUERY": "SELECT TOP 1 schema_name FROM TAP_SCHEMA.schemas"}
        )
        for _ in service.stream(q, 10.0):
            pass
        ok, note = True, "the service accepts queries"
    except SurveydmError as exc:
        ok, note = False, f"the registry cannot be queried: {exc}"
    return Response(vosi.availability(ok, note), media_type=XML)


@router.get("/tables")
def tap_tables(request: Request, detail: str | None = None) -> Response:
    """VOSI tables: every table ADQL can name (detail=min: names only)."""
    service, _ = _tap(request)
    catalog, _v = service.catalog_and_virtual
    tables = list(catalog.tables.values())
    return Response(vosi.tableset(tables, detail != "min"), media_type=XML)


@router.get("/tables/{name}")
def tap_table(request: Request, name: str) -> Response:
    """VOSI 1.1: one table."""
    service, _ = _tap(request)
    catalog, _v = service.catalog_and_virtual
    table = catalog.find(name.split("."))
    if table is None:
        return Response(f"no table {name}", status_code=404, media_type="text/plain")
    return Response(vosi.one_table(table), media_type=XML)


@router.get("/examples")
def tap_examples(request: Request) -> Response:
    """DALI examples."""
    return Response(vosi.examples(_base(request)), media_type="application/xhtml+xml")


# ----------------------------------------------------------------------------- UWS
def _uws_error(exc: UwsError) -> Response:
    return Response(str(exc), status_code=exc.http_status, media_type="text/plain")


@router.get("/async")
def uws_list(request: Request) -> Response:
    """UWS job list (PHASE and LAST filters)."""
    _, jobs = _tap(request)
    phases = [p.upper() for p in request.query_params.getlist("PHASE") if p.upper() in PHASES]
    last = request.query_params.get("LAST")
    n = int(last) if last and last.isdigit() else None
    user = current_user(request)
    mine = [j for j in jobs.list(phases) if _may_see(user, j)]
    mine = mine[:n] if n is not None else mine
    return Response(jobs.jobs_xml(mine, _base(request)), media_type=XML)


@router.post("/async")
async def uws_create(request: Request) -> Response:
    """Create a job (303 to it); its parameters are checked when it runs."""
    _, jobs = _tap(request)
    params, files = await _params_files(request)
    user = current_user(request)
    filters = await run_in_threadpool(_filters, request)
    job = jobs.create(params, owner=None if user.anonymous else user.name, files=files,
                      filters=filters)  # fmt: skip
    return RedirectResponse(f"{_base(request)}/async/{job.job_id}", status_code=303)


@router.get("/async/{job_id}")
def uws_job(request: Request, job_id: str, WAIT: int | None = None, PHASE: str | None = None):
    """The job document (UWS 1.1 blocking WAIT honoured up to 60 s)."""
    _, jobs = _tap(request)
    try:
        job = _job(request, job_id)
        if WAIT is not None and job.phase in ("PENDING", "QUEUED", "EXECUTING"):
            start_phase = PHASE.upper() if PHASE else job.phase
            deadline = time.monotonic() + (60 if WAIT < 0 else min(WAIT, 60))
            while time.monotonic() < deadline and job.phase == start_phase:
                time.sleep(0.1)
                job = jobs.get(job_id)
        return Response(job.xml(_base(request)), media_type=XML)
    except UwsError as exc:
        return _uws_error(exc)


@router.post("/async/{job_id}")
async def uws_job_post(request: Request, job_id: str) -> Response:
    """ACTION=DELETE on the job."""
    _, jobs = _tap(request)
    params = await _params(request)
    try:
        _job(request, job_id)
        if (param(params, "ACTION") or "").upper() == "DELETE":
            jobs.delete(job_id)
            return RedirectResponse(f"{_base(request)}/async", status_code=303)
        jobs.update_parameters(job_id, params)
    except UwsError as exc:
        return _uws_error(exc)
    return RedirectResponse(f"{_base(request)}/async/{job_id}", status_code=303)


@router.delete("/async/{job_id}")
def uws_job_delete(request: Request, job_id: str) -> Response:
    """Delete the job."""
    _, jobs = _tap(request)
    try:
        _job(request, job_id)
        jobs.delete(job_id)
    except UwsError as exc:
        return _uws_error(exc)
    return RedirectResponse(f"{_base(request)}/async", status_code=303)


_SIMPLE = {
    "phase": lambda j: j.phase,
    "executionduration": lambda j: str(j.execution_duration),
    "destruction": lambda j: j.destruction,
    "quote": lambda j: "",
    "owner": lambda j: j.owner_id or "",
    "runId": lambda j: j.run_id or "",
}


@router.get("/async/{job_id}/{item}")
def uws_item(request: Request, job_id: str, item: str) -> Response:
    """phase, executionduration, destruction, quote, owner, error, parameters, results."""
    try:
        job = _job(request, job_id)
    except UwsError as exc:
        return _uws_error(exc)
    if item in _SIMPLE:
        return Response(_SIMPLE[item](job), media_type="text/plain")
    if item == "error":
        if job.phase != "ERROR":
            return Response("no error", status_code=404, media_type="text/plain")
        return _error(job.error or "error", status=200)
    if item in ("parameters", "results"):
        doc = job.xml(_base(request))
        tag = f"uws:{item}"
        inner = doc[doc.index(f"<{tag}>") : doc.index(f"</{tag}>") + len(tag) + 3]
        head = doc[doc.index("<uws:job ") : doc.index(">", doc.index("<uws:job ")) + 1]
        ns = head.replace("<uws:job ", f"<{tag} ").replace(' version="1.1"', "")
        return Response(
            '<?xml version="1.0" encoding="UTF-8"?>\n' + ns + inner[len(tag) + 2 :], media_type=XML
        )
    return Response(f"no {item} in a UWS job", status_code=404, media_type="text/plain")


@router.get("/async/{job_id}/results/result")
def uws_result(request: Request, job_id: str) -> Response:
    """The result of a COMPLETED job."""
    _, jobs = _tap(request)
    try:
        mime = _job(request, job_id).result_mime or VOTABLE
        path: Path = jobs.result_path(job_id)
    except UwsError as exc:
        return _uws_error(exc)
    return FileResponse(path, media_type=mime)


@router.post("/async/{job_id}/{item}")
async def uws_item_post(request: Request, job_id: str, item: str) -> Response:
    """PHASE=RUN/ABORT, EXECUTIONDURATION, DESTRUCTION, parameters."""
    _, jobs = _tap(request)
    params = await _params(request)
    try:
        _job(request, job_id)
        if item == "phase":
            phase = (param(params, "PHASE") or "").upper()
            if phase == "RUN":
                jobs.run(job_id)
            elif phase == "ABORT":
                jobs.abort(job_id)
            else:
                raise UwsError(f"PHASE must be RUN or ABORT, not {phase!r}")
        elif item == "executionduration":
            jobs.set_duration(job_id, param(params, "EXECUTIONDURATION") or "")
        elif item == "destruction":
            jobs.set_destruction(job_id, param(params, "DESTRUCTION") or "")
        elif item == "parameters":
            jobs.update_parameters(job_id, params)
        else:
            raise UwsError(f"cannot change {item} of a UWS job", 404)
    except UwsError as exc:
        return _uws_error(exc)
    return RedirectResponse(f"{_base(request)}/async/{job_id}", status_code=303)


def install(app, service: TapService, jobs_dir: Path) -> None:
    """Mount the TAP router on ``app`` with ``service`` and a job store in ``jobs_dir``."""
    app.state.tap = service
    app.state.tap_filters = {}  # (user id, role, policy) -> (expiry, row filters)
    app.state.tap_jobs = JobStore(
        jobs_dir,
        str(service.browser.url.render_as_string(hide_password=False)),
        reader_url=(
            service.browser.reader_url.render_as_string(hide_password=False)
            if service.browser.reader_url
            else None
        ),
        default_duration_s=service.limits.async_time_limit_s,
        hard_duration_s=service.limits.async_time_limit_hard_s,
        destruction_days=service.limits.destruction_days,
        max_running=service.limits.max_running_jobs,
    )
    app.include_router(router)
