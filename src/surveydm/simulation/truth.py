"""Reading and writing the simulator's truth files (formats: docs/simulate.md).

Parquet files are written and read with pyarrow directly (astropy's parquet reader needs
pandas, which surveydm does not depend on).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.table import Table


def write_parquet(table: Table, path: Path) -> None:
    """Write an astropy table of plain columns to a Parquet file (metadata as key/values)."""
    arrays = {name: pa.array(np.asarray(table[name])) for name in table.colnames}
    meta = {str(k): str(v) for k, v in table.meta.items()}
    pq.write_table(pa.table(arrays, metadata=meta or None), path)


def read_parquet(path: Path) -> Table:
    """Read a Parquet file written by :func:`write_parquet` into an astropy table.

    Raises:
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no truth file {path}")
    pt = pq.read_table(path)
    cols = {}
    for name in pt.column_names:
        values = pt.column(name).to_numpy(zero_copy_only=False)
        cols[name] = values.astype(str) if values.dtype == object else values
    t = Table(cols)
    for k, v in (pt.schema.metadata or {}).items():
        t.meta[k.decode()] = v.decode()
    return t


def read_objects(truth_dir: Path) -> Table:
    """``objects.parquet``: one row per simulated object (docs/simulate.md)."""
    return read_parquet(Path(truth_dir) / "objects.parquet")


def read_exposures(truth_dir: Path) -> Table:
    """``exposures.parquet``: one row per exposure and CCD (docs/simulate.md)."""
    return read_parquet(Path(truth_dir) / "exposures.parquet")


def read_refcat(path: Path) -> Table:
    """The reference catalog (``refcat.fits``) as an astropy table; ``meta['EPOCH']`` is the
    Julian epoch of the positions.

    Raises:
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no reference catalog {path}")
    return Table.read(path, hdu="REFCAT")


_TRUTH_COLUMNS = [
    "obs_set", "file", "expnum", "kind", "ccd_num", "filter", "tray", "mjd", "exptime",
    "airmass", "seeing_arcsec", "fwhm_pix", "psf_beta", "transparency", "sky", "zeropoint",
    "median_response", "ra_true", "dec_true", "rotation_deg", "ra_header", "dec_header",
    "pointing_error_ra_arcsec", "pointing_error_dec_arcsec", "n_stars", "n_galaxies",
    "n_cosmic_rays", "n_saturated", "bias_offsets_adu", "wcs_header",
]  # fmt: skip


def exposures_table(rows: list[dict]) -> Table:
    """The ``exposures.parquet`` table of truth rows, one per exposure and CCD (missing
    values: empty string, -1 or NaN by column type; docs/simulate.md)."""
    cols = {}
    for name in _TRUTH_COLUMNS:
        vals = [r.get(name) for r in rows]
        if name in ("obs_set", "file", "kind", "filter", "tray", "bias_offsets_adu", "wcs_header"):
            cols[name] = np.array([v if v is not None else "" for v in vals], dtype=str)
        elif name in ("expnum", "ccd_num", "n_stars", "n_galaxies", "n_cosmic_rays", "n_saturated"):
            cols[name] = np.array([v if v is not None else -1 for v in vals], dtype=np.int64)
        else:
            cols[name] = np.array([v if v is not None else np.nan for v in vals], dtype=float)
    return Table(cols)
