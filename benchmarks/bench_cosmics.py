"""Cosmic-ray step: speed and agreement of ours against astroscrappy (issues 12 and 13).

Simulates one full-size ``paucam`` science exposure in the default seeing and one in ~0.5"
seeing (~2 pixel FWHM, where short tracks look most like stars), assembles CCDs (overscan,
crosstalk, gain; no bias or flat frames: the bias level is in the overscan and the response is
within 2 %), and runs on the same pixels, with the same mask (saturated + edge), sky (sep mesh)
and PSF FWHM (the simulator's):

* ours, :func:`surveydm.reduction.cosmics.find_cosmic_rays`;
* astroscrappy as the pipeline ran it before (``fsmode="convolve"``, Moffat PSF, ``objlim=5``,
  one iteration), :func:`surveydm.reduction.cosmics.find_cosmic_rays_lacosmic`.

Prints per CCD and method: Mpix/s of the step (CPU time of this process, one thread: the
machine may be shared), completeness against the simulator's per-pixel truth (pixels; tracks
touched; tracks of <= 3 pixels touched), false-positive pixels (masked, no truth cosmic ray,
split into detector defects - hot pixels and bad columns, real artefacts - and the rest),
bright-star cores masked (stars brighter than 20th magnitude whose central pixel is flagged
without a truth cosmic ray or defect there), and the overlap of the two masks (fraction of
astroscrappy's pixels ours also flags, and the reverse), then the speed ratio.

    python benchmarks/bench_cosmics.py [--ccds 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402
from scipy import ndimage  # noqa: E402

from surveydm.instruments import load_instrument  # noqa: E402
from surveydm.pipelines.fitsio import read_raw_ccd  # noqa: E402
from surveydm.reduction.assemble import assemble_ccd  # noqa: E402
from surveydm.reduction.cosmics import find_cosmic_rays, find_cosmic_rays_lacosmic  # noqa: E402
from surveydm.reduction.extraction import measure_background  # noqa: E402
from surveydm.reduction.masks import build_mask  # noqa: E402
from surveydm.simulation import SimulationConfig, simulate_night  # noqa: E402
from surveydm.simulation.detector import TRUTH_COSMIC_RAY, DetectorModel, truth_mask  # noqa: E402
from surveydm.simulation.truth import read_parquet  # noqa: E402


@dataclass
class Agreement:
    """Figures of one method on one CCD against the truth."""

    seconds: float
    pixels: float  # fraction of truth cosmic-ray pixels masked
    tracks: float  # fraction of tracks with at least one pixel masked
    short: float  # the same for tracks of <= 3 pixels
    fp_defect: int  # masked pixels on detector defects (hot pixels, bad columns)
    fp_other: int  # other masked pixels without a truth cosmic ray
    star_cores: int  # bright-star central pixels masked (no cosmic ray, no defect there)


def _agreement(mask, truth_cr, usable, defects, cores, seconds) -> Agreement:
    cr = truth_cr & usable
    labels, n = ndimage.label(cr, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    touched = ndimage.maximum(mask, labels, np.arange(1, n + 1)).astype(bool)
    fp = mask & ~truth_cr
    short = sizes <= 3
    return Agreement(
        seconds,
        float(mask[cr].mean()),
        float(touched.mean()),
        float(touched[short].mean()) if short.any() else float("nan"),
        int((fp & defects).sum()),
        int((fp & ~defects).sum()),
        int(fp[cores & ~defects].sum()),
    )


def _star_cores(row, objects, band: str, shape) -> tuple[np.ndarray, np.ndarray]:
    wcs = WCS(fits.Header.fromstring(row["wcs_header"], sep="\n"))
    x, y = wcs.all_world2pix(objects["ra"], objects["dec"], 0)
    ny, nx = shape
    star = (np.asarray(objects["kind"]) == "star") & (np.asarray(objects[f"mag_{band}"]) < 20)
    sel = star & (x > 5) & (x < nx - 6) & (y > 5) & (y < ny - 6)
    return np.rint(y[sel]).astype(int), np.rint(x[sel]).astype(int)


def run_case(label: str, seeing: float | None, n_ccds: int, root: Path) -> list[float]:
    """Simulate one exposure and compare the two methods on its first ``n_ccds`` CCDs;
    returns the speed ratios (ours / astroscrappy)."""
    cam = load_instrument("paucam")
    cfg = SimulationConfig()
    if seeing is not None:
        cfg = cfg.model_copy(update={"seeing_range_arcsec": (seeing, seeing)})
    t0 = time.perf_counter()
    sim = simulate_night(cam, root / label / "buffer", n_bias=0, n_flats_per_tray=0,
                         n_science=1, n_test=0, n_focus=0, config=cfg)  # fmt: skip
    print(
        f"\n== {label}: simulated one full-size paucam exposure in {time.perf_counter() - t0:.0f} s"
    )
    sci = next(f for f in sim.files if f.kind == "science")
    masks = read_parquet(sim.truth_dir / "truth_masks.parquet")
    exposures = read_parquet(sim.truth_dir / "exposures.parquet")
    objects = read_parquet(sim.truth_dir / "objects.parquet")
    detector = DetectorModel(cam, cfg)
    print(
        "ccd fwhm_px method        Mpix/s  pix_compl tracks short(<=3)  fp_defect fp_other "
        "star_cores  overlap"
    )
    ratios = []
    for num in range(1, n_ccds + 1):
        raw = read_raw_ccd(sci.path, cam, num)
        ccd = raw.ccd
        asm = assemble_ccd(raw.amps, ccd)
        row = exposures[(exposures["file"] == sci.path.name) & (exposures["ccd_num"] == num)][0]
        fwhm = float(row["fwhm_pix"])
        base = build_mask(ccd.shape, saturated=asm.saturated, edge_width=4, image=asm.image)
        bkg = measure_background(asm.image, mask=base)
        common = dict(read_noise=asm.read_noise, saturation_level=asm.saturation_level, mask=base)
        t0 = time.process_time()
        ours, _ = find_cosmic_rays(asm.image, sky=bkg.image, psf_fwhm=fwhm, **common)
        t_ours = time.process_time() - t0
        t0 = time.process_time()
        ref, _ = find_cosmic_rays_lacosmic(asm.image, psf_fwhm=fwhm, **common)
        t_ref = time.process_time() - t0
        truth = truth_mask(masks, sci.path.name, num, ccd.shape)
        truth_cr = (truth & TRUTH_COSMIC_RAY) != 0
        usable = base == 0
        defects = ndimage.binary_dilation(detector.defect_mask(ccd))
        cores = np.zeros(ccd.shape, bool)
        cores[_star_cores(row, objects, str(row["filter"]), ccd.shape)] = True
        mpix = ccd.shape[0] * ccd.shape[1] / 1e6
        both = (ours & ref).sum()
        for name, m, t, overlap in (
            ("ours", ours, t_ours, both / max(ref.sum(), 1)),
            ("astroscrappy", ref, t_ref, both / max(ours.sum(), 1)),
        ):
            a = _agreement(m, truth_cr, usable, defects, cores, t)
            print(
                f"{num:3d} {fwhm:6.2f}  {name:12s} {mpix / t:7.2f}  {a.pixels:9.3f} "
                f"{a.tracks:6.3f} "
                f"{a.short:11.3f}  {a.fp_defect:9d} {a.fp_other:8d} {a.star_cores:5d}/"
                f"{int(cores.sum()):<4d}  {overlap:7.3f}"
            )
        ratios.append(t_ref / t_ours)
        print(f"    speed ratio ours/astroscrappy: {t_ref / t_ours:.1f}x")
    print(
        "overlap: for ours, the fraction of astroscrappy's pixels ours flags too; for "
        "astroscrappy, the fraction of ours it flags too"
    )
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ccds", type=int, default=2, help="CCDs per exposure")
    args = parser.parse_args()
    # compile (or load the cached machine code) before timing
    find_cosmic_rays(np.random.default_rng(0).normal(100, 10, (64, 64)), read_noise=5.0)
    with tempfile.TemporaryDirectory(prefix="surveydm-bench-cr-") as tmp:
        ratios = run_case("default seeing", None, args.ccds, Path(tmp))
        ratios += run_case("0.5 arcsec seeing (~2 px FWHM)", 0.5, args.ccds, Path(tmp))
    print(f"\nmedian speed ratio ours / astroscrappy: {np.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
