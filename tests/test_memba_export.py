"""The memba object catalog exported as HATS (read back with LSDB) and as Parquet, on SQLite and
PostgreSQL: every measured reference source once, its co-added fluxes equal to the registry's
and near the truth; and clear errors for bad input."""

from __future__ import annotations

import lsdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from memba_support import memba_fixture
from surveydm.db.models.multiepoch import ForcedApertureCoadd
from surveydm.pipelines.memba.hats_export import ExportError, export_objects


def _coadds(registry, pid):  # noqa: ANN001, ANN202
    with registry.session(write=False) as s:
        rows = s.execute(
            select(ForcedApertureCoadd.ref_id, ForcedApertureCoadd.band, ForcedApertureCoadd.flux,
                   ForcedApertureCoadd.n_coadd)
            .where(ForcedApertureCoadd.production_id == pid)
        ).all()  # fmt: skip
    return {(int(r.ref_id), r.band): (r.flux, r.n_coadd) for r in rows}


def test_hats_export_is_read_back_with_lsdb(settings, registry, tmp_path):  # noqa: ANN001
    truth = memba_fixture(settings, registry, tmp_path)
    done = export_objects(registry, tmp_path / "memba_hats", fmt="hats")
    n = len(truth.ref_id)
    assert done.rows == n and done.bands == ["NB455", "r"]
    cat = lsdb.read_hats(tmp_path / "memba_hats")
    df = cat.compute().sort_values("ref_id")
    assert len(df) == n and sorted(df["ref_id"]) == sorted(truth.ref_id.tolist())
    coadds = _coadds(registry, done.production_id)
    index = {int(r): i for i, r in enumerate(truth.ref_id)}
    for row in df.itertuples():
        i = index[row.ref_id]
        assert row.ra == pytest.approx(truth.ra[i], abs=1e-9)
        assert row.flux_NB455 == coadds[(row.ref_id, "NB455")][0]
        assert row.n_coadd_NB455 == 2 and row.n_coadd_r == 1
        assert row.flux_r == pytest.approx(truth.flux["r"][i], rel=0.05)
    # a cone search through LSDB's HEALPix partitions finds the object at the centre
    centre = int(np.argmin(np.hypot(truth.ra - truth.ra.mean(), truth.dec - truth.dec.mean())))
    near = cat.cone_search(float(truth.ra[centre]), float(truth.dec[centre]), 1.0).compute()
    assert near["ref_id"].tolist() == [int(truth.ref_id[centre])]


def test_parquet_export_and_bad_input(settings, registry, tmp_path):  # noqa: ANN001
    with pytest.raises(ExportError, match="run `surveydm memba` first"):
        export_objects(registry, tmp_path / "none.parquet", fmt="parquet")
    truth = memba_fixture(settings, registry, tmp_path)
    done = export_objects(registry, tmp_path / "objects.parquet", fmt="parquet")
    table = pq.read_table(tmp_path / "objects.parquet")
    assert table.num_rows == done.rows == len(truth.ref_id)
    assert {"flux_NB455", "flux_error_NB455", "chi2_r", "n_coadd_r"} <= set(table.column_names)
    with pytest.raises(ExportError, match="exists"):
        export_objects(registry, tmp_path / "objects.parquet", fmt="parquet")
    with pytest.raises(ExportError, match="unknown export format"):
        export_objects(registry, tmp_path / "x", fmt="votable")
