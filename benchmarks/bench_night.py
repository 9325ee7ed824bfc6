"""A whole night on the real path: full-size ``paucam`` exposures through transfer -> register
-> nightly with local pilots, as ``surveydm night`` runs it (issue 13).

Simulates a night (:func:`surveydm.simulation.simulate_night`, what ``surveydm simulate
--instrument paucam`` runs; not timed), loads its reference catalog, then times
:func:`~surveydm.pipelines.transfer.transfer_buffer` and
:func:`~surveydm.pipelines.night.run_night` (the library call behind ``surveydm night``; its own
transfer then finds nothing new). It prints:

- megapixels per second per core for the whole night: raw pixels of every exposure (bias,
  flats, science; overscan included) / (wall seconds x cores used), against the target of
  4 Mpix/s/core and the 6-hour window of a PAUCam night (seed 000 section 2);
- the share of each stage: transfer (timed here) and, from the job records, the wall time of
  every task type (register, master bias and flat, single epoch per CCD and per mosaic...),
  summed over pilots;
- detection inserts in rows/s: a pipelined ``executemany`` INSERT (before issue 13) against
  :func:`~surveydm.db.bulk.bulk_insert` (``COPY`` on PostgreSQL), the night's own detections
  re-inserted in a rolled-back transaction.

By default the night holds as many science exposures as fit in ``--minutes`` (10) at the
reduction speed measured before (~1.1 Mpix/s/core); ``--science N`` sets it::

    python benchmarks/bench_night.py [--science 1] [--processes 2] [--postgres]
        [--bias 3] [--flats 3] [--keep DIR]

``--postgres`` runs the registry on a fresh database of ``SURVEYDM_BENCH_POSTGRES_URL``
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``), dropped at the end;
otherwise on the embedded SQLite default.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Reduction speed measured before issue 13 (Mpix/s per core), used to size the default night.
EARLIER_MPIX_PER_CORE = 1.1
#: Target of issue 13 (Mpix/s per core).
TARGET_MPIX_PER_CORE = 4.0


@dataclass
class StageTime:
    """Seconds spent in one stage (wall time for transfer, summed job wall time otherwise)."""

    stage: str
    seconds: float
    jobs: int


def exposure_megapixels(instrument: str) -> float:
    """Raw megapixels of one exposure of ``instrument`` (every CCD, overscan included)."""
    from surveydm.instruments import load_instrument

    cam = load_instrument(instrument)
    return sum(a.raw_shape[0] * a.raw_shape[1] for ccd in cam.ccds for a in ccd.amplifiers) / 1e6


def default_science(minutes: float, cores: int, n_calib: int, mpix: float) -> int:
    """Science exposures that fit in ``minutes`` besides ``n_calib`` calibration exposures at
    the earlier reduction speed (at least 1)."""
    exposures = minutes * 60 * cores * EARLIER_MPIX_PER_CORE / mpix
    return max(1, int(exposures) - n_calib)


def postgres_database() -> tuple[str, Callable[[], None]]:
    """(url, drop) of a fresh empty PostgreSQL database (``run_night`` migrates it)."""
    from scratch_postgres import scratch_database

    return scratch_database("surveydm_night")


def job_stages(url: str, roots: list[int]) -> list[StageTime]:
    """Summed wall time and count of the jobs of each task type in the trees of ``roots``."""
    from sqlalchemy import func, or_, select

    from surveydm.db import Registry
    from surveydm.db.models.jobs import Job
    from surveydm.orchestration.reads import tree_select

    reg = Registry(url)
    with reg.session(write=False) as s:
        rows = s.execute(
            select(Job.task, func.sum(Job.wall_time), func.count())
            .where(or_(*[Job.id.in_(tree_select(r)) for r in roots]))
            .group_by(Job.task)
        ).all()
    reg.dispose()
    return [StageTime(task, float(wall or 0.0), int(n)) for task, wall, n in rows]


def insert_rates(url: str, repeat: int = 3) -> tuple[int, float, float]:
    """(rows, rows/s with an ``executemany`` INSERT, rows/s with ``bulk_insert``): the night's
    detections inserted again, each time in a transaction that is rolled back."""
    from sqlalchemy import select

    from surveydm.db import Registry
    from surveydm.db.bulk import bulk_insert
    from surveydm.db.models.calibration import Detection

    reg = Registry(url)
    table = Detection.__table__
    cols = [c for c in table.c if c.name != "id"]
    with reg.session(write=False) as s:
        rows = [dict(zip([c.name for c in cols], r, strict=True)) for r in s.execute(select(*cols))]
    if not rows:
        reg.dispose()
        return 0, float("nan"), float("nan")

    def best(insert: Callable[..., object]) -> float:
        times = []
        for _ in range(repeat):
            with reg.session(write=False) as s:  # rolled back at the end
                t0 = time.perf_counter()
                insert(s)
                s.flush()
                times.append(time.perf_counter() - t0)
        return len(rows) / min(times)

    before = best(lambda s: s.execute(table.insert(), rows))
    after = best(lambda s: bulk_insert(s, table, rows))
    reg.dispose()
    return len(rows), before, after


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--science", type=int, default=None, help="science exposures")
    ap.add_argument("--minutes", type=float, default=10.0, help="size the default night")
    ap.add_argument("--bias", type=int, default=3)
    ap.add_argument("--flats", type=int, default=3, help="dome flats per tray")
    ap.add_argument("--trays", default=None, help="comma-separated trays (default: the first)")
    ap.add_argument("--processes", "-p", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--postgres", action="store_true", help="registry on PostgreSQL")
    ap.add_argument("--keep", type=Path, default=None, help="keep the night's files here")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.bias < 3 or args.flats < 3:
        ap.error("--bias and --flats need at least 3 frames each (the masters' minimum)")

    from surveydm.config import Settings
    from surveydm.db import Registry
    from surveydm.db.migrate import upgrade
    from surveydm.instruments import load_instrument
    from surveydm.pipelines.night import run_night
    from surveydm.pipelines.refcat import load_refcat
    from surveydm.pipelines.transfer import transfer_buffer
    from surveydm.simulation import simulate_night

    instrument = "paucam"
    cam = load_instrument(instrument)
    trays = args.trays.split(",") if args.trays else [cam.trays[0].name]
    cores = min(args.processes, os.cpu_count() or 1)
    mpix = exposure_megapixels(instrument)
    n_calib = args.bias + args.flats * len(trays)
    science = args.science or default_science(args.minutes, cores, n_calib, mpix)

    work = Path(args.keep or tempfile.mkdtemp(prefix="surveydm-bench-night-"))
    drop = None
    try:
        if args.postgres:
            url, drop = postgres_database()
        else:
            url = f"sqlite:///{work / 'registry.sqlite'}"
        settings = Settings(home=work / "home", database_url=url)
        print(
            f"simulating {science} science + {n_calib} calibration full-size {instrument} "
            f"exposures ({mpix:.0f} Mpix each) ...",
            flush=True,
        )
        t0 = time.perf_counter()
        sim = simulate_night(
            instrument,
            work / "buffer",
            seed=args.seed,
            n_science=science,
            n_bias=args.bias,
            n_flats_per_tray=args.flats,
            trays=trays,
            n_test=0,
            n_focus=0,
        )
        t_sim = time.perf_counter() - t0
        n_exp = len(sim.files)
        print(f"simulated {n_exp} files in {t_sim:.0f} s (not counted)", flush=True)

        upgrade(url)
        registry = Registry(url)
        load_refcat(registry, sim.refcat_path, "pixelsim", replace=True)
        from surveydm.archive import Archive

        t0 = time.perf_counter()
        transfer_buffer(registry, Archive(settings.archive_root), work / "buffer", settle_seconds=0)
        t_transfer = time.perf_counter() - t0
        registry.dispose()
        t0 = time.perf_counter()
        night = run_night(settings, work / "buffer", processes=args.processes, settle_seconds=0)
        t_jobs = time.perf_counter() - t0
        wall = t_transfer + t_jobs
        stages = [StageTime("transfer", t_transfer, 1), *job_stages(url, night.root_jobs)]
        total_stage = sum(st.seconds for st in stages)
        night_mpix = n_exp * mpix
        rate = night_mpix / (wall * cores)

        from rich.console import Console
        from rich.table import Table

        engine = url.split(":")[0].split("+")[0]
        table = Table(title=f"surveydm night benchmark ({instrument}, registry on {engine})")
        for col in ("measure", "value", "notes"):
            table.add_column(col)
        table.add_row(
            "night",
            f"{n_exp} exposures, {night_mpix:,.0f} Mpix",
            f"{science} science, {n_calib} calibration; {night.ccds_reduced} CCDs reduced; "
            f"jobs {dict(sorted(night.jobs_by_status.items()))}",
        )
        table.add_row(
            "wall time", f"{wall:.1f} s", f"transfer {t_transfer:.1f} s + night {t_jobs:.1f} s"
        )
        table.add_row(
            "speed",
            f"{rate:.2f} Mpix/s/core",
            f"{cores} cores, {args.processes} pilots; target >= {TARGET_MPIX_PER_CORE}",
        )
        paucam_night_h = 200 * 1024**3 / 2 / 1e6 / (rate * 2) / 3600  # 200 GiB of uint16
        table.add_row(
            "a 200 GiB PAUCam night", f"{paucam_night_h:.1f} h on 2 cores", "window: ~6 h"
        )
        for st in sorted(stages, key=lambda st: -st.seconds):
            table.add_row(
                f"stage {st.stage}",
                f"{100 * st.seconds / total_stage:.1f} %",
                f"{st.seconds:.1f} s in {st.jobs} job(s)"
                + (" (wall)" if st.stage == "transfer" else " (summed job wall time)"),
            )
        n_rows, before, after = insert_rates(url)
        table.add_row(
            "detection inserts",
            f"{after:,.0f} rows/s",
            f"{n_rows} rows on {engine}; executemany INSERT {before:,.0f} rows/s "
            f"({after / before:.1f}x)",
        )
        Console().print(table)
        if night.failures or not night.ccds_reduced:
            print(
                f"WARNING: the night did not reduce completely ({night.ccds_reduced} CCDs "
                f"reduced; failed: {night.failures}): the speed above is not a night's",
                flush=True,
            )
    finally:
        if drop is not None:
            drop()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
