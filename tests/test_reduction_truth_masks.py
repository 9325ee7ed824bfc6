"""Masks of ``reduce_ccd`` against the simulator's per-pixel truth (issue 12), on a small
paucam-mini night in ~2 pixel FWHM seeing (where short cosmic-ray tracks look most like stars)
with a satellite trail across the exposure."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy import ndimage

from surveydm.instruments import load_instrument
from surveydm.instruments.geometry import ccd_wcs
from surveydm.pipelines.fitsio import read_raw_ccd
from surveydm.reduction.assemble import assemble_ccd
from surveydm.reduction.calibration_frames import master_bias, master_flat
from surveydm.reduction.masks import MaskBit
from surveydm.reduction.single_epoch import reduce_ccd
from surveydm.simulation import simulate_night
from surveydm.simulation.config import SimulationConfig
from surveydm.simulation.detector import (
    TRUTH_COSMIC_RAY,
    TRUTH_SATELLITE,
    TRUTH_SATURATED,
    truth_mask,
)
from surveydm.simulation.truth import read_parquet

CCDS = (2, 10)  # a narrow band and a broad band (r), both crossed by the trail


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    inst = load_instrument("paucam-mini")
    # a satellite trail in the exposure: it crosses both CCDs (truth: satellite_trails.parquet)
    cfg = SimulationConfig().model_copy(
        update={"seeing_range_arcsec": (1.5, 1.6), "satellite_trail_probability": 1.0}
    )
    root = tmp_path_factory.mktemp("truthmasks")
    sim = simulate_night(inst, root / "buffer", seed=3, n_science=1, n_bias=3,
                         n_flats_per_tray=3, n_test=0, n_focus=0, config=cfg)  # fmt: skip
    sci = next(f for f in sim.files if f.kind == "science")
    masks = read_parquet(sim.truth_dir / "truth_masks.parquet")
    exposures = read_parquet(sim.truth_dir / "exposures.parquet")
    objects = read_parquet(sim.truth_dir / "objects.parquet")
    refcat = Table.read(sim.refcat)
    out = []
    for num in CCDS:
        raw = read_raw_ccd(sci.path, inst, num)
        header, amps, ccd = raw.header, raw.amps, raw.ccd
        tray = header["FILTRAY"]
        flats = [f.path for f in sim.files if f.kind == "flat" and f.path.name and
                 fits.getheader(f.path)["FILTRAY"] == tray]  # fmt: skip
        biases = [f.path for f in sim.files if f.kind == "bias"]
        mb = master_bias([assemble_ccd(read_raw_ccd(p, inst, num).amps, ccd).image for p in biases])
        mf = master_flat([assemble_ccd(read_raw_ccd(p, inst, num).amps, ccd).image - mb.image
                          for p in flats])  # fmt: skip
        band = inst.filter(inst.tray(tray).filters[num])
        ref = refcat.copy()
        ref["mag"], ref["mag_error"] = ref[f"mag_{band.name}"], ref[f"magerr_{band.name}"]
        red = reduce_ccd(amps, ccd, band, exptime=header["EXPTIME"], airmass=header["AIRMASS"],
                         pixel_scale=inst.pixel_scale_arcsec,
                         initial_wcs=ccd_wcs(inst, num, header["RA"], header["DEC"]),
                         reference=ref, bias=mb.image, flat=mf.image)  # fmt: skip
        row = exposures[(exposures["file"] == sci.path.name) & (exposures["ccd_num"] == num)][0]
        truth = truth_mask(masks, sci.path.name, num, red.mask.shape)
        out.append((red, truth, row, objects, band.name))
    return out


def test_truth_masks_are_written_per_ccd(reduced):
    for _red, truth, row, _, _ in reduced:
        cr = (truth & TRUTH_COSMIC_RAY) != 0
        _, n_events = ndimage.label(cr, structure=np.ones((3, 3)))
        assert row["n_cosmic_rays"] > 5
        # overlapping tracks merge: never more events than simulated, and most are separate
        assert 0.7 * row["n_cosmic_rays"] <= n_events <= row["n_cosmic_rays"]


def test_cosmic_rays_masked_completely_including_short_tracks(reduced):
    for red, truth, *_ in reduced:
        cr = (truth & TRUTH_COSMIC_RAY) != 0
        masked = (red.mask & MaskBit.COSMIC_RAY) != 0
        labels, n = ndimage.label(cr, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel())[1:]
        touched = ndimage.maximum(masked, labels, np.arange(1, n + 1)).astype(bool)
        short = sizes <= 3
        assert masked[cr].mean() >= 0.9, masked[cr].mean()
        assert touched.mean() >= 0.9, touched.mean()
        assert short.sum() >= 3 and touched[short].mean() >= 0.8, touched[short].mean()


def test_saturated_pixels_masked_and_star_cores_not_taken_for_cosmic_rays(reduced):
    for red, truth, row, objects, band in reduced:
        sat = (truth & TRUTH_SATURATED) != 0
        if sat.any():
            bits = MaskBit.SATURATED | MaskBit.BLEED
            assert ((red.mask[sat] & bits) != 0).mean() >= 0.99
        wcs = WCS(fits.Header.fromstring(row["wcs_header"], sep="\n"))
        x, y = wcs.all_world2pix(objects["ra"], objects["dec"], 0)
        ny, nx = red.mask.shape
        star = (np.asarray(objects["kind"]) == "star") & (np.asarray(objects[f"mag_{band}"]) < 20)
        sel = star & (x > 5) & (x < nx - 6) & (y > 5) & (y < ny - 6)
        core = red.mask[np.rint(y[sel]).astype(int), np.rint(x[sel]).astype(int)]
        assert sel.sum() > 10
        assert ((core & MaskBit.COSMIC_RAY) != 0).mean() <= 0.02


def test_satellite_trail_masked_against_truth(reduced):
    for red, truth, *_ in reduced:
        trail = (truth & TRUTH_SATELLITE) != 0
        flagged = (red.mask & MaskBit.SATELLITE) != 0
        assert trail.sum() > 1000  # the trail crosses the CCD
        assert flagged[trail].mean() >= 0.99, flagged[trail].mean()
        # the band masked is not much wider than the pixels the trail adds >= 2 e- to
        assert (flagged & ~trail).sum() <= trail.sum(), ((flagged & ~trail).sum(), trail.sum())
        # the trail's pixels are not taken for cosmic rays
        cr = (truth & TRUTH_COSMIC_RAY) != 0
        assert ((red.mask[trail & ~cr] & MaskBit.COSMIC_RAY) != 0).sum() == 0
