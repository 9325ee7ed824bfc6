"""The memba object catalog beyond one database (seed 000 section 7.6, CosmoHub): every
reference source of a memba production with its co-added fluxes per band, one row per source,
written as a HATS catalog (HEALPix-partitioned Parquet, Caplar et al. / LINCC; readable by LSDB's
``lsdb.read_hats``) with the ``hats-import`` pipeline on Dask, or as one Parquet file.

Columns: ``ref_id``; ``ra``, ``dec`` (deg, ICRS, of the reference catalog); ``mag_r``;
``point_source``; per band B of the production ``flux_B``, ``flux_error_B`` (nJy), ``chi2_B``
and ``n_coadd_B`` (NULL where the source has no co-add in B). Sources are read from the registry
in chunks of ``chunk`` reference ids and staged as Parquet files, so memory stays bounded.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from surveydm.db import Registry
from surveydm.db.models.multiepoch import DeepRefSource, ForcedApertureCoadd, MembaRefCat
from surveydm.db.models.production import Production
from surveydm.errors import SurveydmError

#: Export formats.
FORMATS = ("hats", "parquet")


class ExportError(SurveydmError):
    """The export cannot run: no memba production, an unknown format, or an existing output."""


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_objects` wrote: ``path``, ``format``, memba ``production_id``,
    ``rows`` (sources), ``bands`` (sorted band names)."""

    path: Path
    format: str
    production_id: int
    rows: int
    bands: list[str]


def latest_memba_production(registry: Registry) -> int:
    """Id of the newest memba production.

    Raises:
        ExportError: no memba production exists (run ``surveydm memba`` first).
    """
    with registry.session(write=False) as s:
        pid = s.scalar(
            select(Production.id)
            .where(Production.pipeline == "memba")
            .order_by(Production.id.desc())
            .limit(1)
        )
    if pid is None:
        raise ExportError("no memba production to export: run `surveydm memba` first")
    return int(pid)


