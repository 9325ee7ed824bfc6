"""Benchmark of the raw-night simulator (targets: < 60 s each on one core).

Prints the wall-clock and CPU time (CPU time is what counts on a shared machine) to simulate a
default ``paucam-mini`` night and one full-size ``paucam`` science exposure, each against a
reference measured in the same run: numpy drawing the same number of uint16 pixels (one
Gaussian draw each) and writing them as FITS, the floor any simulator writing those files pays.

    python benchmarks/bench_simulate.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from surveydm.instruments import load_instrument
from surveydm.simulation import simulate_night


def _reference(instrument: str, n_files: int, out: Path) -> float:
    """Seconds for numpy to draw and write the same raw pixels (n_files MEF files)."""
    inst = load_instrument(instrument)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(n_files):
        hdus = [fits.PrimaryHDU()]
        for ccd in inst.ccds:
            for amp in ccd.amplifiers:
                noise = rng.standard_normal(amp.raw_shape, dtype=np.float32)
                noise *= 5
                noise += 1000
                hdus.append(fits.ImageHDU(noise.astype(np.uint16)))
        fits.HDUList(hdus).writeto(out / f"ref{i}.fits", overwrite=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write here and keep the output")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench_sim_"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        night = simulate_night("paucam-mini", base / "mini" / "buffer")
        t_night, c_night = time.perf_counter() - t0, time.process_time() - c0
        n_files = len(night.files)
        ref_dir = base / "ref"
        ref_dir.mkdir(exist_ok=True)
        c0 = time.process_time()
        t_ref = _reference("paucam-mini", n_files, ref_dir)
        c_ref = time.process_time() - c0
        for p in ref_dir.glob("*.fits"):
            p.unlink()
        print(
            f"paucam-mini night: {n_files} files, {night.total_bytes / 2**20:.0f} MiB, "
            f"wall {t_night:.1f} s, CPU {c_night:.1f} s (target < 60 s); numpy draw+write of "
            f"the same pixels: wall {t_ref:.1f} s, CPU {c_ref:.1f} s; CPU ratio "
            f"{c_night / c_ref:.1f}"
        )

        t0, c0 = time.perf_counter(), time.process_time()
        full = simulate_night(
            "paucam", base / "full" / "buffer", n_bias=0, n_flats_per_tray=0, n_science=1,
            trays=["r"], n_test=0, n_focus=0,
        )  # fmt: skip
        t_full, c_full = time.perf_counter() - t0, time.process_time() - c0
        c0 = time.process_time()
        t_ref_full = _reference("paucam", 1, ref_dir)
        c_ref_full = time.process_time() - c0
        print(
            f"paucam full-size science exposure: {full.total_bytes / 2**20:.0f} MiB, "
            f"wall {t_full:.1f} s, CPU {c_full:.1f} s (target < 60 s; includes drawing the sky "
            f"and writing the truth); numpy draw+write: wall {t_ref_full:.1f} s, CPU "
            f"{c_ref_full:.1f} s; CPU ratio {c_full / c_ref_full:.1f}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
