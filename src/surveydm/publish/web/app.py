"""The operations portal application: :func:`create_app` builds a FastAPI app over one registry
and one archive (no global state at import; ``surveydm serve`` runs it with uvicorn).

Pages are rendered on the server with Jinja2 and a little vanilla JavaScript; charts are PNG
images drawn by matplotlib; nothing is loaded from the network. Every HTML page has a JSON twin
under ``/api/`` with a pydantic response model, so the OpenAPI document (``/openapi.json``)
describes everything the pages show.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import DBAPIError

from surveydm import __version__
from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.errors import SurveydmError
from surveydm.publish.sqlbrowser import DEFAULT_TIME_LIMIT_S, SqlBrowser, SqlBrowserError
from surveydm.publish.web.auth import AccessPolicy, gate
from surveydm.publish.web.portal import Portal

HERE = Path(__file__).parent


def _format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _format_time(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if t else ""


def _format_number(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e5 else f"{v:.6g}"
    return str(v)


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    sql_reader_url: str | None = None,
    sql_time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    tap_limits: Any = None,
    access: AccessPolicy | str | None = None,
) -> FastAPI:
    """Build the portal over the registry and archive of ``settings``.

    Args:
        settings: the installation's settings (registry URL, archive root, release).
        registry: an open registry to use instead of opening ``settings.resolved_database_url``.
        sql_reader_url: PostgreSQL only: URL of a read-only login role for the SQL browser
            (default: the role ``surveydm_reader`` set up through the registry's user).
        sql_time_limit_s: statement time limit of the SQL browser, seconds.
        tap_limits: limits of the TAP service under ``/tap``
            (:class:`surveydm.publish.vo.tap.service.TapLimits`; default: its defaults).
        access: ``open`` (anonymous callers read the unreleased data: the laptop default) or
            ``closed`` (only public releases); default ``SURVEYDM_PORTAL_ACCESS`` or open.

    Every route goes through one dependency, :func:`surveydm.publish.web.auth.gate` (see that
    module). The registry schema must exist (``surveydm db upgrade``); the app writes only
    sessions, token use and validity flags set by curators.

    Raises:
        SurveydmError: an unknown ``access`` policy.
    """
    try:
        policy = AccessPolicy(access) if access is not None else AccessPolicy.from_env()
    except ValueError:
        raise SurveydmError(f"unknown access policy {access!r}: open or closed") from None
    registry = registry or Registry(settings.resolved_database_url)
    try:
        sql: SqlBrowser | None = SqlBrowser(
            registry.url, reader_url=sql_reader_url, time_limit_s=sql_time_limit_s
        )
        sql_error = None
    except SqlBrowserError as exc:
        sql, sql_error = None, str(exc)
    app = FastAPI(
        title="surveydm portal",
        version=__version__,
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: the portal is offline
        redoc_url=None,
        description="Operations control, data quality, nightly report and data access of a "
        "surveydm installation (JSON twins of the HTML pages). Authenticate with "
        "`Authorization: Bearer <token>` (`surveydm users token NAME`).",
        dependencies=[Depends(gate)],
    )
    app.state.access = policy
    app.state.portal = Portal(
        settings=settings,
        registry=registry,
        archive_root=Path(settings.archive_root),
        sql=sql,
        sql_error=sql_error,
        templates=_templates(),
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def _wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def _error(request: Request, status: int, message: str) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": message}, status_code=status)
        resp = app.state.portal.render(request, "error.html", status=status, message=message)
        resp.status_code = status
        return resp

    @app.exception_handler(SurveydmError)
    async def _surveydm_error(request: Request, exc: SurveydmError) -> Response:
        status = int(getattr(exc, "http_status", 400))
        resp = _error(request, status, str(exc))
        if status == 401:  # RFC 6750 section 3
            resp.headers["WWW-Authenticate"] = 'Bearer realm="surveydm"'
        return resp

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
            parts.append(f"{where}: {err.get('msg')}")
        return _error(request, 422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> Response:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        hint = ""
        if "no such table" in reason or "does not exist" in reason:
            hint = " (is the schema up to date? run `surveydm db upgrade`)"
        return _error(request, 503, f"registry error: {reason}{hint}")

    _install_routes(app, sql, tap_limits, Path(settings.archive_root))
    return app


def _templates() -> Jinja2Templates:
    """The portal's Jinja2 templates with its number, time and duration filters."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["duration"] = _format_duration
    templates.env.filters["when"] = _format_time
    templates.env.filters["num"] = _format_number
    templates.env.autoescape = True
    return templates


def _install_routes(
    app: FastAPI, sql: SqlBrowser | None, tap_limits: Any, archive_root: Path
) -> None:
    """The portal's pages and, when the SQL browser is available, TAP under ``/tap`` (it reads
    through the browser's read-only connections)."""
    from surveydm.publish.web import (
        routes_auth,
        routes_data,
        routes_inspector,
        routes_lineage,
        routes_ops,
        routes_report,
    )

    for module in (
        routes_auth,
        routes_ops,
        routes_report,
        routes_data,
        routes_lineage,
        routes_inspector,
    ):
        app.include_router(module.router)
    if sql is not None:
        from surveydm.publish.vo.tap.routes import install
        from surveydm.publish.vo.tap.service import TapService

        install(app, TapService(sql, tap_limits), archive_root / "tap-jobs")
