"""Reference catalogs: load FITS / CSV / Parquet catalogs into the registry and query them by
sky region (``surveydm refcat load FILE --name NAME``).

Accepted columns (case-insensitive): ``ra``, ``dec`` (deg, required); ``id`` / ``source_id``;
``pmra``, ``pmdec`` (mas/yr); ``ra_error``, ``dec_error`` (mas); and per band ``mag_<band>``
with ``magerr_<band>`` (AB). The epoch of the positions comes from ``--epoch``, else the
table's ``EPOCH`` metadata, else 2016.0 (Gaia DR3). This is the format the simulator writes
(``refcat.fits``, see docs/simulate.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.coordinates import angular_separation
from astropy.table import Table
from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.orm import Session

from surveydm.db import Registry
from surveydm.db.models.refcat import RefCat, RefCatMagnitude, RefCatSource
from surveydm.db.spatial import cone_ranges, healpix_index
from surveydm.errors import SurveydmError
from surveydm.pipelines.productions import add_product

_BATCH = 20_000


class RefCatError(SurveydmError):
    """A reference catalog cannot be loaded or queried."""


@dataclass(frozen=True)
class LoadReport:
    """Outcome of :func:`load_refcat`."""

    name: str
    n_sources: int
    bands: list[str]
    replaced: bool


def read_catalog_file(path: Path) -> Table:
    """Read a FITS, CSV or Parquet table. Raises RefCatError for other formats or bad files."""
    suffix = "".join(path.suffixes[-2:]).lower()
    fmt = (
        "fits"
        if suffix.endswith((".fits", ".fit", ".fits.gz"))
        else "csv"
        if suffix.endswith(".csv")
        else "parquet"
        if suffix.endswith((".parquet", ".pq"))
        else None
    )
    if fmt is None:
        raise RefCatError(f"{path}: unknown catalog format (use .fits, .csv or .parquet)")
    try:
        if fmt == "parquet":  # pyarrow directly: astropy's reader would need pandas
            import pyarrow.parquet as pq

            arrow = pq.read_table(path)
            meta = {k.decode(): v.decode() for k, v in (arrow.schema.metadata or {}).items()}
            return Table(
                {c: arrow.column(c).to_numpy(zero_copy_only=False) for c in arrow.column_names},
                meta={k: v for k, v in meta.items() if k.upper() == "EPOCH"},
            )
        return Table.read(path, format=fmt)
    except (OSError, ValueError) as exc:
        raise RefCatError(f"{path}: cannot read {fmt} table: {exc}") from exc


def _column(table: Table, *names: str) -> np.ndarray | None:
    lower = {c.lower(): c for c in table.colnames}
    for name in names:
        if name in lower:
            col = table[lower[name]]
            return np.asarray(col.filled(np.nan) if hasattr(col, "filled") else col, dtype=float)
    return None


@dataclass(frozen=True)
class _Columns:
    """The columns of a reference catalog file, as float arrays (None when absent); ``good``
    marks the rows with a finite position."""

    ra: np.ndarray
    dec: np.ndarray
    good: np.ndarray
    ids: np.ndarray
    healpix: np.ndarray
    bands: list[str]
    mags: dict[str, np.ndarray]
    mag_errors: dict[str, np.ndarray | None]
    optional: dict[str, np.ndarray | None]

    @classmethod
    def of(cls, table: Table, path: Path) -> _Columns:
        """Raises RefCatError: missing ``ra``/``dec`` or no ``mag_<band>`` column."""
        ra, dec = _column(table, "ra"), _column(table, "dec")
        if ra is None or dec is None:
            raise RefCatError(f"{path}: needs 'ra' and 'dec' columns (deg); has {table.colnames}")
        bands = sorted(c[4:] for c in table.colnames if c.lower().startswith("mag_") and len(c) > 4)
        if not bands:
            raise RefCatError(f"{path}: no magnitude columns 'mag_<band>'")
        good = np.isfinite(ra) & np.isfinite(dec)
        ids = _column(table, "source_id", "id")
        lower = {b: b.lower() for b in bands}
        return cls(
            ra=ra,
            dec=dec,
            good=good,
            ids=np.arange(len(table)) if ids is None else ids,
            healpix=healpix_index(np.where(good, ra, 0.0), np.where(good, dec, 0.0)),
            bands=bands,
            mags={b: _column(table, f"mag_{lower[b]}") for b in bands},
            mag_errors={
                b: _column(table, f"magerr_{lower[b]}", f"mag_err_{lower[b]}") for b in bands
            },
            optional={k: _column(table, k) for k in ("pmra", "pmdec", "ra_error", "dec_error")},
        )


def _opt(arr: np.ndarray | None, i: int) -> float | None:
    if arr is None or not np.isfinite(arr[i]):
        return None
    return float(arr[i])


def load_refcat(
    registry: Registry,
    path: Path,
    name: str,
    *,
    description: str = "",
    epoch: float | None = None,
    replace: bool = False,
) -> LoadReport:
    """Load the catalog file ``path`` into the registry as reference catalog ``name``.

    Raises:
        RefCatError: unreadable file, missing ``ra``/``dec``, no ``mag_<band>`` column, or a
            catalog of that name exists and ``replace`` is false.
    """
    table = read_catalog_file(Path(path))
    cols = _Columns.of(table, path)
    if epoch is None:
        epoch = float(table.meta.get("EPOCH", table.meta.get("epoch", 2016.0)))
    n_sources = int(cols.good.sum())
    with registry.session() as s:
        existing = s.scalar(select(RefCat).where(RefCat.name == name))
        if existing is not None and not replace:
            raise RefCatError(f"reference catalog {name!r} exists; use --replace to reload it")
        if existing is not None:
            s.execute(delete(RefCat).where(RefCat.id == existing.id))
            s.flush()
        cat = RefCat(
            name=name,
            description=description,
            source_file=str(path),
            epoch=epoch,
            bands=",".join(cols.bands),
            n_sources=n_sources,
        )
        s.add(cat)
        s.flush()
        cat.product_id = add_product(
            s,
            "refcat",
            data_id={"refcat": name, "refcat_id": cat.id},
            production_id=None,
            job_id=None,
        ).id
        rows = np.flatnonzero(cols.good)
        for start in range(0, len(rows), _BATCH):
            _insert_sources(s, cat.id, cols, rows[start : start + _BATCH])
    return LoadReport(
        name=name, n_sources=n_sources, bands=cols.bands, replaced=existing is not None
    )


def _insert_sources(s: Session, refcat_id: int, cols: _Columns, chunk: np.ndarray) -> None:
    """Insert the sources of rows ``chunk`` and their magnitudes."""
    src_rows = [
        {
            "refcat_id": refcat_id,
            "source_id": int(cols.ids[i]),
            "ra": float(cols.ra[i]),
            "dec": float(cols.dec[i]),
            "healpix": int(cols.healpix[i]),
            **{k: _opt(arr, i) for k, arr in cols.optional.items()},
        }
        for i in chunk
    ]
    new_ids = s.scalars(insert(RefCatSource).returning(RefCatSource.id), src_rows).all()
    mag_rows = [
        {
            "source_id": pk,
            "band": band,
            "mag": float(cols.mags[band][i]),
            "mag_error": _opt(cols.mag_errors[band], i),
        }
        for band in cols.bands
        for pk, i in zip(new_ids, chunk, strict=True)
        if np.isfinite(cols.mags[band][i])
    ]
    if mag_rows:
        s.execute(insert(RefCatMagnitude), mag_rows)


def query_refcat(
    registry: Registry,
    name: str,
    ra: float,
    dec: float,
    radius: float,
    band: str,
    *,
    epoch: float | None = None,
) -> Table:
    """Sources of catalog ``name`` within ``radius`` deg of (``ra``, ``dec``) with a magnitude in
    ``band``; positions moved by proper motion to ``epoch`` (decimal year) when given.

    Returns an astropy Table with columns id, ra, dec (deg), mag, mag_error, pmra, pmdec;
    ``meta['EPOCH']`` is the epoch of the returned positions.

    Raises:
        RefCatError: no catalog of that name, or it has no such band.
    """
    ranges = cone_ranges(ra, dec, radius)
    with registry.session(write=False) as s:
        cat = s.scalar(select(RefCat).where(RefCat.name == name))
        if cat is None:
            raise RefCatError(
                f"no reference catalog {name!r} (load it with 'surveydm refcat load')"
            )
        if band not in cat.bands.split(","):
            raise RefCatError(f"reference catalog {name!r} has no band {band!r}: {cat.bands}")
        hp_cond = or_(*(RefCatSource.healpix.between(lo, hi) for lo, hi in ranges))
        q = (
            select(
                RefCatSource.source_id,
                RefCatSource.ra,
                RefCatSource.dec,
                RefCatMagnitude.mag,
                RefCatMagnitude.mag_error,
                RefCatSource.pmra,
                RefCatSource.pmdec,
            )
            .join(RefCatMagnitude, RefCatMagnitude.source_id == RefCatSource.id)
            .where(and_(RefCatSource.refcat_id == cat.id, RefCatMagnitude.band == band, hp_cond))
        )
        rows = s.execute(q).all()
        cat_epoch = cat.epoch
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 7
    t = Table(
        [np.asarray(c, dtype=float if k else np.int64) for k, c in enumerate(cols)],
        names=["id", "ra", "dec", "mag", "mag_error", "pmra", "pmdec"],
    )
    for col in ("mag_error", "pmra", "pmdec"):
        t[col] = np.where(np.isfinite(t[col]), t[col], np.nan)
    if epoch is not None and len(t):
        dt = epoch - cat_epoch
        pmra = np.nan_to_num(t["pmra"])
        pmdec = np.nan_to_num(t["pmdec"])
        t["dec"] = t["dec"] + pmdec * dt / 3.6e6
        t["ra"] = t["ra"] + pmra * dt / 3.6e6 / np.cos(np.radians(t["dec"]))
    if len(t):
        sep = angular_separation(
            np.radians(t["ra"]), np.radians(t["dec"]), np.radians(ra), np.radians(dec)
        )
        t = t[np.degrees(sep) <= radius]
    t.meta["EPOCH"] = epoch if epoch is not None else cat_epoch
    t.meta["REFCAT"] = name
    return t
