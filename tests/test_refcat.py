"""Reference catalogs: loading FITS / CSV / Parquet, region queries, proper motion, errors."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from typer.testing import CliRunner

from surveydm.pipelines.refcat import RefCatError, load_refcat, query_refcat


def _catalog(n: int = 500, seed: int = 3) -> Table:
    rng = np.random.default_rng(seed)
    t = Table()
    t["source_id"] = np.arange(n, dtype=np.int64) + 1000
    t["ra"] = 150 + rng.uniform(-0.5, 0.5, n)
    t["dec"] = 2 + rng.uniform(-0.5, 0.5, n)
    t["pmra"] = rng.normal(0, 10, n)
    t["pmdec"] = rng.normal(0, 10, n)
    t["mag_r"] = rng.uniform(15, 21, n)
    t["magerr_r"] = 0.01 + 0.001 * (t["mag_r"] - 15)
    t["mag_NB455"] = t["mag_r"] + 0.3
    t["magerr_NB455"] = 0.05
    t["mag_NB455"][:10] = np.nan  # not measured in this band
    t.meta["EPOCH"] = 2016.0
    return t


@pytest.mark.parametrize("fmt", ["fits", "csv", "parquet"])
def test_load_and_cone_query(registry, tmp_path, fmt):
    cat = _catalog()
    path = tmp_path / f"ref.{fmt}"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({c: np.asarray(cat[c]) for c in cat.colnames}), path)
    else:
        cat.write(path, format=fmt)
    rep = load_refcat(registry, path, "sim", epoch=2016.0)
    assert rep.n_sources == 500
    assert rep.bands == ["NB455", "r"]
    got = query_refcat(registry, "sim", 150.1, 2.1, 0.2, "r")
    sep = np.degrees(
        np.arccos(
            np.sin(np.radians(cat["dec"])) * np.sin(np.radians(2.1))
            + np.cos(np.radians(cat["dec"]))
            * np.cos(np.radians(2.1))
            * np.cos(np.radians(cat["ra"] - 150.1))
        )
    )
    expected = set(cat["source_id"][sep <= 0.2])
    assert set(got["id"]) == expected and len(expected) > 20
    row = cat[cat["source_id"] == got["id"][0]][0]
    assert got["mag"][0] == pytest.approx(row["mag_r"])
    # a band missing for some sources only returns those that have it
    nb = query_refcat(registry, "sim", 150.0, 2.0, 1.0, "NB455")
    assert len(nb) == 490


def test_proper_motion_applied(registry, tmp_path):
    cat = _catalog(50)
    cat.write(tmp_path / "ref.fits")
    load_refcat(registry, tmp_path / "ref.fits", "sim")
    at_2016 = query_refcat(registry, "sim", 150, 2, 1.0, "r")
    at_2026 = query_refcat(registry, "sim", 150, 2, 1.0, "r", epoch=2026.0)
    i = np.argsort(at_2016["id"])
    j = np.argsort(at_2026["id"])
    ddec = (at_2026["dec"][j] - at_2016["dec"][i]) * 3.6e6
    assert np.allclose(ddec, at_2016["pmdec"][i] * 10.0, rtol=1e-6)


def test_reload_requires_replace_and_bad_files_are_clear(registry, tmp_path):
    cat = _catalog(20)
    cat.write(tmp_path / "ref.fits")
    load_refcat(registry, tmp_path / "ref.fits", "sim")
    with pytest.raises(RefCatError, match="exists"):
        load_refcat(registry, tmp_path / "ref.fits", "sim")
    rep = load_refcat(registry, tmp_path / "ref.fits", "sim", replace=True)
    assert rep.replaced and len(query_refcat(registry, "sim", 150, 2, 1.0, "r")) == 20
    del cat["dec"]
    cat.write(tmp_path / "nodec.fits")
    with pytest.raises(RefCatError, match="'ra' and 'dec'"):
        load_refcat(registry, tmp_path / "nodec.fits", "x")
    (tmp_path / "cat.txt").write_text("ra dec\n")
    with pytest.raises(RefCatError, match="unknown catalog format"):
        load_refcat(registry, tmp_path / "cat.txt", "x")
    with pytest.raises(RefCatError, match="no band"):
        query_refcat(registry, "sim", 150, 2, 1.0, "g")


def test_cli_load_reports_and_errors_cleanly(db_url, tmp_path, monkeypatch):
    from surveydm.cli.main import app

    monkeypatch.setenv("SURVEYDM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SURVEYDM_DATABASE_URL", db_url)
    _catalog(30).write(tmp_path / "ref.fits")
    runner = CliRunner()
    res = runner.invoke(app, ["refcat", "load", str(tmp_path / "ref.fits"), "--name", "sim"])
    assert res.exit_code == 0, res.output
    assert "30 sources" in res.output
    res = runner.invoke(app, ["refcat", "load", str(tmp_path / "ref.fits"), "--name", "sim"])
    assert res.exit_code == 2
    assert "exists" in res.output and "Traceback" not in res.output