def export_objects(
    registry: Registry,
    out: Path,
    *,
    fmt: str = "hats",
    production_id: int | None = None,
    chunk: int = 100_000,
    processes: int = 1,
) -> ExportSummary:
    """Write the object catalog of memba ``production_id`` (default: the newest) to ``out``
    (a HATS catalog directory, or a Parquet file; module doc).

    Raises:
        ExportError: unknown ``fmt``, ``out`` exists, or no such memba production.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists():
        raise ExportError(f"{out} exists: export into a new path")
    pid = latest_memba_production(registry) if production_id is None else production_id
    with registry.session(write=False) as s:
        link = s.get(MembaRefCat, pid)
        if link is None:
            raise ExportError(f"production {pid} is not a memba production with a catalog")
        bands = sorted(
            s.scalars(
                select(ForcedApertureCoadd.band)
                .where(ForcedApertureCoadd.production_id == pid)
                .distinct()
            )
        )
    with tempfile.TemporaryDirectory(prefix="surveydm-export-") as tmp:
        staged, rows = _stage(registry, pid, link.refcat_id, bands, Path(tmp), chunk)
        if fmt == "parquet":
            _concatenate(staged, out)
        else:
            _hats_import(staged, out, Path(tmp), processes)
    return ExportSummary(out, fmt, pid, rows, bands)


def _stage(
    registry: Registry, pid: int, refcat_id: int, bands: list[str], tmp: Path, chunk: int
) -> tuple[list[Path], int]:
    """Parquet files of ``chunk`` sources each (the production's sources with a co-add)."""
    with registry.session(write=False) as s:
        ids = np.array(
            s.scalars(
                select(ForcedApertureCoadd.ref_id)
                .where(ForcedApertureCoadd.production_id == pid)
                .distinct()
                .order_by(ForcedApertureCoadd.ref_id)
            ).all(),
            np.int64,
        )
    files = []
    for k, lo in enumerate(range(0, len(ids), chunk)):
        part = ids[lo : lo + chunk]
        table = _object_table(registry, pid, refcat_id, bands, int(part[0]), int(part[-1]))
        files.append(tmp / f"objects_{k:05d}.parquet")
        pq.write_table(table, files[-1])
    return files, len(ids)


def _object_table(
    registry: Registry, pid: int, refcat_id: int, bands: list[str], lo: int, hi: int
) -> pa.Table:
    """One row per reference source with ``lo <= ref_id <= hi`` and a co-add (module doc)."""
    with registry.session(write=False) as s:
        src = s.execute(
            select(DeepRefSource.ref_id, DeepRefSource.ra, DeepRefSource.dec,
                   DeepRefSource.mag_r, DeepRefSource.point_source)
            .where(DeepRefSource.refcat_id == refcat_id, DeepRefSource.ref_id.between(lo, hi))
            .order_by(DeepRefSource.ref_id)
        ).all()  # fmt: skip
        co = s.execute(
            select(ForcedApertureCoadd.ref_id, ForcedApertureCoadd.band, ForcedApertureCoadd.flux,
                   ForcedApertureCoadd.flux_error, ForcedApertureCoadd.chi2,
                   ForcedApertureCoadd.n_coadd)
            .where(ForcedApertureCoadd.production_id == pid,
                   ForcedApertureCoadd.ref_id.between(lo, hi))
        ).all()  # fmt: skip
    ref_id = np.array([r.ref_id for r in src], np.int64)
    index = {int(r): i for i, r in enumerate(ref_id)}
    n = len(ref_id)
    cols: dict[str, pa.Array] = {
        "ref_id": pa.array(ref_id),
        "ra": pa.array([r.ra for r in src], pa.float64()),
        "dec": pa.array([r.dec for r in src], pa.float64()),
        "mag_r": pa.array([r.mag_r for r in src], pa.float64()),
        "point_source": pa.array([bool(r.point_source) for r in src], pa.bool_()),
    }
    per_band = {b: ([None] * n, [None] * n, [None] * n, [None] * n) for b in bands}
    for r in co:
        i = index.get(int(r.ref_id))
        if i is None:
            continue
        flux, err, chi2, cnt = per_band[r.band]
        flux[i], err[i], chi2[i], cnt[i] = r.flux, r.flux_error, r.chi2, r.n_coadd
    for b in bands:
        flux, err, chi2, cnt = per_band[b]
        cols[f"flux_{b}"] = pa.array(flux, pa.float64())
        cols[f"flux_error_{b}"] = pa.array(err, pa.float64())
        cols[f"chi2_{b}"] = pa.array(chi2, pa.float64())
        cols[f"n_coadd_{b}"] = pa.array(cnt, pa.int32())
    keep = np.array([any(per_band[b][3][i] is not None for b in bands) for i in range(n)], bool)
    return pa.table(cols).filter(pa.array(keep))


def _concatenate(files: list[Path], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tables = [pq.read_table(f) for f in files]
    if not tables:
        raise ExportError("the memba production has no co-added fluxes to export")
    pq.write_table(pa.concat_tables(tables), out)


def _hats_import(files: list[Path], out: Path, tmp: Path, processes: int) -> None:
    """Run hats-import's catalog pipeline on the staged files, on an in-process Dask client
    with ``processes`` threads (the import is I/O and Arrow work)."""
    if not files:
        raise ExportError("the memba production has no co-added fluxes to export")
    try:
        from dask.distributed import Client
        from hats_import.catalog.arguments import ImportArguments
        from hats_import.pipeline import pipeline_with_client
    except ImportError as exc:
        raise ExportError(
            f"the HATS export needs hats-import ({exc}): pip install 'surveydm[hats]'"
        ) from None

    out.parent.mkdir(parents=True, exist_ok=True)
    args = ImportArguments(
        output_path=out.parent,
        output_artifact_name=out.name,
        input_file_list=[str(f) for f in files],
        file_reader="parquet",
        ra_column="ra",
        dec_column="dec",
        catalog_type="object",
        tmp_dir=tmp / "hats-tmp",
        progress_bar=False,
        resume=False,
    )
    try:
        with Client(
            processes=False, n_workers=1, threads_per_worker=max(processes, 1),
            dashboard_address=None,
        ) as client:  # fmt: skip
            pipeline_with_client(args, client)
    except Exception:
        shutil.rmtree(out, ignore_errors=True)  # never leave a half-written catalog
        raise
