"""The one helper through which every pipeline task records what it made: QC checks, product
files written through the archive, product rows with their lineage and quality, and any
task-specific rows, all in the transaction that marks the job done (``ctx.on_commit``), so a
re-run never duplicates them.

A task's I/O step builds :class:`Check` values (pure, from its science result), the
:class:`OutputFile` values it writes and the :class:`Lineage` of its inputs, and calls
:func:`publish` once. The product quality is the worst result of the checks
(:meth:`surveydm.orchestration.qc.QCResult.worst`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.archive import Archive
from surveydm.archive.store import StoredFile
from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile
from surveydm.orchestration import JobContext
from surveydm.orchestration.qc import QCLimit, QCResult
from surveydm.pipelines.base.connections import Output, RawFrame
from surveydm.pipelines.productions import add_product, raw_product


@dataclass(frozen=True)
class Check:
    """One QC measurement and its limits (a ``quality_control`` row once recorded).

    Attributes:
        name: check name; value: the measurement (None or NaN: not measured, fails when a
        limit is set); limit: :class:`~surveydm.orchestration.qc.QCLimit`; units,
        description, reference: shown with it.
    """

    name: str
    value: float | None
    limit: QCLimit
    units: str = ""
    description: str = ""
    reference: str | None = None


@dataclass(frozen=True)
class OutputFile:
    """A product file to write: its declared output, data ID, archive path and writer.

    ``write(path)`` must create the file at ``path`` (see
    :meth:`surveydm.archive.Archive.write_product`).
    """

    output: Output
    data_id: dict[str, Any]
    path: str
    write: Callable[[Path], None]


@dataclass
class Lineage:
    """The inputs of a task's products: raw exposures and other products by role."""

    raw: Sequence[RawFrame] = ()
    products: dict[str, list[int]] = field(default_factory=dict)

    def resolve(self, session: Session) -> dict[str, list[int]]:
        """Input product ids by role (the raw files' ``raw`` products are created on first
        use)."""
        raw = [raw_product(session, f.file_id, {"mosaic_id": f.mosaic_id}).id for f in self.raw]
        return {"raw": raw, **self.products} if self.raw else dict(self.products)


#: ``rows(session, products_by_type, quality)``: task-specific rows recorded with the products.
RowsWriter = Callable[[Session, dict[str, Product], QCResult], None]


@dataclass(frozen=True)
class Published:
    """What :func:`publish` did: the stored files by product type and the products' quality."""

    stored: dict[str, StoredFile]
    quality: QCResult

    @property
    def paths(self) -> list[str]:
        """Archive paths of the stored files."""
        return [st.path for st in self.stored.values()]


def record_checks(ctx: JobContext, checks: Sequence[Check]) -> QCResult:
    """Record QC checks on the job; returns the worst result (``pass`` when none)."""
    results = [
        ctx.qc(
            c.name,
            c.value,
            min=c.limit.min,
            max=c.limit.max,
            warn_min=c.limit.warn_min,
            warn_max=c.limit.warn_max,
            units=c.units,
            description=c.description,
            reference=c.reference,
        )
        for c in checks
    ]
    return QCResult.worst(results)


def publish(
    ctx: JobContext,
    store: Archive,
    files: Sequence[OutputFile],
    lineage: Lineage,
    checks: Sequence[Check] = (),
    rows: RowsWriter | None = None,
) -> Published:
    """Record ``checks``, write ``files`` through the archive and, when the job commits, record
    their ``archive_file`` rows and products (data ID, production, job, lineage, quality = the
    worst check) and then ``rows``.

    Raises:
        surveydm.archive.ArchiveConflict, ArchiveWriteError: a file could not be written (a
            fault: the job is retried).
    """
    quality = record_checks(ctx, checks)
    stored = {f.output.product_type: store.write_product(f.path, f.write) for f in files}
    data_ids: Mapping[str, dict[str, Any]] = {f.output.product_type: f.data_id for f in files}

    def record(session: Session) -> None:
        inputs = lineage.resolve(session)
        products = {
            product_type: add_product(
                session,
                product_type,
                data_id=data_ids[product_type],
                production_id=ctx.production_id,
                job_id=ctx.job_id,
                file_id=record_file(session, st).id,
                inputs=inputs,
                quality=quality,
            )
            for product_type, st in stored.items()
        }
        if rows is not None:
            rows(session, products, quality)

    ctx.on_commit(record)
    return Published(stored, quality)


def record_file(session: Session, stored: StoredFile) -> ArchiveFile:
    """The ``archive_file`` row of a stored product (re-used if the path is already recorded)."""
    row = session.scalar(select(ArchiveFile).where(ArchiveFile.path == stored.path))
    if row is None:
        row = ArchiveFile(
            path=stored.path, size=stored.size, adler32=stored.adler32, md5=stored.md5
        )
        session.add(row)
        session.flush()
    return row
