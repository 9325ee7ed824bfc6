"""TAP 1.1 service on SQLite and PostgreSQL: ADQL queries over the published registry tables
return the real rows (cone searches against known positions, joins, TOP, MAXREC overflow),
TAP_SCHEMA and VOSI documents come from the models, hostile queries get error documents and
change nothing, and asynchronous UWS jobs run in worker processes."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import numpy as np
import pytest
from astropy.io.votable import parse_single_table
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.db.models.calibration import Detection
from surveydm.publish.vo.tap.service import TapLimits
from surveydm.publish.web import create_app
from tapdata import CENTER, N_CLUSTER, N_FAR, fill_registry


@pytest.fixture
def filled(registry: Registry) -> Registry:
    return fill_registry(registry)


@pytest.fixture
def client(filled: Registry, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, registry=filled, sql_time_limit_s=2.0)
    app.state.tap.limits = TapLimits(sync_time_limit_s=2.0)
    with TestClient(app) as c:
        yield c
    app.state.tap_jobs.close()


def _sync(client: TestClient, query: str, **params) -> tuple[int, bytes]:
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": query, **params})
    return r.status_code, r.content


def _table(content: bytes):
    """The result table; any VOTable specification warning fails the test."""
    return parse_single_table(io.BytesIO(content), verify="exception").to_table()


def _status(content: bytes) -> list[str]:
    from astropy.io.votable import parse

    vot = parse(io.BytesIO(content))
    return [i.value for r in vot.resources for i in r.infos if i.name == "QUERY_STATUS"]


def test_cone_search_returns_the_known_detections(client: TestClient) -> None:
    q = (
        "SELECT id, ra, dec, mag FROM surveydm.detection WHERE "
        "1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150.0, 2.0, 30.0/3600))"
    )
    for fmt in ("votable", "votable/b2"):
        status, body = _sync(client, q, RESPONSEFORMAT=fmt)
        assert status == 200, body
        t = _table(body)
        assert len(t) == N_CLUSTER
        assert t["ra"].unit == "deg" and "pos.eq.ra" in t["ra"].meta.get("ucd", "pos.eq.ra")
        assert np.all(np.abs(t["dec"] - CENTER[1]) < 30 / 3600)
        assert _status(body) == ["OK"]
    # A polygon around the far group, a BOX and DISTANCE agree with the numbers
    status, body = _sync(
        client,
        "SELECT COUNT(*) AS n FROM surveydm.detection WHERE "
        "CONTAINS(POINT(ra, dec), POLYGON(150.9, 1.9, 151.2, 1.9, 151.2, 2.2, "
        "150.9, 2.2)) = 1",
    )
    assert int(_table(body)["n"][0]) == N_FAR
    status, body = _sync(
        client,
        "SELECT COUNT(*) AS n FROM surveydm.detection WHERE "
        "CONTAINS(POINT(ra, dec), BOX('ICRS', 150, 2, 0.05, 0.05)) = 1",
    )
    assert int(_table(body)["n"][0]) == N_CLUSTER
    # a '%' in the SQL (LIKE, the polygon's modulo) reaches the engine as written
    status, body = _sync(
        client,
        "SELECT COUNT(*) AS n FROM surveydm.detection WHERE band LIKE 'r%' OR MOD(id, 1) = 7",
    )
    assert status == 200, body
    assert int(_table(body)["n"][0]) == (N_CLUSTER + N_FAR) // 2
    status, body = _sync(
        client,
        "SELECT TOP 3 DISTANCE(POINT(ra, dec), POINT(150.0, 2.0)) AS d, "
        "POINT('ICRS', ra, dec) AS p, AREA(CIRCLE(150, 2, 1)) AS a "
        "FROM surveydm.detection ORDER BY d DESC",
    )
    t = _table(body)
    assert t["d"][0] > 0.9 and abs(t["a"][0] - 3.1412) < 1e-3 and t["p"].shape == (3, 2)


def test_binary2_rows_equal_tabledata_rows_with_nulls_and_overflow(client: TestClient) -> None:
    # numeric columns only: on PostgreSQL the server encodes the BINARY2 records itself
    q = (
        "SELECT id, image_id, healpix, flags, ra, dec, mag, fwhm, flux_auto "
        "FROM surveydm.detection ORDER BY id"
    )
    tables = {}
    for fmt in ("votable", "votable/b2"):
        status, body = _sync(client, q, RESPONSEFORMAT=fmt, MAXREC="15")
        assert status == 200, body
        assert _status(body) == ["OK", "OVERFLOW"]
        tables[fmt] = _table(body)
    td, b2 = tables["votable"], tables["votable/b2"]
    assert len(b2) == 15 and b2.colnames == td.colnames
    for name in td.colnames:
        assert b2[name].dtype == td[name].dtype, name
        assert np.array_equal(np.ma.getmaskarray(b2[name]), np.ma.getmaskarray(td[name])), name
        assert np.array_equal(np.ma.filled(b2[name], 0), np.ma.filled(td[name], 0)), name
    assert np.ma.getmaskarray(b2["fwhm"]).all()  # NULL in the registry: flagged, not zero
    assert np.all(np.diff(b2["id"]) > 0) and np.allclose(b2["mag"], 18.0 + 0.1 * np.arange(15))
    # a MAXREC beyond one batch reads through a server-side cursor on PostgreSQL (a short
    # result in one statement otherwise): the same rows either way
    status, body = _sync(client, q, RESPONSEFORMAT="votable/b2", MAXREC="100000")
    assert status == 200 and _status(body) == ["OK"]
    full = _table(body)
    assert len(full) > 15
    for name in td.colnames:
        assert np.array_equal(np.ma.getmaskarray(full[name][:15]), np.ma.getmaskarray(b2[name]))
        assert np.array_equal(np.ma.filled(full[name][:15], 0), np.ma.filled(b2[name], 0))


def test_columnar_binary2_path_gives_the_rows_of_tabledata(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # long BINARY2 results of numeric columns are read as Arrow batches (ADBC) and encoded
    # with numpy; small batch sizes make this 20-row registry take that path, in several
    # batches, with NULL columns and a MAXREC cut inside a batch
    from surveydm.publish.vo.tap import execute, service

    q = "SELECT id, image_id, healpix, flags, ra, dec, mag, fwhm FROM surveydm.detection"
    status, body = _sync(client, q + " ORDER BY id", RESPONSEFORMAT="votable", MAXREC="13")
    td = _table(body)
    monkeypatch.setattr(service, "BATCH_ROWS", 4)
    monkeypatch.setattr(execute, "ARROW_BATCH_ROWS", 3)
    used = []
    real = execute.arrow_batches

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        used.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "arrow_batches", spy)
    status, body = _sync(client, q, RESPONSEFORMAT="votable/b2", MAXREC="13")
    assert status == 200 and _status(body) == ["OK", "OVERFLOW"]
    assert used, "the columnar path was not taken"
    b2 = _table(body)
    assert len(b2) == 13 and b2.colnames == td.colnames
    for name in td.colnames:
        assert b2[name].dtype == td[name].dtype, name
        assert np.array_equal(np.ma.getmaskarray(b2[name]), np.ma.getmaskarray(td[name])), name
        assert np.array_equal(np.ma.filled(b2[name], 0), np.ma.filled(td[name], 0)), name
    status, body = _sync(client, q, RESPONSEFORMAT="votable/b2", MAXREC="20")
    assert status == 200 and _status(body) == ["OK"] and len(_table(body)) == 20
    # a column NULL in the first batch and numbers later (SQLite infers no type from it)
    late = "SELECT id, CASE WHEN id > 7 THEN mag END AS m FROM surveydm.detection"
    used.clear()
    status, body = _sync(client, late, RESPONSEFORMAT="votable/b2", MAXREC="20")
    assert status == 200 and _status(body) == ["OK"] and used, body
    t = _table(body)
    assert np.ma.getmaskarray(t["m"]).tolist() == [i <= 7 for i in t["id"]]
    assert np.allclose(t["m"][7:], 18.0 + 0.1 * np.arange(7, 20))
    # a join is not one table scan: on SQLite it goes through the row path (time limit kept)
    used.clear()
    join = "SELECT a.id, b.id AS id2 FROM surveydm.detection AS a, surveydm.detection AS b"
    status, body = _sync(client, join, RESPONSEFORMAT="votable/b2", MAXREC="50")
    assert status == 200 and _status(body) == ["OK", "OVERFLOW"] and len(_table(body)) == 50


def test_joins_top_offset_sets_and_maxrec_overflow(client: TestClient) -> None:
    status, body = _sync(
        client,
        "SELECT TOP 5 d.mag, m.filename, i.filter FROM "
        "surveydm.detection AS d JOIN surveydm.image AS i ON d.image_id = i.id "
        "JOIN surveydm.mosaic m ON i.mosaic_id = m.id ORDER BY d.mag OFFSET 2",
    )
    t = _table(body)
    assert list(t["filename"]) == ["red_001.fits"] * 5
    assert np.allclose(t["mag"], [18.2, 18.3, 18.4, 18.5, 18.6])
    status, body = _sync(
        client, "SELECT band, COUNT(*) AS n FROM surveydm.detection GROUP BY band ORDER BY band"
    )
    t = _table(body)
    assert list(t["band"]) == ["g", "r"] and int(t["n"].sum()) == N_CLUSTER + N_FAR
    status, body = _sync(
        client,
        "SELECT source_id AS id FROM surveydm.refcat_source UNION "
        "SELECT id FROM surveydm.detection WHERE id < 3",
    )
    assert len(_table(body)) == 5 + 2
    status, body = _sync(client, "SELECT id FROM surveydm.detection", MAXREC="4")
    assert len(_table(body)) == 4 and _status(body) == ["OK", "OVERFLOW"]
    status, body = _sync(client, "SELECT TOP 4 id FROM surveydm.detection", MAXREC="4")
    assert _status(body) == ["OK"]  # not cut by MAXREC: no overflow
    r = client.get(
        "/tap/sync",
        params={
            "LANG": "ADQL",
            "QUERY": "SELECT TOP 2 id, band FROM surveydm.detection ORDER BY id",
            "FORMAT": "csv",
        },
    )
    assert r.text.splitlines() == ["id,band", "1,g", "2,r"]
    r = client.post(
        "/tap/sync",
        data={"LANG": "ADQL", "QUERY": "SELECT TOP 3 * FROM surveydm.detection", "FORMAT": "fits"},
    )
    from astropy.io import fits

    assert len(fits.open(io.BytesIO(r.content))[1].data) == 3


def test_tap_schema_and_vosi_come_from_the_models(client: TestClient) -> None:
    status, body = _sync(
        client,
        "SELECT column_name, unit, ucd, indexed FROM TAP_SCHEMA.columns "
        "WHERE table_name = 'surveydm.detection'",
    )
    t = _table(body)
    cols = {r["column_name"]: r for r in t}
    assert set(cols) >= {"ra", "dec", "healpix", "mag", "band", "image_id"}
    assert cols["ra"]["unit"] == "deg" and cols["healpix"]["indexed"] == 1
    status, body = _sync(
        client,
        "SELECT k.target_table FROM TAP_SCHEMA.keys AS k "
        "JOIN TAP_SCHEMA.key_columns AS c ON k.key_id = c.key_id "
        "WHERE k.from_table = 'surveydm.detection'",
    )
    assert sorted(_table(body)["target_table"]) == ["surveydm.image", "surveydm.production"]
    caps = client.get("/tap/capabilities")
    assert caps.status_code == 200 and "ivo://ivoa.net/std/TAP" in caps.text
    assert "<vosi:available>true</vosi:available>" in client.get("/tap/availability").text
    tables = client.get("/tap/tables").text
    assert "<name>surveydm.detection</name>" in tables and "<unit>deg</unit>" in tables
    assert 'property="query"' in client.get("/tap/examples").text


HOSTILE = [
    "DELETE FROM surveydm.detection",
    "SELECT id FROM surveydm.detection; DELETE FROM surveydm.detection",
    'SELECT "id; DROP TABLE detection" FROM surveydm.detection',
    "SELECT id FROM surveydm.detection WHERE band = 'r''; DELETE FROM detection; --'",
    "SELECT id FROM archive_file",
    "SELECT id FROM surveydm.detection AS d JOIN sqlite_master AS m ON 1 = 1",
    "SELECT pg_sleep(10) FROM surveydm.detection",
    "SELECT load_extension('x') FROM surveydm.detection",
    "SELECT COUNT(*) FROM " + ", ".join(f"surveydm.detection AS d{i}" for i in range(20)),
]


def test_upload_urls_to_local_addresses_are_refused(client: TestClient) -> None:
    for url in ("http://127.0.0.1:5432/x.vot", "http://localhost/x.vot", "file:///etc/passwd"):
        status, body = _sync(
            client, "SELECT * FROM TAP_UPLOAD.t", UPLOAD=f"t,{url}", RESPONSEFORMAT="votable"
        )
        assert status == 400 and _status(body) == ["ERROR"], url


def test_hostile_queries_get_error_documents(client: TestClient, filled: Registry) -> None:
    for query in HOSTILE:
        status, body = _sync(client, query)
        if status == 200:  # the injection attempt read as what it is: a string literal
            assert len(_table(body)) == 0, query
        else:
            assert status == 400 and _status(body) == ["ERROR"], query
    with filled.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Detection)) == N_CLUSTER + N_FAR


def test_runaway_join_is_stopped_by_the_time_limit(client: TestClient) -> None:
    q = (
        "SELECT COUNT(*) FROM surveydm.detection AS a, surveydm.detection AS b, "
        "surveydm.detection AS c, surveydm.detection AS d, surveydm.detection AS e, "
        "surveydm.detection AS f, surveydm.detection AS g WHERE a.mag + b.mag + c.mag + d.mag + "
        "e.mag + f.mag + g.mag > 0"
    )
    status, body = _sync(client, q)
    assert status == 400 and "time limit" in body.decode()


def test_async_job_runs_in_a_worker_and_survives_restart(
    client: TestClient, filled: Registry, settings: Settings
) -> None:
    r = client.post(
        "/tap/async",
        data={"LANG": "ADQL", "QUERY": "SELECT TOP 7 id FROM surveydm.detection ORDER BY id"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    url = r.headers["location"].replace("http://testserver", "")
    assert "<uws:phase>PENDING</uws:phase>" in client.get(url).text
    client.post(url + "/phase", data={"PHASE": "RUN"})
    deadline = time.monotonic() + 60
    while client.get(url + "/phase").text not in ("COMPLETED", "ERROR"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert client.get(url + "/phase").text == "COMPLETED", client.get(url).text
    t = _table(client.get(url + "/results/result").content)
    assert list(t["id"]) == [1, 2, 3, 4, 5, 6, 7]
    # A bad query ends in ERROR with an error document
    r = client.post(
        "/tap/async",
        data={"LANG": "ADQL", "QUERY": "SELECT nope FROM surveydm.detection", "PHASE": "RUN"},
    )
    bad = str(r.url).replace("http://testserver", "")
    while client.get(bad + "/phase").text not in ("COMPLETED", "ERROR"):
        time.sleep(0.2)
    assert "no column" in client.get(bad + "/error").text
    # Execution duration: a runaway join is stopped; ABORT stops a running job
    runaway = (
        "SELECT COUNT(*) FROM surveydm.detection AS a, surveydm.detection AS b, "
        "surveydm.detection AS c, surveydm.detection AS d, surveydm.detection AS e, "
        "surveydm.detection AS f, surveydm.detection AS g"
    )
    r = client.post("/tap/async", data={"LANG": "ADQL", "QUERY": runaway})
    slow = str(r.url).replace("http://testserver", "")
    client.post(slow + "/executionduration", data={"EXECUTIONDURATION": "1"})
    assert client.get(slow + "/executionduration").text == "1"
    client.post(slow + "/phase", data={"PHASE": "RUN"})
    r = client.post("/tap/async", data={"LANG": "ADQL", "QUERY": runaway, "PHASE": "RUN"})
    aborted = str(r.url).replace("http://testserver", "")
    client.post(aborted + "/phase", data={"PHASE": "ABORT"})
    assert client.get(aborted + "/phase").text == "ABORTED"
    deadline = time.monotonic() + 60
    while client.get(slow + "/phase").text not in ("COMPLETED", "ERROR"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "time limit" in client.get(slow + "/error").text
    # A new service over the same archive lists the same jobs
    app2 = create_app(settings, registry=filled)
    with TestClient(app2) as c2:
        assert "<uws:phase>COMPLETED</uws:phase>" in c2.get(url).text
        c2.delete(url)
        assert c2.get(url).status_code == 404


def test_units_and_ucds_are_valid() -> None:
    from astropy import units
    from astropy.io.votable.ucd import parse_ucd

    from surveydm.publish.vo.tap.tables import ANNOTATIONS

    for unit, ucd in ANNOTATIONS.values():
        if unit:
            units.Unit(unit, format="vounit")
        if ucd:
            parse_ucd(ucd, check_controlled_vocabulary=True, has_colon=False)
