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
