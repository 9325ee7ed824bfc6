"""Data access pages (seed 000 section 7.4): the archive by night and obs set with streamed
downloads (HTTP range requests) and checksums, the production table, the registry schema and the
read-only SQL browser."""

from __future__ import annotations

import base64
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import inspect, select

from surveydm.db.access import VisibleReleases
from surveydm.db.base import Base
from surveydm.db.models.production import Production
from surveydm.db.models.raw import ArchiveFile
from surveydm.errors import SurveydmError
from surveydm.publish.sqlbrowser import MAX_ROW_LIMIT, QueryResult, SqlBrowserError, check_limit
from surveydm.publish.web.auth import current_user, deny, visible
from surveydm.publish.web.plots import histogram_png, scatter_png
from surveydm.publish.web.portal import PageNotFound, Portal, portal
from surveydm.publish.web.safepath import safe_archive_path
from surveydm.publish.web.schemas import (
    ArchiveEntry,
    ArchiveFileInfo,
    ArchiveListing,
    ColumnInfo,
    ErrorBody,
    IndexInfo,
    ProductionRow,
    SchemaInfo,
    SqlRequest,
    SqlResult,
    TableInfo,
)

router = APIRouter()
ERRORS = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}}
PNG = {200: {"content": {"image/png": {}}, "description": "PNG image"}}


# -- archive ----------------------------------------------------------------------------------


def _clean_prefix(prefix: str) -> str:
    prefix = prefix.strip().strip("/")
    if any(part in ("..", ".") for part in prefix.split("/")) or "\\" in prefix:
        raise SurveydmError(f"not an archive folder: {prefix!r}")
    return prefix + "/" if prefix else ""


def archive_listing(p: Portal, prefix: str, vis: VisibleReleases | None = None) -> ArchiveListing:
    """Folders and files directly under ``prefix`` among the registered archive files (those
    ``vis`` may read, when given)."""
    prefix = _clean_prefix(prefix)
    with p.registry.session(write=False) as s:
        stmt = select(
            ArchiveFile.id,
            ArchiveFile.path,
            ArchiveFile.size,
            ArchiveFile.adler32,
            ArchiveFile.md5,
            ArchiveFile.state,
        ).order_by(ArchiveFile.path)
        if prefix:
            stmt = stmt.where(ArchiveFile.path.startswith(prefix, autoescape=True))
        if vis is not None:
            stmt = stmt.where(vis.file_clause(ArchiveFile.id))
        rows = s.execute(stmt).all()
    if prefix and not rows:
        raise PageNotFound(f"no archive folder {prefix!r}")
    dirs: dict[str, ArchiveEntry] = {}
    files: list[ArchiveEntry] = []
    for fid, path, size, adler32, md5, state in rows:
        rest = path[len(prefix) :]
        if "/" in rest:
            name = rest.split("/", 1)[0]
            entry = dirs.setdefault(name, ArchiveEntry(name=name, path=prefix + name, is_dir=True))
            entry.n_files += 1
            entry.size += size
        else:
            files.append(
                ArchiveEntry(
                    name=rest,
                    path=path,
                    is_dir=False,
                    n_files=1,
                    size=size,
                    file_id=fid,
                    adler32=adler32,
                    md5=md5,
                    state=state,
                    download_url=f"/archive/files/{fid}",
                )
            )
    parent = None
    if prefix:
        parent = prefix.rstrip("/").rsplit("/", 1)[0] if "/" in prefix.rstrip("/") else ""
    return ArchiveListing(prefix=prefix, parent=parent, entries=[*dirs.values(), *files])


@router.get("/api/archive", response_model=ArchiveListing, responses=ERRORS, tags=["data access"])
def api_archive(
    request: Request,
    p: Annotated[Portal, Depends(portal)],
    prefix: Annotated[str, Query(description="folder, e.g. raw/2026-11-20")] = "",
) -> ArchiveListing:
    """Browse the archive: ``raw/<night>/<obs_set>/`` and ``red/<release>/<obs_set>/`` (the
    files the caller may read)."""
    return archive_listing(p, prefix, visible(request))


