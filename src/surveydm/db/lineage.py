"""Lineage queries: the products a product was made from, and those made from it, walked by
recursive SQL (``WITH RECURSIVE`` on SQLite and PostgreSQL) over ``product_input``, and the
details of every product reached (file, production, job, calibration validity) in one join.

The graph is never loaded into Python to be walked: each direction is one recursive common
table expression whose ``UNION`` (not ``UNION ALL``) keeps each edge once, so it ends even on a
malformed graph with a cycle (seed 003, "full data lineage"; GUIDE: recursive CTEs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import CTE, Select, select, text
from sqlalchemy.orm import Session

from surveydm.db.models.calibration import CalibrationFrame
from surveydm.db.models.jobs import Job
from surveydm.db.models.production import Product, ProductInput, Production
from surveydm.db.models.raw import ArchiveFile

Direction = Literal["inputs", "dependents"]


@dataclass(frozen=True)
class Edge:
    """``product_id`` was made from ``input_id`` in the role ``role`` (raw, bias, flat...)."""

    product_id: int
    input_id: int
    role: str


@dataclass(frozen=True)
class ProductionInfo:
    """The production of a step: pipeline, release, code version and configuration."""

    id: int
    pipeline: str
    release: str
    software_version: str
    config_hash: str
    config: dict[str, Any]


@dataclass(frozen=True)
class JobInfo:
    """The job that made a product: task, worker and host, times and status."""

    id: int
    task: str
    name: str
    status: str
    worker: str | None
    host: str | None
    started: datetime | None
    ended: datetime | None
    config: dict[str, Any]


@dataclass(frozen=True)
class CalibrationInfo:
    """A calibration frame's kind, night and validity range (UTC)."""

    id: int
    kind: str
    filter_tray: str | None
    night: str
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True)
class ProductNode:
    """One product in a lineage graph with everything known about how it was made.

    Attributes:
        id, uuid, product_type, data_id: its identity; path: its archive file (None for
        catalog rows); quality: system QC (pass/warn/fail); validity: the human flag
        (bad/ok/qualified); created: UTC; production, job: None for raw files and loaded
        catalogs; calibration: for master calibrations, their validity range.
    """

    id: int
    uuid: str
    product_type: str
    data_id: dict[str, Any]
    path: str | None
    quality: str
    validity: str
    created: datetime
    production: ProductionInfo | None
    job: JobInfo | None
    calibration: CalibrationInfo | None


def without_jit(session: Session) -> None:
    """On PostgreSQL, turn JIT compilation off for the rest of the transaction: the planner
    cannot estimate the size of a recursive CTE (it guesses millions of rows), and compiling
    the plan then costs seconds for a query that runs in milliseconds."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


@contextmanager
def index_lookups(session: Session, small: bool = True) -> Iterator[None]:
    """On PostgreSQL, while a query over a few thousand products runs (``small``), plan it
    with nested loops of index lookups: the planner cannot estimate a recursive CTE (it guesses
    billions of rows) and then scans, hashes or merges whole tables (``product_input``,
    ``product``) for a night's stale listing that touches thousands of rows. Restored
    afterwards."""
    if not small or session.get_bind().dialect.name != "postgresql":
        yield
        return
    for name in _INDEX_ONLY:
        session.execute(text(f"SET LOCAL {name} = off"))
    try:
        yield
    finally:
        for name in _INDEX_ONLY:
            session.execute(text(f"RESET {name}"))


#: Planner methods turned off by :func:`index_lookups`: hash and merge joins, which the
#: planner otherwise feeds with whole tables (turning off sequential scans instead makes it
#: hash whole indexes).
_INDEX_ONLY = ("enable_hashjoin", "enable_mergejoin")


def _walk(start: Sequence[int] | Select[Any], direction: Direction) -> CTE:
    """The recursive CTE of every edge reachable from ``start`` (ids, or a SELECT of ids) in
    ``direction``."""
    pi = ProductInput.__table__
    cols = (pi.c.product_id, pi.c.input_id, pi.c.role)
    if direction == "inputs":
        base = select(*cols).where(pi.c.product_id.in_(start))
        cte = base.cte("walk", recursive=True)
        step = select(*cols).join(cte, pi.c.product_id == cte.c.input_id)
    else:
        base = select(*cols).where(pi.c.input_id.in_(start))
        cte = base.cte("walk", recursive=True)
        step = select(*cols).join(cte, pi.c.input_id == cte.c.product_id)
    return cte.union(step)


def edges(session: Session, start: Sequence[int], direction: Direction) -> list[Edge]:
    """Every lineage edge reachable from the products ``start``: towards their inputs (down to
    the raw files) or towards their dependents (everything made from them), by one recursive
    query. Ordered by (product, input)."""
    cte = _walk(list(start), direction)
    without_jit(session)
    rows = session.execute(
        select(cte.c.product_id, cte.c.input_id, cte.c.role).order_by(
            cte.c.product_id, cte.c.input_id
        )
    )
    return [Edge(*r) for r in rows]


def inputs_query(start: Select[Any]) -> CTE:
    """The recursive CTE (``product_id``, ``input_id``, ``role``) of every edge from the
    products a SELECT of ids gives down to their raw files (for use in other queries)."""
    return _walk(start, "inputs")


def dependents_query(start: Sequence[int]) -> Select[tuple[int]]:
    """SELECT of the ids of every product made, directly or not, from ``start`` (for use as a
    subquery: stale listings, reprocessing)."""
    cte = _walk(list(start), "dependents")
    return select(cte.c.product_id).distinct()


def nodes(session: Session, ids: Iterable[int]) -> dict[int, ProductNode]:
    """The :class:`ProductNode` of each product id (one query joining file, production, job
    and calibration frame)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    stmt = (
        select(Product, ArchiveFile.path, Production, Job, CalibrationFrame)
        .outerjoin(ArchiveFile, ArchiveFile.id == Product.file_id)
        .outerjoin(Production, Production.id == Product.production_id)
        .outerjoin(Job, Job.id == Product.job_id)
        .outerjoin(CalibrationFrame, CalibrationFrame.product_id == Product.id)
        .where(Product.id.in_(wanted))
    )
    out: dict[int, ProductNode] = {}
    for p, path, prod, job, cal in session.execute(stmt):
        out[p.id] = ProductNode(
            id=p.id,
            uuid=str(p.uuid),
            product_type=p.product_type,
            data_id=dict(p.data_id or {}),
            path=path,
            quality=str(p.quality),
            validity=p.validity,
            created=p.created,
            production=None
            if prod is None
            else ProductionInfo(
                prod.id,
                prod.pipeline,
                prod.release,
                prod.software_version,
                prod.config_hash,
                dict(prod.config or {}),
            ),  # fmt: skip
            job=None
            if job is None
            else JobInfo(
                job.id,
                job.task,
                job.name,
                job.status,
                job.worker,
                job.host,
                job.started,
                job.ended,
                dict(job.config or {}),
            ),  # fmt: skip
            calibration=None
            if cal is None
            else CalibrationInfo(
                cal.id, cal.kind, cal.filter_tray, cal.night, cal.valid_from, cal.valid_until
            ),
        )
    return out
