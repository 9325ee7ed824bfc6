"""Single-epoch throughput on full-size ``paucam`` CCDs (issue 6).

Simulates one full-size PAUCam science exposure, then reduces CCDs end to end with
:func:`surveydm.reduction.single_epoch.reduce_ccd` (overscan, crosstalk, non-linearity, gain,
bias, flat, cosmic rays, masks, weights, background, extraction, PSF, astrometry, zero-point),
each CCD in its own process, ``--repeat`` times (the first pass also loads the compiled kernels,
as a pilot's first CCD does; later passes are a pilot's steady state), and prints megapixels
per second per core, wall and per CPU second (target >= 4.0, issue 13; the CPU figure does not
depend on the machine's load), and the peak resident memory of each CCD job (target <= 1.5
GiB). ``--profile N`` adds the CPU seconds and share of each stage of the last pass and the N
top entries of its profile. The reference measured in the same run is reading the CCD's raw
amplifiers from the file (the least any reduction must do). Masters are unit frames (no bias
structure, flat 1): they cost the same arithmetic as real ones.

    python benchmarks/bench_single_epoch.py [--ccds 2] [--repeat 2] [--profile 40]
        [--workdir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _reduce_one(
    args: tuple[str, str, int, int, int],
) -> tuple[list[tuple[float, float, float]], float, int, str, float, str]:
    """Reduce CCD ``num`` ``repeat`` times in this process (as a pilot reduces CCD after CCD:
    the first pass also loads the compiled kernels). Returns ([(read s, reduce s, CPU s)] per
    pass, peak GiB, sources, astrometry status, rms, profile report of the last pass)."""
    import cProfile
    import io
    import pstats

    from astropy.table import Table

    from surveydm.instruments import load_instrument
    from surveydm.instruments.geometry import ccd_wcs
    from surveydm.pipelines.fitsio import read_raw_ccd
    from surveydm.reduction.single_epoch import reduce_ccd

    raw, refcat, num, top, repeat = args
    cam = load_instrument("paucam")
    ccd = cam.ccd(num)
    passes = []
    report = ""
    for i in range(repeat):
        prof = cProfile.Profile(time.process_time) if top and i == repeat - 1 else None
        c0 = time.process_time()
        t0 = time.perf_counter()
        raw_ccd = read_raw_ccd(Path(raw), cam, num)
        header, amps = raw_ccd.header, raw_ccd.amps
        t_read = time.perf_counter() - t0
        band = cam.filter(cam.tray(header["FILTRAY"]).filters[num])
        ref = Table.read(refcat)
        ref["mag"], ref["mag_error"] = ref[f"mag_{band.name}"], ref[f"magerr_{band.name}"]
        wcs0 = ccd_wcs(cam, num, header["RA"], header["DEC"], distortion=False)
        t0 = time.perf_counter()
        if prof is not None:
            prof.enable()
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
        if prof is not None:
            prof.disable()
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out)
            out.write(_stage_shares(stats))
            stats.sort_stats("cumulative").print_stats(top)
            report = out.getvalue()
        passes.append((t_read, time.perf_counter() - t0, time.process_time() - c0))
        del result.science, result.weight, result.mask
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    m = result.metrics
    rms = m.astro_rms or np.nan
    return passes, peak_gib, m.n_extracted, m.astro_status, rms, report


#: Stages of :func:`reduce_ccd` whose CPU shares the profile reports: (label, module file
#: suffix, function). Nested stages (the bright-source pass inside ``_clean``) are counted in
#: both; ``extract_sources`` covers both of its calls.
STAGES = (
    ("assemble (overscan..flat, one kernel)", "reduction/assemble.py", "assemble_ccd"),
    ("detrend (fringe)", "reduction/detrend.py", "detrend"),
    ("masks", "reduction/masks.py", "build_mask"),
    ("bad pixels from flat", "reduction/masks.py", "bad_pixels_from_flat"),
    ("background", "extraction/background.py", "measure_background"),
    ("satellite trails", "reduction/satellites.py", "find_satellite_trails"),
    ("cosmic rays", "reduction/cosmics.py", "find_cosmic_rays"),
    ("background levelling", "extraction/background.py", "level_background"),
    ("weight map", "reduction/weights.py", "weight_map"),
    ("source extraction (2 passes, incl. PSF fit)", "extraction/extract.py", "extract_sources"),
    ("PSF FWHM", "reduction/psf/stars.py", "estimate_psf_fwhm"),
    ("astrometry", "astrometry/solve.py", "solve_astrometry"),
    ("aperture correction", "reduction/zeropoint.py", "isolated_star_aperture_correction"),
    ("zero-point", "reduction/single_epoch.py", "_calibrate_photometry"),
    ("numba cache loads (once per process)", "numba/core/caching.py", "load_overload"),
)


def _stage_shares(stats: Any) -> str:
    """A table of the CPU seconds and shares of :data:`STAGES` in a profile of one CCD."""
    cum: dict[str, float] = {}
    total = 0.0
    for (path, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        if func == "reduce_ccd" and path.endswith("reduction/single_epoch.py"):
            total = max(total, ct)
        for label, suffix, name in STAGES:
            if func == name and path.endswith(suffix):
                cum[label] = cum.get(label, 0.0) + ct
    lines = [f"CPU per stage of reduce_ccd ({total:.2f} s under the profiler):"]
    for label, *_ in STAGES:
        if label in cum:
            lines.append(f"  {label:45s} {cum[label]:6.2f} s  {cum[label] / total:6.1%}")
    return "\n".join(lines) + "\n"


def _simulated_exposure(workdir: Path) -> tuple[Path, Path]:
    """(raw science file, reference catalog) of one simulated full-size paucam exposure in
    ``workdir``, simulated unless a previous run left them there."""
    from surveydm.simulation import simulate_night

    done = workdir / "exposure.txt"
    if done.exists():
        raw, refcat = done.read_text().split("\n")[:2]
        return Path(raw), Path(refcat)
    t0 = time.perf_counter()
    sim = simulate_night(
        "paucam",
        workdir / "buffer",
        n_bias=0,
        n_flats_per_tray=0,
        n_science=1,
        n_test=0,
        n_focus=0,
    )
    print(f"simulated one full-size paucam exposure in {time.perf_counter() - t0:.1f} s")
    raw = next(f.path for f in sim.files if f.kind == "science")
    done.write_text(f"{raw}\n{sim.refcat}\n")
    return Path(raw), Path(sim.refcat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ccds", type=int, default=2, help="CCDs to reduce")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print the N top cProfile entries"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="reductions of each CCD in its process (the first loads the compiled kernels)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the simulated exposure here and reuse it when run again (not timed anyway)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="surveydm-bench-se-") as tmp:
        raw, refcat = _simulated_exposure(args.workdir or Path(tmp))
        os.environ["OMP_NUM_THREADS"] = "1"  # a CCD job runs on one core, as the pilots do
        ctx = mp.get_context("spawn")
        print(
            "ccd  pass  Mpix  read_s  reduce_s  Mpix/s/core  cpu_s  Mpix/cpu_s  peak_GiB  "
            "n_src  astrometry"
        )
        mpix = 4096 * 2048 / 1e6
        rates: dict[int, list[float]] = {}
        cpu_rates: dict[int, list[float]] = {}
        peaks, reads = [], []
        for num in range(1, args.ccds + 1):
            with ctx.Pool(1, maxtasksperchild=1) as pool:
                passes, peak, n, status, rms, report = pool.apply(
                    _reduce_one, ((str(raw), str(refcat), num, args.profile, args.repeat),)
                )
            peaks.append(peak)
            for i, (t_read, t_red, cpu) in enumerate(passes):
                reads.append(t_read)
                rates.setdefault(i, []).append(mpix / (t_read + t_red))
                cpu_rates.setdefault(i, []).append(mpix / cpu)
                print(
                    f"{num:3d}  {i + 1:4d}  {mpix:4.1f}  {t_read:6.2f}  {t_red:8.2f}  "
                    f"{rates[i][-1]:11.2f}  {cpu:5.2f}  {cpu_rates[i][-1]:10.2f}  "
                    f'{peak:8.2f}  {n:5d}  {status} rms={rms:.3f}"'
                )
            if report:
                print(report)
        print()
        for i in sorted(rates):
            what = (
                "first CCD of a process (loads the compiled kernels)"
                if i == 0
                else ("a later CCD of the same process (a pilot's steady state)")
            )
            print(
                f"end-to-end single epoch, {what}: {np.median(rates[i]):.2f} Mpix/s/core wall, "
                f"{np.median(cpu_rates[i]):.2f} Mpix per CPU second (target >= 4; the CPU "
                f"figure does not depend on what else runs on the machine)"
            )
        t_read = float(np.median(reads))
        print(
            f"peak {max(peaks):.2f} GiB per CCD job (target <= 1.5); reading the raw CCD "
            f"alone: {mpix / t_read:.1f} Mpix/s wall"
        )


if __name__ == "__main__":
    main()