@router.get("/archive", response_class=HTMLResponse, include_in_schema=False)
def page_archive(
    request: Request, p: Annotated[Portal, Depends(portal)], prefix: str = ""
) -> HTMLResponse:
    listing = archive_listing(p, prefix, visible(request))
    return p.render(request, "archive.html", listing=listing)


def _file_row(
    request: Request, p: Portal, file_id: int | None = None, path: str | None = None
) -> ArchiveFile:
    """The archive file asked for (404 if none; 401/403 if the caller may not read it)."""
    vis = visible(request)
    with p.registry.session(write=False) as s:
        stmt = select(ArchiveFile, vis.file_clause(ArchiveFile.id))
        stmt = (
            stmt.where(ArchiveFile.id == file_id)
            if file_id
            else stmt.where(ArchiveFile.path == path)
        )
        found = s.execute(stmt).first()
    if found is None:
        raise PageNotFound(f"no archive file {file_id or path!r}")
    if not found[1]:
        deny(current_user(request), f"archive file {found[0].id} is in a release you may not read")
    return found[0]


def _info(row: ArchiveFile) -> ArchiveFileInfo:
    return ArchiveFileInfo(
        id=row.id,
        path=row.path,
        size=row.size,
        adler32=row.adler32,
        md5=row.md5,
        state=row.state,
        created=row.created,
        verified=row.verified,
        download_url=f"/archive/files/{row.id}",
    )


@router.get(
    "/api/archive/files/{file_id}",
    response_model=ArchiveFileInfo,
    responses=ERRORS,
    tags=["data access"],
)
def api_archive_file(
    request: Request, file_id: int, p: Annotated[Portal, Depends(portal)]
) -> ArchiveFileInfo:
    """Size, checksums and state of one registered archive file."""
    return _info(_file_row(request, p, file_id=file_id))


def _download(p: Portal, row: ArchiveFile) -> FileResponse:
    path = safe_archive_path(p.archive_root, row.path)
    # RFC 3230 instance digests (MD5 in base64, ADLER32 in hex) plus plain copies.
    digests = [f"ADLER32={row.adler32}"]
    headers = {"X-Checksum-Adler32": row.adler32, "X-Archive-Path": row.path}
    if row.md5:
        digests.insert(0, f"MD5={base64.b64encode(bytes.fromhex(row.md5)).decode()}")
        headers["X-Checksum-MD5"] = row.md5
    headers["Digest"] = ", ".join(digests)
    return FileResponse(path, headers=headers, filename=path.name)


@router.get(
    "/archive/files/{file_id}",
    response_class=FileResponse,
    responses={200: {"description": "the file (supports Range)"}, **ERRORS},
    tags=["data access"],
)
def download_file(
    request: Request, file_id: int, p: Annotated[Portal, Depends(portal)]
) -> FileResponse:
    """Download one registered archive file, streamed, with HTTP range requests and its
    checksums in the ``Digest``, ``X-Checksum-MD5`` and ``X-Checksum-Adler32`` headers."""
    return _download(p, _file_row(request, p, file_id=file_id))


@router.get(
    "/archive/download/{path:path}",
    response_class=FileResponse,
    responses={200: {"description": "the file (supports Range)"}, **ERRORS},
    tags=["data access"],
)
def download_path(
    request: Request, path: str, p: Annotated[Portal, Depends(portal)]
) -> FileResponse:
    """Download a registered archive file by its archive path (same headers as by id)."""
    return _download(p, _file_row(request, p, path=path))


# -- productions --------------------------------------------------------------------------------


def productions(
    p: Portal, release: str | None, pipeline: str | None, vis: VisibleReleases | None = None
) -> list[ProductionRow]:
    """Every production (that ``vis`` may read, when given), newest first, optionally of one
    release and/or pipeline."""
    with p.registry.session(write=False) as s:
        stmt = select(Production).order_by(Production.id.desc())
        if vis is not None:
            stmt = stmt.where(vis.production_clause(Production.id))
        if release:
            stmt = stmt.where(Production.release == release)
        if pipeline:
            stmt = stmt.where(Production.pipeline == pipeline)
        return [
            ProductionRow(
                id=r.id,
                pipeline=r.pipeline,
                release=r.release,
                software_version=r.software_version,
                config=r.config or {},
                config_hash=r.config_hash,
                input_production_id=r.input_production_id,
                job_id=r.job_id,
                comments=r.comments,
                created=r.created,
            )
            for r in s.scalars(stmt)
        ]


