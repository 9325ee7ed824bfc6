"""The portal's pages and JSON API over a processed demo night (tests/webdata.py), on SQLite and
PostgreSQL, through FastAPI's TestClient."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from matplotlib.image import imread
from sqlalchemy import func, select

from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.db.models.raw import ArchiveFile
from surveydm.publish.web import create_app
from webdata import OBS_SET, TRACEBACK_MARK, DemoNight, build_demo_night


@pytest.fixture
def demo(registry: Registry, settings: Settings) -> DemoNight:
    return build_demo_night(registry, settings.archive_root)


@pytest.fixture
def client(registry: Registry, settings: Settings, demo: DemoNight) -> Iterator[TestClient]:
    app = create_app(settings, registry=registry, sql_time_limit_s=1.0)
    with TestClient(app) as c:
        yield c


def png_shape(content: bytes) -> tuple[int, ...]:
    """Shape of a PNG image, after checking it is one."""
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(io.BytesIO(content), format="png").shape


def not_blank(content: bytes) -> bool:
    img = imread(io.BytesIO(content), format="png")
    return float(np.std(img[..., :3])) > 0.01


# -- operations -------------------------------------------------------------------------------


def test_openapi_document_validates(client: TestClient) -> None:
    from openapi_spec_validator import validate

    doc = client.get("/openapi.json").json()
    validate(doc)
    paths = doc["paths"]
    for path in ("/api/jobs", "/api/jobs/{job_id}", "/api/report", "/api/archive", "/api/schema",
                 "/api/sql", "/api/productions", "/api/obssets/{obs_set}/jobs-status"):  # fmt: skip
        assert path in paths, path
    assert "JobList" in doc["components"]["schemas"]


def test_job_list_filters_and_pages(client: TestClient, demo: DemoNight) -> None:
    data = client.get("/api/jobs").json()
    assert data["total"] == 4
    ids = [j["id"] for j in data["jobs"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    by_id = {j["id"]: j for j in data["jobs"]}
    nightly = by_id[demo.nightly_job]
    assert nightly["n_subjobs"] == 8
    assert nightly["subjobs_by_status"] == {"done": 6, "failed": 1, "failed_quality": 1}
    assert nightly["qc_flag"] == "red"  # a quality failure in its tree
    assert by_id[demo.register_job]["qc_flag"] == "green"
    assert by_id[demo.rereduce_job]["qc_flag"] == "yellow"
    assert by_id[demo.calibration_job]["qc_flag"] == "red"
    assert data["per_task"] == {"demo_calibration": 1, "demo_nightly": 1, "demo_register": 1,
                                "demo_single_epoch": 1}  # fmt: skip

    def ids_for(query: str) -> set[int]:
        return {j["id"] for j in client.get(f"/api/jobs?{query}").json()["jobs"]}

    assert ids_for("task=demo_nightly") == {demo.nightly_job}
    assert ids_for("qc=red") == {demo.nightly_job, demo.calibration_job}
    assert ids_for("qc=yellow") == {demo.rereduce_job}
    assert ids_for("qc=green") == {demo.register_job}
    # the nightly super-job ended, but part of its tree failed: done_partial, not done
    assert by_id[demo.nightly_job]["status"] == "done_partial"
    assert ids_for("status=done") == set(by_id) - {demo.nightly_job}
    assert ids_for("status=done_partial") == {demo.nightly_job}
    assert ids_for("status=failed") == set()
    created = data["jobs"][0]["created"][:10]
    assert ids_for(f"since={created}&until={created}") == set(by_id)
    assert ids_for("until=2000-01-01") == set()
    sub = client.get(f"/api/jobs?parent={demo.nightly_job}&status=failed").json()
    assert [j["id"] for j in sub["jobs"]] == [demo.failed_subjob]
    page1 = client.get("/api/jobs?page_size=3").json()
    page2 = client.get("/api/jobs?page_size=3&page=2").json()
    assert len(page1["jobs"]) == 3 and len(page2["jobs"]) == 1
    assert {j["id"] for j in page1["jobs"] + page2["jobs"]} == set(by_id)
    # Bad filters get a clear error, not a traceback.
    r = client.get("/api/jobs?status=exploded")
    assert r.status_code == 400 and "unknown status" in r.json()["detail"]
    assert client.get("/api/jobs?since=yesterday").status_code == 400
    html = client.get("/jobs?task=demo_nightly")
    assert html.status_code == 200 and f"nightly {OBS_SET}" in html.text
    assert "master flat" not in html.text
    for kind in ("task", "status"):
        pie = client.get(f"/jobs/pie/{kind}.png")
        assert pie.status_code == 200 and png_shape(pie.content)[0] > 50
        assert not_blank(pie.content)


def test_job_detail_traceback_qc_and_hierarchy(client: TestClient, demo: DemoNight) -> None:
    nightly = client.get(f"/api/jobs/{demo.nightly_job}").json()
    assert nightly["children_by_status"] == {"done": 6, "failed": 1, "failed_quality": 1}
    assert nightly["n_children"] == 8
    # Failed sub-jobs come first.
    assert {c["id"] for c in nightly["children"][:2]} == {
        demo.failed_subjob, demo.quality_failed_subjob}  # fmt: skip
    assert {j["id"] for j in nightly["failed_in_tree"]} == {
        demo.failed_subjob, demo.quality_failed_subjob}  # fmt: skip
    assert nightly["config"] == {"obs_set": OBS_SET}
    assert nightly["output"] == {"done": 6, "total": 8}
    (qc,) = nightly["qc"]
    assert qc["check_name"] == "done_fraction" and qc["result"] == "warn"
    assert qc["value"] == pytest.approx(0.75) and qc["min_value"] == 0.5
    plot = client.get(qc["plot_url"])
    assert plot.status_code == 200 and png_shape(plot.content)[1] > 100

    failed = client.get(f"/api/jobs/{demo.failed_subjob}").json()
    assert failed["job"]["status"] == "failed"
    # its one attempt is on record with its outcome (the job page and `jobs show` agree)
    assert [(a["attempt"], a["outcome"]) for a in failed["attempt_history"]] == [(1, "fault")]
    assert TRACEBACK_MARK in failed["attempt_history"][0]["fault"]
    assert failed["ancestors"] == [demo.nightly_job]
    assert any(TRACEBACK_MARK in t["value"] and "Traceback" in t["value"]
               for t in failed["tracebacks"])  # fmt: skip
    page = client.get(f"/jobs/{demo.failed_subjob}")
    assert page.status_code == 200 and TRACEBACK_MARK in page.text
    assert 'id="attempts-table"' in page.text and "outcome-fault" in page.text
    bad = client.get(f"/api/jobs/{demo.quality_failed_subjob}").json()
    assert bad["job"]["qc_flag"] == "red" and "2.5" in bad["quality"]
    assert bad["qc"][0]["result"] == "fail"
    assert client.get("/api/jobs/999999").status_code == 404
    missing = client.get("/jobs/999999")
    assert missing.status_code == 404 and "no job 999999" in missing.text


def test_obs_set_status_evolution(client: TestClient, demo: DemoNight) -> None:
    ev = client.get(f"/api/obssets/{OBS_SET}/jobs-status").json()
    # register + nightly + 8 single-epoch + the re-reduction job name the obs set
    assert ev["n_jobs"] == 11
    last = ev["series"][-1]["counts"]
    assert last == {"done": 8, "done_partial": 1, "failed": 1, "failed_quality": 1}
    first = ev["series"][0]["counts"]
    assert sum(first.values()) >= 1 and "done" not in first
    png = client.get(f"/obssets/{OBS_SET}/jobs-status.png")
    assert png.status_code == 200 and not_blank(png.content)
    form = client.get("/obssets", params={"obs_set": OBS_SET}, follow_redirects=False)
    assert form.status_code == 303
    assert form.headers["location"] == f"/obssets/{OBS_SET}/jobs-status"
    assert client.get("/api/obssets/nope/jobs-status").json()["n_jobs"] == 0
    assert client.get(f"/api/obssets/{OBS_SET[:-1]}/jobs-status").json()["n_jobs"] == 0
    assert client.get("/api/obssets/x;drop/jobs-status").status_code == 400


# -- nightly report and quick looks -----------------------------------------------------------


def test_nightly_report_cuts_plots_and_csv(client: TestClient, demo: DemoNight) -> None:
    rep = client.get("/api/report").json()  # defaults to the latest night
    assert rep["first_night"] == rep["last_night"] == demo.night.isoformat()
    assert rep["n_science"] == 8
    failing = {e["exp_num"] for e in rep["exposures"] if not e["passed"]}
    assert failing == {2, 3, 5, 7}  # seeing, not reduced, transparency, astrometry
    assert rep["pass_percent"] == pytest.approx(50.0)
    by_exp = {e["exp_num"]: e for e in rep["exposures"]}
    assert by_exp[3]["failed_cuts"] == ["not_reduced"]
    assert by_exp[5]["failed_cuts"] == ["transparency"]
    # Loosen the cuts (empty = no cut): only the unreduced exposure still fails.
    loose = client.get("/api/report?min_transparency=&max_seeing=&max_astro_rms=").json()
    assert {e["exp_num"] for e in loose["exposures"] if not e["passed"]} == {3}
    strict = client.get("/api/report?max_seeing=1.0").json()
    assert {e["exp_num"] for e in strict["exposures"] if not e["passed"]} == {2, 3, 5, 6, 7}
    csv_resp = client.get(rep["csv_url"])
    assert csv_resp.status_code == 200 and "attachment" in csv_resp.headers["content-disposition"]
    lines = csv_resp.text.strip().splitlines()
    assert lines[0].startswith("night,obs_set,filename")
    assert len(lines) == 1 + 4 and "sci_0005.fits" in csv_resp.text
    for name, url in rep["plots"].items():
        r = client.get(url)
        assert r.status_code == 200, name
        assert png_shape(r.content)[1] > 200 and not_blank(r.content), name
    assert client.get("/api/report?max_seeing=abc").status_code == 400
    assert client.get("/api/report?first=2026-11-21&last=2026-11-20").status_code == 400
    empty = client.get("/api/report?first=2020-01-01").json()
    assert empty["n_science"] == 0 and empty["pass_percent"] is None
    page = client.get("/report")
    assert page.status_code == 200 and "4 of 8 science frames pass" in " ".join(page.text.split())


def test_quick_look_images(client: TestClient, demo: DemoNight) -> None:
    raw_id = demo.raw_mosaics[0]
    ql = client.get(f"/api/exposures/{raw_id}").json()  # a raw exposure leads to its reduction
    assert ql["kind"] == "red_science" and ql["ccds"] == [1, 2, 3, 4]
    mosaic = client.get(ql["mosaic_png"])
    h, w = png_shape(mosaic.content)[:2]
    assert w > 300 and h > 250 and not_blank(mosaic.content)
    binned = client.get(ql["mosaic_png"] + "?bin=4")
    assert png_shape(binned.content)[1] < w / 3
    ccd = client.get(ql["ccd_png"]["2"] + "?bin=2")
    assert png_shape(ccd.content)[:2] == (80, 100)  # (160, 200) binned by 2
    assert client.get(f"/exposures/{raw_id}/ccd/9.png").status_code == 404
    assert client.get(f"/exposures/{raw_id}/mosaic.png?bin=0").status_code == 422
    unreduced = client.get(f"/api/exposures/{demo.raw_mosaics[2]}").json()
    assert unreduced["ccds"] == [] and unreduced["mosaic_png"] is None
    assert client.get(f"/exposures/{raw_id}").status_code == 200


# -- data access ------------------------------------------------------------------------------


def test_archive_browse_and_download(client: TestClient, demo: DemoNight) -> None:
    root = client.get("/api/archive").json()
    assert {e["name"] for e in root["entries"]} == {"raw", "red"}
    night = client.get("/api/archive?prefix=raw").json()
    assert [e["name"] for e in night["entries"]] == [demo.night.isoformat()]
    files = client.get(f"/api/archive?prefix=raw/{demo.night}/{OBS_SET}").json()["entries"]
    assert len(files) == 9 and all(not e["is_dir"] for e in files)
    entry = next(e for e in files if e["name"] == "sci_0001.fits")
    body = client.get(entry["download_url"])
    assert body.status_code == 200
    assert hashlib.md5(body.content).hexdigest() == entry["md5"] == body.headers["x-checksum-md5"]
    assert body.headers["x-checksum-adler32"] == entry["adler32"]
    assert body.headers["accept-ranges"] == "bytes"
    part = client.get(entry["download_url"], headers={"Range": "bytes=10-29"})
    assert part.status_code == 206 and part.content == body.content[10:30]
    by_path = client.get(f"/archive/download/raw/{demo.night}/{OBS_SET}/sci_0001.fits")
    assert by_path.content == body.content
    assert client.get("/archive?prefix=raw").status_code == 200
    assert client.get("/api/archive?prefix=../etc").status_code == 400
    assert client.get("/api/archive?prefix=nothing").status_code == 404


def test_paths_outside_the_archive_cannot_be_downloaded(
    client: TestClient, registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    link = settings.archive_root / "raw" / "link.txt"
    os.symlink(secret, link)
    hostile = ["../secret.txt", str(secret), "raw/../../secret.txt", "raw/link.txt"]
    with registry.session() as s:
        rows = [ArchiveFile(path=p, size=1, adler32="0", md5="0" * 32) for p in hostile]
        s.add_all(rows)
        s.flush()
        ids = [r.id for r in rows]
    for fid in ids:
        r = client.get(f"/archive/files/{fid}")
        assert r.status_code == 404 and "not for the web" not in r.text
    for url in (
        "/archive/download/..%2F..%2Fsecret.txt",
        "/archive/download/%2Fetc%2Fpasswd",
        "/archive/download/raw/link.txt",
        "/archive/download/raw%2F..%2F..%2Fsecret.txt",
    ):
        r = client.get(url)
        assert r.status_code == 404 and "not for the web" not in r.text, url
    # An existing archive file that is not registered is not served either.
    (settings.archive_root / "raw" / "stray.txt").write_text("stray")
    assert client.get("/archive/download/raw/stray.txt").status_code == 404


def test_productions_and_schema(client: TestClient, demo: DemoNight, registry: Registry) -> None:
    prods = client.get("/api/productions").json()
    assert [p["id"] for p in prods] == [demo.production_id]
    assert client.get("/api/productions?release=nope").json() == []
    assert "demo production" in client.get("/productions").text
    schema = client.get("/api/schema").json()
    assert schema["engine"] == registry.dialect
    tables = {t["name"]: t for t in schema["tables"]}
    assert {"job", "mosaic", "image", "archive_file", "production", "quality_control"} <= set(
        tables
    )
    cols = {c["name"]: c for c in tables["mosaic"]["columns"]}
    assert "arcsec" in cols["median_psf_fwhm"]["description"]
    assert cols["id"]["primary_key"] and cols["obs_set_id"]["foreign_key"] == "obs_set.id"
    assert any(ix["columns"] == ["parent_id", "status"] for ix in tables["job"]["indexes"])
    assert tables["job"]["description"]
    page = client.get("/schema")
    assert page.status_code == 200 and "median_psf_fwhm" in page.text


def test_sql_browser_api(client: TestClient, registry: Registry) -> None:
    def count() -> int:
        with registry.session(write=False) as s:
            return s.scalar(select(func.count()).select_from(ArchiveFile))

    n = count()
    r = client.post("/api/sql", json={"query": "SELECT id, size FROM archive_file", "limit": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["columns"] == ["id", "size"] and body["n_rows"] == 5 and body["truncated"]
    for sql in ("DELETE FROM archive_file", "SELECT 1; DROP TABLE job",
                "UPDATE archive_file SET size = 0"):  # fmt: skip
        bad = client.post("/api/sql", json={"query": sql})
        assert bad.status_code == 400 and "read-only" in bad.json()["detail"], sql
    assert count() == n
    runaway = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    )
    slow = client.post("/api/sql", json={"query": runaway})
    assert slow.status_code == 400 and "time limit" in slow.json()["detail"]
    assert client.post("/api/sql", json={"query": "SELECT 1", "limit": 10_001}).status_code == 422
    csv_resp = client.get("/sql/result.csv", params={"q": "SELECT size FROM archive_file",
                                                      "limit": 10_000})  # fmt: skip
    assert csv_resp.headers["content-type"].startswith("text/csv")
    assert len(csv_resp.text.strip().splitlines()) == n + 1
    hist = client.get("/sql/plot.png", params={"q": "SELECT size FROM archive_file", "x": "size"})
    assert hist.status_code == 200 and not_blank(hist.content)
    scatter = client.get("/sql/plot.png", params={"q": "SELECT id, size FROM archive_file",
                                                   "x": "id", "y": "size"})  # fmt: skip
    assert scatter.status_code == 200 and not_blank(scatter.content)
    assert client.get("/sql/plot.png", params={"q": "SELECT 1 AS a", "x": "b"}).status_code == 400
    page = client.get("/sql", params={"q": "SELECT path FROM archive_file", "limit": 3})
    assert page.status_code == 200 and page.text.count("<tr>") >= 4
    escaped = client.get("/sql", params={"q": "SELECT '<script>alert(1)</script>' AS a"})
    assert "<script>alert(1)" not in escaped.text and "&lt;script&gt;alert(1)" in escaped.text
    refused = client.get("/sql", params={"q": "DROP TABLE job"})
    assert refused.status_code == 400 and "read-only" in refused.text


def test_serve_command_help() -> None:
    from typer.testing import CliRunner

    from surveydm.cli.main import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--port" in result.output and "--host" in result.output


def test_missing_schema_gives_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)  # an empty SQLite registry: no tables
    with TestClient(create_app(settings)) as c:
        r = c.get("/api/jobs")
        assert r.status_code == 503 and "surveydm db upgrade" in r.json()["detail"]
        page = c.get("/jobs")
        assert page.status_code == 503 and "no such table" in page.text


def test_empty_registry_pages(registry: Registry, settings: Settings) -> None:
    with TestClient(create_app(settings, registry=registry)) as c:
        for path in ("/jobs", "/report", "/archive", "/productions", "/schema", "/sql"):
            assert c.get(path).status_code == 200, path
        assert c.get("/api/jobs").json()["total"] == 0
        assert c.get("/api/report").json()["n_science"] == 0
        assert c.get("/jobs/pie/task.png").headers["content-type"] == "image/png"


def test_job_pages_make_a_fixed_number_of_queries(
    client: TestClient, registry: Registry, demo: DemoNight
) -> None:
    """No N+1: the statements a job list makes do not grow with the rows shown."""
    from sqlalchemy import event

    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        statements.append(statement)

    event.listen(registry.engine, "before_cursor_execute", count)
    try:
        sizes = {}
        for page_size in (1, 4):
            statements.clear()
            assert len(client.get(f"/api/jobs?page_size={page_size}").json()["jobs"]) == page_size
            sizes[page_size] = len(statements)
        statements.clear()
        client.get(f"/api/jobs?parent={demo.nightly_job}&page_size=1")
        one = len(statements)
        statements.clear()
        client.get(f"/api/jobs?parent={demo.nightly_job}&page_size=8")
        assert len(statements) == one
    finally:
        event.remove(registry.engine, "before_cursor_execute", count)
    assert sizes[1] == sizes[4]
