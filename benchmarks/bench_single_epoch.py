"""Single-epoch throughput on full-size ``paucam`` CCDs (issue 6).

Simulates one full-size PAUCam science exposure, then reduces CCDs end to end with
:func:`surveydm.reduction.single_epoch.reduce_ccd` (overscan, crosstalk, non-linearity, gain,
bias, flat, cosmic rays, masks, weights, background, extraction, PSF, astrometry, zero-point),
each CCD in its own process as a CCD job runs, and prints megapixels per second per core
(target >= 1.0) and the peak resident memory of each CCD job (target <= 1.5 GiB). The
reference measured in the same run is reading the CCD's raw amplifiers from the file (the
least any reduction must do). Masters are unit frames (no bias structure, flat 1): they cost the
same arithmetic as real ones.

    python benchmarks/bench_single_epoch.py [--ccds 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def _reduce_one(args: tuple[str, str, int]) -> tuple[float, float, float, int, str, float]:
    from astropy.table import Table

    from surveydm.instruments import load_instrument
    from surveydm.instruments.geometry import ccd_wcs
    from surveydm.pipelines.fitsio import read_raw_ccd
    from surveydm.reduction.single_epoch import reduce_ccd

    raw, refcat, num = args
    cam = load_instrument("paucam")
    ccd = cam.ccd(num)
    t0 = time.perf_counter()
    raw_ccd = read_raw_ccd(Path(raw), cam, num)
    header, amps = raw_ccd.header, raw_ccd.amps
    t_read = time.perf_counter() - t0
    band = cam.filter(cam.tray(header["FILTRAY"]).filters[num])
    ref = Table.read(refcat)
    ref["mag"], ref["mag_error"] = ref[f"mag_{band.name}"], ref[f"magerr_{band.name}"]
    wcs0 = ccd_wcs(cam, num, header["RA"], header["DEC"], distortion=False)
    t0 = time.perf_counter()
    result = reduce_ccd(
        amps,
        ccd,
        band,
        exptime=header["EXPTIME"],
        airmass=header["AIRMASS"],
        pixel_scale=cam.pixel_scale_arcsec,
        initial_wcs=wcs0,
        reference=ref,
        bias=np.zeros(ccd.shape, np.float32),
        flat=np.ones(ccd.shape, np.float32),
    )
    t_red = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    m = result.metrics
    return t_read, t_red, peak_gib, m.n_extracted, m.astro_status, m.astro_rms or np.nan


def main() -> None:
    from surveydm.simulation import simulate_night

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ccds", type=int, default=2, help="CCDs to reduce")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="surveydm-bench-se-") as tmp:
        t0 = time.perf_counter()
        sim = simulate_night(
            "paucam",
            Path(tmp) / "buffer",
            n_bias=0,
            n_flats_per_tray=0,
            n_science=1,
            n_test=0,
            n_focus=0,
        )
        print(f"simulated one full-size paucam exposure in {time.perf_counter() - t0:.1f} s")
        raw = next(f.path for f in sim.files if f.kind == "science")
        os.environ["OMP_NUM_THREADS"] = "1"  # a CCD job runs on one core, as the pilots do
        ctx = mp.get_context("spawn")
        print("ccd  Mpix  read_s  reduce_s  Mpix/s/core  peak_GiB  n_src  astrometry")
        rates = []
        for num in range(1, args.ccds + 1):
            with ctx.Pool(1, maxtasksperchild=1) as pool:
                t_read, t_red, peak, n, status, rms = pool.apply(
                    _reduce_one, ((str(raw), str(sim.refcat), num),)
                )
            mpix = 4096 * 2048 / 1e6
            rates.append(mpix / (t_read + t_red))
            print(
                f"{num:3d}  {mpix:4.1f}  {t_read:6.2f}  {t_red:8.2f}  {rates[-1]:11.2f}  "
                f'{peak:8.2f}  {n:5d}  {status} rms={rms:.3f}"'
            )
        print(
            f"\nend-to-end single epoch: {np.median(rates):.2f} Mpix/s/core (target >= 1.0); "
            f"reading the raw CCD alone: {mpix / t_read:.1f} Mpix/s "
            f"(reduction = {t_read / (t_read + t_red):.2%} of that speed)"
        )


if __name__ == "__main__":
    main()