@router.get("/api/productions", response_model=list[ProductionRow], tags=["data access"])
def api_productions(
    request: Request,
    p: Annotated[Portal, Depends(portal)],
    release: str | None = None,
    pipeline: str | None = None,
) -> list[ProductionRow]:
    """The production table (seed 000 section 7.4), filtered by release and pipeline (the
    productions the caller may read)."""
    return productions(p, release or None, pipeline or None, visible(request))


@router.get("/productions", response_class=HTMLResponse, include_in_schema=False)
def page_productions(
    request: Request,
    p: Annotated[Portal, Depends(portal)],
    release: str | None = None,
    pipeline: str | None = None,
) -> HTMLResponse:
    rows = productions(p, release or None, pipeline or None, visible(request))
    return p.render(request, "productions.html", rows=rows, release=release, pipeline=pipeline)


# -- schema -------------------------------------------------------------------------------------


def _model_docs() -> dict[str, str]:
    import surveydm.db.models  # noqa: F401  (fills Base.metadata and the mappers)

    docs: dict[str, str] = {}
    for mapper in Base.registry.mappers:
        table = getattr(mapper.class_, "__tablename__", None)
        doc = (mapper.class_.__doc__ or "").strip().split("\n\n")[0]
        if table and doc:
            docs[table] = " ".join(doc.split())
    return docs


def schema_info(p: Portal) -> SchemaInfo:
    """Tables, columns (type, nullability, key, description) and indexes of the registry, read
    by SQLAlchemy inspection of the live database; descriptions are the column comments
    (PostgreSQL stores them; on SQLite they come from the models)."""
    docs = _model_docs()
    meta = Base.metadata
    insp = inspect(p.registry.engine)
    tables: list[TableInfo] = []
    for name in sorted(insp.get_table_names()):
        model_table = meta.tables.get(name)
        pk = set(insp.get_pk_constraint(name).get("constrained_columns") or [])
        fks: dict[str, str] = {}
        for fk in insp.get_foreign_keys(name):
            for col, ref in zip(fk["constrained_columns"], fk["referred_columns"], strict=False):
                fks[col] = f"{fk['referred_table']}.{ref}"
        columns = []
        for col in insp.get_columns(name):
            comment = col.get("comment")
            if not comment and model_table is not None and col["name"] in model_table.c:
                comment = model_table.c[col["name"]].comment
            columns.append(
                ColumnInfo(
                    name=col["name"],
                    type=str(col["type"]),
                    nullable=bool(col.get("nullable", True)),
                    primary_key=col["name"] in pk,
                    description=comment,
                    foreign_key=fks.get(col["name"]),
                )
            )
        indexes = [
            IndexInfo(
                name=ix.get("name"),
                columns=[c for c in ix.get("column_names") or [] if c],
                unique=bool(ix.get("unique")),
            )
            for ix in insp.get_indexes(name)
        ]
        for uq in insp.get_unique_constraints(name):
            indexes.append(IndexInfo(name=uq.get("name"), columns=uq["column_names"], unique=True))
        table_comment = None
        with contextlib.suppress(NotImplementedError):
            table_comment = insp.get_table_comment(name).get("text")
        tables.append(
            TableInfo(
                name=name,
                description=table_comment or docs.get(name),
                columns=columns,
                indexes=indexes,
            )
        )
    return SchemaInfo(engine=p.registry.dialect, tables=tables)


@router.get("/api/schema", response_model=SchemaInfo, tags=["data access"])
def api_schema(p: Annotated[Portal, Depends(portal)]) -> SchemaInfo:
    """The registry schema: tables, columns, types, descriptions and indexes."""
    return schema_info(p)


@router.get("/schema", response_class=HTMLResponse, include_in_schema=False)
def page_schema(request: Request, p: Annotated[Portal, Depends(portal)]) -> HTMLResponse:
    return p.render(request, "schema.html", schema=schema_info(p))


