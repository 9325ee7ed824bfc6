"""Accuracy of the nightly pipeline against the simulator's truth (issue 6).

Simulates the demo night (``paucam-mini``, or any built-in camera or YAML path with
``--instrument``), runs ``surveydm night`` on it with the embedded
default (SQLite + local archive in a temporary home) and prints, for bright unsaturated stars
and every reduced CCD: astrometric RMS against the true positions (target <= 0.03 arcsec),
zero-point error per CCD (target |dZP| <= 0.01 mag), completeness at S/N 10 (target >= 0.9)
and the width of the flux pull distribution (target 1.0 +- 0.1).

    python benchmarks/accuracy.py [--instrument dcam-mini] [--science 4] [--seed 1]
        [--processes 2] [--seeing ARCSEC]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.db.migrate import upgrade
from surveydm.pipelines.accuracy import night_accuracy
from surveydm.pipelines.night import run_night
from surveydm.pipelines.refcat import load_refcat
from surveydm.simulation import SimulationConfig, simulate_night


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--science", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--instrument", default="paucam-mini", help="built-in name or YAML path")
    parser.add_argument(
        "--seeing", type=float, default=None, help="seeing, arcsec (default: 0.7-1.3 drawn)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="surveydm-accuracy-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        config = None
        if args.seeing is not None:
            config = SimulationConfig(seeing_range_arcsec=(args.seeing, args.seeing))
        sim = simulate_night(
            args.instrument,
            root / "buffer",
            seed=args.seed,
            n_science=args.science,
            n_bias=3,
            n_flats_per_tray=3,
            config=config,
        )
        t_sim = time.perf_counter() - t0
        settings = Settings(home=root / "home")
        upgrade(settings.resolved_database_url)
        registry = Registry(settings.resolved_database_url)
        load_refcat(registry, sim.refcat, "pixelsim")
        t0 = time.perf_counter()
        summary = run_night(settings, root / "buffer", processes=args.processes)
        t_night = time.perf_counter() - t0
        report = night_accuracy(registry, sim.truth_dir)
        print(f"instrument: {args.instrument}")
        print(
            f"simulation: {t_sim:.1f} s; night: {t_night:.1f} s "
            f"({summary.ccds_reduced} CCDs, jobs {summary.jobs_by_status})"
        )
        print("\n".join(report.lines()))
        print("\nper CCD: file ccd filter astro_rms_arcsec n_bright dZP completeness")
        for c in sorted(report.ccds, key=lambda c: (c.file, c.ccd_num)):
            dzp = "   n/a " if c.dzp is None else f"{c.dzp:+.4f}"
            comp = "n/a" if c.completeness_snr10 is None else f"{c.completeness_snr10:.2f}"
            print(
                f"{c.file} {c.ccd_num:2d} {c.filter:6s} {c.astro_rms_arcsec:7.4f} "
                f"{c.n_astro:4d} {dzp} {comp}"
            )
        missing = [c for c in report.ccds if c.dzp is None]
        if missing:
            print(
                f"\n{len(missing)} CCDs without a zero-point: "
                + ", ".join(sorted({c.filter for c in missing}))
            )
        print(f"fraction of CCDs with |dZP| <= 0.01: {np.mean(np.abs(report.dzp) <= 0.01):.2f}")
        registry.dispose()


if __name__ == "__main__":
    main()
