"""Portal page load times with a registry holding 100,000 jobs (issue 5: target < 1 s a page).

Bulk-inserts N jobs (top-level super-jobs with sub-jobs, a mix of statuses, QC rows on a fifth
of them, tracebacks on the failed ones) plus one night of science exposures and archive files,
then times each main page and its JSON twin in-process through FastAPI's TestClient (median of
``--repeat`` requests, after one warm-up), printed with the time of a trivial ``/api/health``
request measured in the same run as the reference.

    python benchmarks/bench_web.py                       # SQLite in a temporary folder
    python benchmarks/bench_web.py --postgres            # a temporary PostgreSQL database
    python benchmarks/bench_web.py --jobs 100000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text

from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.db.base import Base
from surveydm.db.models.jobs import Job, QualityControl, Tag
from surveydm.db.models.raw import ArchiveFile, Mosaic, ObsSet

PG_ADMIN = os.environ.get(
    "SURVEYDM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
STATUSES_SUB = ["done"] * 16 + ["failed", "failed_quality", "skipped", "running", "queued"]
TASKS = ["nightly", "register", "memba", "calibration"]


def fill(registry: Registry, n_jobs: int, subjobs_per_root: int) -> dict[str, object]:
    """Bulk-insert ``n_jobs`` jobs (roots with ``subjobs_per_root`` sub-jobs each) and their QC
    rows and tags; returns ids useful for the page requests."""
    import surveydm.db.models  # noqa: F401

    Base.metadata.create_all(registry.engine)
    n_roots = max(1, n_jobs // (subjobs_per_root + 1))
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    jobs, qcs, tags = [], [], []
    next_id = n_roots + 1
    for r in range(1, n_roots + 1):
        created = t0 + timedelta(minutes=20 * r)
        obs = f"{(created.date()).strftime('%Y%m%d')}_{r:04d}"
        task = TASKS[r % len(TASKS)]
        jobs.append(
            dict(
                id=r,
                task=task,
                name=f"{task} {obs}",
                config={"obs_set": obs},
                input={},
                status="done" if r % 7 else "failed",
                phase="epilog",
                parent_id=None,
                root_id=r,
                created=created,
                started=created,
                ended=created + timedelta(minutes=15),
                not_before=created,
                attempts=1,
                max_attempts=3,
                valid=True,
                wall_time=900.0,
            )
        )
        for k in range(subjobs_per_root):
            if next_id > n_jobs:
                break
            st = STATUSES_SUB[(r + k) % len(STATUSES_SUB)]
            jobs.append(
                dict(
                    id=next_id,
                    task="single_epoch",
                    name=f"se {obs} #{k}",
                    config={"obs_set": obs, "exp_num": k},
                    input={},
                    status=st,
                    phase="prolog",
                    parent_id=r,
                    root_id=r,
                    created=created,
                    started=created + timedelta(seconds=k),
                    ended=created + timedelta(seconds=k + 30),
                    not_before=created,
                    attempts=1,
                    max_attempts=3,
                    valid=True,
                    wall_time=30.0,
                )
            )
            if (next_id % 5) == 0:
                res = "fail" if st == "failed_quality" else ("warn" if k % 11 == 0 else "pass")
                qcs.append(
                    dict(
                        job_id=next_id,
                        check_name="psf_fwhm",
                        description="PSF",
                        value=1.1,
                        min_value=None,
                        max_value=2.5,
                        warn_min=None,
                        warn_max=1.25,
                        units="arcsec",
                        result=res,
                        qc_pass=res != "fail",
                        time=created,
                    )
                )
            if st == "failed":
                tags.append(
                    dict(
                        job_id=next_id,
                        name="traceback",
                        value="Traceback ...\nOSError: boom",
                        attempt=1,
                        time=created,
                    )
                )
            next_id += 1
    with registry.engine.begin() as conn:
        for table, rows in ((Job, jobs), (QualityControl, qcs), (Tag, tags)):
            for i in range(0, len(rows), 5000):
                conn.execute(insert(table), rows[i : i + 5000])
        if registry.dialect == "postgresql":
            conn.execute(text("SELECT setval('job_id_seq', (SELECT max(id) FROM job))"))
            conn.execute(text("ANALYZE"))
    # One night of exposures and files for the report and archive pages.
    night = date(2026, 11, 20)
    with registry.session() as s:
        obs = ObsSet(obs_set="20261120_bench", night=night, instrument="paucam")
        s.add(obs)
        s.flush()
        for k in range(300):
            f = ArchiveFile(
                path=f"raw/{night}/20261120_bench/sci_{k:04d}.fits",
                size=1000,
                adler32="00000000",
                md5="0" * 32,
            )
            s.add(f)
            s.flush()
            s.add(
                Mosaic(
                    obs_set_id=obs.id,
                    kind="science",
                    filename=f"sci_{k:04d}.fits",
                    archive_file_id=f.id,
                    exp_num=k,
                    date_obs=datetime(2026, 11, 20, 20, tzinfo=UTC) + timedelta(minutes=k),
                    airmass=1 + k / 300,
                    median_psf_fwhm=0.8 + (k % 17) / 10,
                    transparency=0.95 - (k % 13) / 20,
                    sky_background=20 + k % 9,
                    zp_nightly=25.9 - (k % 5) / 50,
                    astro_rms=0.05 + (k % 7) / 40,
                )
            )
    root = n_roots // 2
    return {
        "root": root,
        "obs_set": next(j["config"]["obs_set"] for j in jobs if j["id"] == root),
        "failed_sub": next(
            (j["id"] for j in jobs if j["status"] == "failed" and j["parent_id"]), 1
        ),
        "n_roots": n_roots,
        "n_jobs": len(jobs),
        "n_qc": len(qcs),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--subjobs", type=int, default=49, help="sub-jobs per top-level job")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postgres", action="store_true", help="use a temporary PostgreSQL db")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from surveydm.publish.web import create_app

    tmp = Path(tempfile.mkdtemp(prefix="bench_web_"))
    admin, dbname = None, None
    if args.postgres:
        dbname = f"surveydm_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{dbname}"'))
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{dbname}"
    else:
        url = f"sqlite:///{tmp / 'registry.sqlite'}"
    registry = Registry(url)
    try:
        t = time.perf_counter()
        ids = fill(registry, args.jobs, args.subjobs)
        fill_s = time.perf_counter() - t
        print(
            f"engine {registry.dialect}: {ids['n_jobs']:,} jobs ({ids['n_roots']:,} top-level), "
            f"{ids['n_qc']:,} QC rows inserted in {fill_s:.1f} s"
        )
        app = create_app(Settings(home=tmp, database_url=url), registry=registry)
        pages = [
            "/api/health",
            "/jobs",
            "/api/jobs",
            "/jobs?qc=red",
            "/jobs?qc=yellow&task=nightly",
            "/jobs?status=failed&since=2026-10-05&until=2026-10-20",
            "/jobs?page=500",
            "/jobs/pie/status.png",
            "/jobs/pie/task.png",
            f"/jobs/{ids['root']}",
            f"/api/jobs/{ids['root']}",
            f"/jobs?parent={ids['root']}",
            f"/jobs/{ids['failed_sub']}",
            f"/obssets/{ids['obs_set']}/jobs-status",
            f"/obssets/{ids['obs_set']}/jobs-status.png",
            "/report",
            "/api/report",
            "/report/plot/seeing.png",
            "/archive?prefix=raw/2026-11-20/20261120_bench",
            "/productions",
            "/schema",
            "/sql?q=SELECT+task,+status,+count(*)+FROM+job+GROUP+BY+task,+status",
        ]
        results = {}
        with TestClient(app) as client:
            for path in pages:
                r = client.get(path)  # warm-up
                if r.status_code != 200:
                    print(f"  {path}: HTTP {r.status_code} {r.text[:200]}")
                    return 1
                times = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    client.get(path)
                    times.append(time.perf_counter() - t)
                results[path] = statistics.median(times)
        ref = results["/api/health"]
        print(f"{'page':70s} {'median s':>9s} {'x health':>9s}  target < 1 s")
        worst = 0.0
        for path, secs in results.items():
            worst = max(worst, secs)
            flag = "ok" if secs < 1.0 else "SLOW"
            print(f"{path[:70]:70s} {secs:9.3f} {secs / ref:9.0f}  {flag}")
        print(f"slowest page {worst:.3f} s; reference /api/health {ref * 1000:.1f} ms")
        return 0 if worst < 1.0 else 1
    finally:
        registry.dispose()
        if admin is not None:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
