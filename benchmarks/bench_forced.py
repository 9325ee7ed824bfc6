"""Speed of forced photometry and association (issue 14), against references run in the same
process (CPU seconds of this single-threaded process, so "per core" holds on a loaded machine):
forced apertures per second per core (surveydm's forced photometry, all steps, and its
exact elliptical sums alone) against photutils' elliptical apertures + annuli on the same image
and positions, with the relative flux difference of the sums; and detections associated per
second per core. Targets: >= 10x photutils with sums equal within 1e-4; >= 1e6 detections/s.

    python benchmarks/bench_forced.py [--sources 4000] [--detections 1000000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import sep  # noqa: E402
from photutils.aperture import (  # noqa: E402
    ApertureStats,
    EllipticalAnnulus,
    EllipticalAperture,
    aperture_photometry,
)

from surveydm.reduction.association import associate  # noqa: E402
from surveydm.reduction.forced_photometry import forced_photometry  # noqa: E402
from surveydm.simulation.render import render_stars  # noqa: E402


def _image(n: int, rng: np.random.Generator):
    shape = (2048, 2048)
    x, y = rng.uniform(20, shape[1] - 20, n), rng.uniform(20, shape[0] - 20, n)
    img = np.zeros(shape, np.float32)
    render_stars(img, x, y, 10 ** rng.uniform(3, 5, n), 2.5, 3.5)
    img += 300 + rng.standard_normal(shape).astype(np.float32) * 18
    return img, x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=4000)
    parser.add_argument("--detections", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(0)
    img, x, y = _image(args.sources, rng)
    n = len(x)
    wht = np.full(img.shape, 1 / 325, np.float32)
    msk = np.zeros(img.shape, np.uint16)
    z = np.zeros(n)
    # compiled kernels: load (or compile) them outside the timing
    forced_photometry(img, wht, msk, x[:20], y[:20], z[:20], z[:20], z[:20], 2.5, np.ones(20, bool))
    associate(x[:20] / 3600, y[:20] / 3600, np.zeros(20), 1.0)
    t0 = time.process_time()
    res = forced_photometry(img, wht, msk, x, y, z, z, z, 2.5, np.ones(n, bool))
    t_ours = time.process_time() - t0
    a, b, th = res.a, res.b, np.zeros(n)
    t0 = time.process_time()
    ours, _, _ = sep.sum_ellipse(img, x, y, a, b, th, r=1.0, subpix=0)
    t_sums = time.process_time() - t0
    m = min(n, 1000)  # photutils per-aperture objects are slow: time a subset, scale per source
    t0 = time.process_time()
    ref = np.array([
        aperture_photometry(img, EllipticalAperture((x[i], y[i]), a[i], b[i]), method="exact")[
            "aperture_sum"][0] for i in range(m)])  # fmt: skip
    ann = [ApertureStats(img, EllipticalAnnulus((x[i], y[i]), a_in=res.a_in[i],
                                                a_out=res.a_out[i], b_out=res.b_out[i],
                                                b_in=res.b_in[i])).median
           for i in range(m)]  # fmt: skip
    t_ref = time.process_time() - t0
    rel = np.abs(ours[:m] / ref - 1)
    print(f"forced photometry (all steps): {n / t_ours:10.0f} apertures/s/core")
    print(f"exact elliptical sums (sep):   {n / t_sums:10.0f} apertures/s/core")
    print(f"photutils aperture + annulus:  {m / t_ref:10.0f} apertures/s/core")
    print(f"ratio all steps / photutils: {(n / t_ours) / (m / t_ref):.1f}x (target >= 10x); "
          f"sums / photutils: {(n / t_sums) / (m / t_ref):.0f}x")  # fmt: skip
    print(f"sums vs photutils: max relative difference {rel.max():.1e} (target <= 1e-4); "
          f"annulus medians differ by {np.median(np.abs(np.array(ann) - res.bkg_median[:m])):.2f} "
          "e-/pixel (ours masks neighbours and clips)")  # fmt: skip
    k = args.detections // 5
    ra0, dec0 = 150 + rng.uniform(0, 1, k), 2 + rng.uniform(0, 1, k)
    ra = np.concatenate([ra0 + rng.normal(0, 0.1 / 3600, k) for _ in range(5)])
    dec = np.concatenate([dec0 + rng.normal(0, 0.1 / 3600, k) for _ in range(5)])
    image = np.repeat(np.arange(5), k)
    t0 = time.process_time()
    out = associate(ra, dec, image, 1.0)
    t_assoc = time.process_time() - t0
    print(f"association: {len(ra) / t_assoc:10.0f} detections/s/core ({out.n_objects} objects "
          f"from {k} true; target >= 1e6/s)")  # fmt: skip


if __name__ == "__main__":
    main()