# -- SQL browser --------------------------------------------------------------------------------


def _run_sql(p: Portal, query: str, limit: int | None) -> QueryResult:
    if p.sql is None:
        raise SqlBrowserError(f"the SQL browser is not available: {p.sql_error}")
    return p.sql.run(query, check_limit(limit))


def _sql_result(r: QueryResult) -> SqlResult:
    return SqlResult(
        columns=r.columns,
        rows=r.rows,
        n_rows=len(r.rows),
        truncated=r.truncated,
        limit=r.limit,
        elapsed_s=r.elapsed_s,
        engine=r.engine,
    )


@router.post("/api/sql", response_model=SqlResult, responses=ERRORS, tags=["data access"])
def api_sql(req: SqlRequest, p: Annotated[Portal, Depends(portal)]) -> SqlResult:
    """Run one read-only statement (row limit up to 10,000; statement time limit).

    Writes, several statements, and functions with side effects are refused by the database
    connection itself (read-only connection and authorizer on SQLite; read-only role and
    transaction on PostgreSQL) with HTTP 400 and the reason.
    """
    return _sql_result(_run_sql(p, req.query, req.limit))


@router.get(
    "/sql/result.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **ERRORS},
    tags=["data access"],
)
def sql_csv(
    p: Annotated[Portal, Depends(portal)],
    q: Annotated[str, Query(description="the SQL statement")],
    limit: Annotated[int, Query(ge=1, le=MAX_ROW_LIMIT)] = 1000,
) -> Response:
    """The result of a read-only query as a CSV file (RFC 4180)."""
    result = _run_sql(p, q, limit)
    return Response(
        result.to_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="query.csv"'},
    )


@router.get(
    "/sql/plot.png", response_class=Response, responses={**PNG, **ERRORS}, tags=["data access"]
)
def sql_plot(
    p: Annotated[Portal, Depends(portal)],
    q: Annotated[str, Query(description="the SQL statement")],
    x: Annotated[str, Query(description="column for the histogram or the scatter's x axis")],
    y: Annotated[
        str | None, Query(description="second column: scatter plot of y against x")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROW_LIMIT)] = 1000,
) -> Response:
    """A histogram of column ``x`` of the result, or a scatter plot of ``y`` against ``x``."""
    result = _run_sql(p, q, limit)
    if not y:
        return Response(histogram_png(result.numeric_column(x), x), media_type="image/png")
    ix, iy = _column_index(result, x), _column_index(result, y)
    pairs = [
        (float(r[ix]), float(r[iy]))
        for r in result.rows
        if isinstance(r[ix], int | float) and isinstance(r[iy], int | float)
    ]
    return Response(
        scatter_png([a for a, _ in pairs], [b for _, b in pairs], x, y), media_type="image/png"
    )


def _column_index(result: QueryResult, name: str) -> int:
    if name not in result.columns:
        raise SqlBrowserError(f"no column {name!r} in the result; columns: {result.columns}")
    return result.columns.index(name)


@router.get("/sql", response_class=HTMLResponse, include_in_schema=False)
def page_sql(
    request: Request,
    p: Annotated[Portal, Depends(portal)],
    q: str = "",
    limit: int = 1000,
    x: str = "",
    y: str = "",
) -> HTMLResponse:
    result: QueryResult | None = None
    error: str | None = None
    context: dict[str, Any] = {"q": q, "limit": limit, "x": x, "y": y, "max_limit": MAX_ROW_LIMIT}
    if q.strip():
        try:
            result = _run_sql(p, q, limit)
        except SurveydmError as exc:
            error = str(exc)
    from urllib.parse import urlencode

    context["csv_url"] = "/sql/result.csv?" + urlencode({"q": q, "limit": limit})
    if result is not None and x:
        params = {"q": q, "limit": limit, "x": x}
        if y:
            params["y"] = y
        context["plot_url"] = "/sql/plot.png?" + urlencode(params)
    resp = p.render(request, "sql.html", result=result, error=error, **context)
    if error:
        resp.status_code = 400
    return resp
