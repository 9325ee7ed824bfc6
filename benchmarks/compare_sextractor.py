"""surveydm's single-epoch catalogs against SExtractor's on the same reduced images (issue 12).

Simulates a night, builds the master bias and flat and the bad-pixel mask (from the TEST
darks), reduces every science CCD with ``reduce_ccd`` (detrending, masks, cosmic rays, weight,
extraction, astrometry, zero-point), then runs SExtractor on the same reduced image, weight map
and mask with the same detection settings (DETECT_THRESH 1.5, DETECT_MINAREA 5, the 3x3
``default.conv`` filter, 32 deblending levels at contrast 0.005, BACK_SIZE 64, PHOT_AUTOPARAMS
2.5, 3.5, MAP_WEIGHT, FLAG_IMAGE) and prints both against the simulator's truth: completeness
per magnitude bin (stars, galaxies), m50/m90, bright objects found by one tool only, false
detections, flux ratio and pull width per S/N bin (PSF and Kron fluxes), per-CCD PSF-flux bias,
positional RMS and Mpix/s.

SExtractor is the Debian package ``source-extractor`` (``apt-get install source-extractor``,
binary ``source-extractor``; ``sex`` on other systems). Without it the script says so and
exits 0.

    python benchmarks/compare_sextractor.py --ccds 2              # paucam-mini, 2 exposures
    python benchmarks/compare_sextractor.py --instrument t80cam-mini --seeing 1.7 1.9 \\
        --science 1                                                # ~2.2 px FWHM (u band)

``--seeing`` is the zenith seeing range at 500 nm (arcsec); the PSF also scales with airmass
and wavelength. ``--dump DIR`` keeps each reduced CCD and its truth (.npz) for diagnosis.

Definitions: a detection is *false* when no true object (star or galaxy, any magnitude) lies
within 1.5"; a true object is *found* when a detection lies within 1" of it. Flux ratios are
medians of measured / true flux of isolated (no other true object within 3"), unflagged stars;
pull widths are 1.4826 MAD of ``(flux - r * true) / error`` with ``r`` the bin's median ratio
(the width measures the errors; the ratio the bias, e.g. the light outside a Kron aperture).
False detections and bright objects found by one tool only are put down to a cause from the
simulator's truth (``CAUSES``): the per-pixel truth masks (cosmic rays, satellite trails,
saturated and bleed pixels), the detector's hot pixels and bad columns, the CCD edge, the wings
of bright true stars, deblending splits of true galaxies, blends with a true neighbour.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy import ndimage
from scipy.spatial import cKDTree

from surveydm.instruments import load_instrument
from surveydm.instruments.geometry import ccd_wcs
from surveydm.instruments.loader import read_keyword
from surveydm.pipelines.fitsio import read_raw_ccd
from surveydm.reduction.assemble import assemble_ccd
from surveydm.reduction.bad_pixel_mask import bad_pixel_mask
from surveydm.reduction.calibration_frames import master_bias, master_flat
from surveydm.reduction.extraction import ExtractionConfig, extract_sources, measure_background
from surveydm.reduction.single_epoch import reduce_ccd
from surveydm.simulation import simulate_night
from surveydm.simulation.config import SimulationConfig
from surveydm.simulation.detector import DetectorModel, truth_mask
from surveydm.simulation.truth import read_parquet

SEX_SHARE = Path("/usr/share/source-extractor")
SEX_PARAMS = [
    *("NUMBER", "X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "FLUX_AUTO", "FLUXERR_AUTO"),
    *("FLUX_APER", "FLUXERR_APER", "KRON_RADIUS", "A_IMAGE", "B_IMAGE", "FLAGS", "IMAFLAGS_ISO"),
    *("CLASS_STAR", "FLUX_RADIUS", "ISOAREA_IMAGE"),
]
MAG_BINS = np.arange(15.0, 25.51, 0.5)
SNR_BINS = ((5.0, 20.0), (20.0, 100.0), (100.0, 1000.0))
FOUND_ARCSEC = 1.0
FALSE_ARCSEC = 1.5
ISOLATION_ARCSEC = 3.0


def sextractor_binary() -> str | None:
    """Path of the SExtractor executable, or None."""
    return shutil.which("source-extractor") or shutil.which("sex")


@dataclass
class ToolCCD:
    """One tool's detections on one CCD, reduced to what the figures need."""

    x: np.ndarray
    y: np.ndarray
    snr: np.ndarray
    flags: np.ndarray
    flux_auto: np.ndarray
    err_auto: np.ndarray
    flux_psf: np.ndarray | None
    err_psf: np.ndarray | None
    seconds: float


@dataclass
class TruthCCD:
    """True objects on one CCD in its pixel frame, and the simulator's artefact masks."""

    x: np.ndarray
    y: np.ndarray
    mag: np.ndarray
    flux: np.ndarray
    star: np.ndarray
    isolated: np.ndarray
    hlr_pix: np.ndarray  # galaxies' half-light radius, pixels (0 for stars)
    artefacts: dict[str, np.ndarray] = field(default_factory=dict)  # cause -> (ny, nx) bool
    miss_cause: np.ndarray | None = None  # why each object could be missed (see classify)


@dataclass
class Tally:
    """Per-tool accumulators over the night."""

    found: list[np.ndarray] = field(default_factory=list)  # per truth object
    false5: list[int] = field(default_factory=lambda: [0, 0])  # false, all (S/N >= 5)
    false5_cause: list[np.ndarray] = field(default_factory=list)  # CAUSES index per false
    false10: list[int] = field(default_factory=lambda: [0, 0])
    ratio: dict[str, list[np.ndarray]] = field(default_factory=dict)  # kind -> [ratio, pull*, snr]
    offsets: list[np.ndarray] = field(default_factory=list)
    psf_bias: list[tuple[str, float, int]] = field(default_factory=list)
    seconds: float = 0.0


def masters(sim, inst, ccds) -> dict[int, tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]]:
    """(master bias, {tray: master flat}, bad-pixel mask) of each of ``ccds`` from the raw
    calibrations (the mask from the TEST closed-shutter darks and the master flats)."""
    out = {}
    biases = [f.path for f in sim.files if f.kind == "bias"]
    darks = [f.path for f in sim.files if f.kind == "test"]
    times = [float(read_keyword(fits.getheader(p), inst.header.exptime)) for p in darks]
    flats: dict[str, list[Path]] = {}
    for f in sim.files:
        if f.kind == "flat":
            tray = read_keyword(fits.getheader(f.path), inst.header.filter_tray)
            flats.setdefault(tray, []).append(f.path)

    def assembled(p, ccd):
        return assemble_ccd(read_raw_ccd(p, inst, ccd.num).amps, ccd).image

    for ccd in ccds:
        mb = master_bias([assembled(p, ccd) for p in biases])
        mf = {
            tray: master_flat([assembled(p, ccd) - mb.image for p in ps]).image
            for tray, ps in flats.items()
        }
        bpm = bad_pixel_mask(
            [assembled(p, ccd) for p in darks], times, bias=mb.image, flats=list(mf.values())
        )
        out[ccd.num] = (mb.image, mf, bpm.mask)
    return out


def truth_ccd(objects: dict, truth_row: dict, band: str, shape, scale: float) -> TruthCCD:
    """True objects inside the CCD (true WCS of the exposure), fluxes in e-."""
    wcs = WCS(fits.Header.fromstring(truth_row["wcs_header"], sep="\n"))
    years = 2000.0 + (truth_row["mjd"] - 51544.5) / 365.25 - objects["epoch"]
    dec = objects["dec"] + np.nan_to_num(objects["pmdec"]) * years / 3.6e6
    ra = objects["ra"] + np.nan_to_num(objects["pmra"]) * years / 3.6e6 / np.cos(np.radians(dec))
    x, y = wcs.all_world2pix(ra, dec, 0)
    ny, nx = shape
    inside = (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
    x, y = x[inside], y[inside]
    mag = objects[f"mag_{band}"][inside]
    flux = 10 ** (-0.4 * (mag - truth_row["zeropoint"])) * truth_row["exptime"]
    tree = cKDTree(np.column_stack([x, y]))
    counts = np.array(
        [len(n) for n in tree.query_ball_point(np.column_stack([x, y]), ISOLATION_ARCSEC / scale)]
    )
    star = objects["kind"][inside] == "star"
    hlr = np.nan_to_num(objects["half_light_radius_arcsec"][inside]) / scale
    return TruthCCD(x, y, mag, flux, star, counts == 1, hlr)


#: Causes, in order of precedence, a false detection or a missed object is put down to.
CAUSES = (
    "cosmic ray", "satellite", "saturated/bleed", "hot/bad column", "edge",
    "bright-star wing", "galaxy split", "blend", "other",
)  # fmt: skip
#: Pixels from an artefact (truth mask) within which a detection or object is put down to it.
ARTEFACT_RADIUS = {"cosmic ray": 2, "satellite": 3, "saturated/bleed": 3, "hot/bad column": 2}
EDGE_PIX = 8


def artefact_masks(truth_mask: np.ndarray, defects: np.ndarray) -> dict[str, np.ndarray]:
    """Per-cause truth masks of one CCD (simulator codes: 1 cosmic ray, 2 saturated after
    bleeding, 4 satellite trail; ``defects``: hot pixels and bad columns)."""
    return {
        "cosmic ray": (truth_mask & 1) != 0,
        "satellite": (truth_mask & 4) != 0,
        "saturated/bleed": (truth_mask & 2) != 0,
        "hot/bad column": defects,
    }


def _near_artefact(truth: TruthCCD, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cause index (into CAUSES) of the first artefact within its radius of each position,
    or of the CCD edge; -1 for none."""
    out = np.full(len(x), -1)
    ny, nx = next(iter(truth.artefacts.values())).shape
    xi = np.clip(np.rint(x).astype(int), 0, nx - 1)
    yi = np.clip(np.rint(y).astype(int), 0, ny - 1)
    for cause, m in truth.artefacts.items():
        r = ARTEFACT_RADIUS[cause]
        near = ndimage.maximum_filter(m, size=2 * r + 1)[yi, xi]
        out = np.where((out < 0) & near, CAUSES.index(cause), out)
    edge = (x < EDGE_PIX) | (y < EDGE_PIX) | (x > nx - 1 - EDGE_PIX) | (y > ny - 1 - EDGE_PIX)
    return np.where((out < 0) & edge, CAUSES.index("edge"), out)


def classify_false(truth: TruthCCD, x: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
    """Cause index of each false detection at (x, y): an artefact of the truth masks within
    its radius, the CCD edge, the wings of a true star brighter than 18 within
    ``6 * 10**(0.2 * (18 - mag))`` arcsec, a true galaxy within 4 half-light radii + 1.5"
    (a deblending split), or "other" (noise)."""
    cause = _near_artefact(truth, x, y)
    if not len(x):
        return cause
    in_wing = _within(truth, x, y, truth.star & (truth.mag < 18), scale, exclude_self=False)
    split = _within(truth, x, y, ~truth.star, scale, exclude_self=False)
    cause = np.where((cause < 0) & in_wing, CAUSES.index("bright-star wing"), cause)
    cause = np.where((cause < 0) & split, CAUSES.index("galaxy split"), cause)
    return np.where(cause < 0, CAUSES.index("other"), cause)


def _within(
    truth: TruthCCD, x: np.ndarray, y: np.ndarray, sel: np.ndarray, scale: float, exclude_self
) -> np.ndarray:
    """Whether each position lies within the reach of one of the true objects ``sel``: a star's
    wing ``6 * 10**(0.2 * (18 - mag))`` arcsec, a galaxy's 4 half-light radii + 1.5"."""
    out = np.zeros(len(x), bool)
    idx = np.flatnonzero(sel)
    if not len(idx) or not len(x):
        return out
    reach = (
        np.where(
            truth.star[idx],
            6 * 10 ** (0.2 * (18 - truth.mag[idx])),
            4 * truth.hlr_pix[idx] * scale + 1.5,
        )
        / scale
    )
    tree = cKDTree(np.column_stack([x, y]))
    for k, i in enumerate(idx):
        for j in tree.query_ball_point((truth.x[i], truth.y[i]), reach[k]):
            if not (exclude_self and j == i):
                out[j] = True
    return out


def classify_objects(truth: TruthCCD, scale: float) -> np.ndarray:
    """Cause index each true object would be missed for: an artefact within its radius, the
    CCD edge, the wings of a brighter true star (as :func:`classify_false`), a true neighbour
    within 2" (a blend), or "other"."""
    cause = _near_artefact(truth, truth.x, truth.y)
    wing = truth.star & (truth.mag < 18)
    in_wing = _within(truth, truth.x, truth.y, wing, scale, exclude_self=True)
    tree = cKDTree(np.column_stack([truth.x, truth.y]))
    blend = np.array([len(n) > 1 for n in tree.query_ball_point(tree.data, 2.0 / scale)])
    cause = np.where((cause < 0) & in_wing, CAUSES.index("bright-star wing"), cause)
    cause = np.where((cause < 0) & blend, CAUSES.index("blend"), cause)
    return np.where(cause < 0, CAUSES.index("other"), cause)


def run_sextractor(binary: str, work: Path, red, scale: float, sat: float, fwhm: float) -> ToolCCD:
    """SExtractor on the reduced image with the pipeline's weight and mask."""
    img, wgt, flg = work / "sci.fits", work / "wgt.fits", work / "flg.fits"
    fits.writeto(img, red.science.astype(np.float32), overwrite=True)
    fits.writeto(wgt, red.weight.astype(np.float32), overwrite=True)
    fits.writeto(flg, red.mask.astype(np.int32), overwrite=True)
    (work / "p.param").write_text("\n".join(SEX_PARAMS) + "\n")
    cat = work / "sex.fits"
    args = {
        "CATALOG_NAME": cat,
        "CATALOG_TYPE": "FITS_1.0",
        "PARAMETERS_NAME": work / "p.param",
        "FILTER": "Y",
        "FILTER_NAME": SEX_SHARE / "default.conv",
        "STARNNW_NAME": SEX_SHARE / "default.nnw",
        "DETECT_THRESH": 1.5,
        "ANALYSIS_THRESH": 1.5,
        "DETECT_MINAREA": 5,
        "DEBLEND_NTHRESH": 32,
        "DEBLEND_MINCONT": 0.005,
        "WEIGHT_TYPE": "MAP_WEIGHT",
        "WEIGHT_IMAGE": wgt,
        "FLAG_IMAGE": flg,
        "GAIN": 1.0,
        "SATUR_LEVEL": sat,
        "PIXEL_SCALE": scale,
        "SEEING_FWHM": fwhm * scale,
        "BACK_SIZE": 64,
        "BACK_FILTERSIZE": 3,
        "PHOT_AUTOPARAMS": "2.5,3.5",
        "PHOT_APERTURES": 2 * 3.0 / scale,
        "CHECKIMAGE_TYPE": "NONE",
        "VERBOSE_TYPE": "QUIET",
        "NTHREADS": 1,
    }
    cmd = [binary, str(img)] + [v for k, val in args.items() for v in (f"-{k}", str(val))]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=work)
    seconds = time.perf_counter() - t0
    t = Table.read(cat, hdu=2 if len(fits.open(cat)) > 2 else 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(t["FLUXERR_AUTO"] > 0, t["FLUX_AUTO"] / t["FLUXERR_AUTO"], 0.0)
    return ToolCCD(
        np.asarray(t["XWIN_IMAGE"]) - 1,
        np.asarray(t["YWIN_IMAGE"]) - 1,
        np.asarray(snr),
        np.asarray(t["FLAGS"]) | (np.asarray(t["IMAFLAGS_ISO"]) != 0),
        np.asarray(t["FLUX_AUTO"]),
        np.asarray(t["FLUXERR_AUTO"]),
        None,
        None,
        seconds,
    )


def ours(red, scale: float, sat: float) -> ToolCCD:
    """Our catalog of the reduction, timed by re-running background + extraction alone."""
    t0 = time.perf_counter()
    bkg = measure_background(red.science, mask=red.mask)
    extract_sources(
        red.science,
        background=bkg,
        mask=red.mask,
        weight=red.weight,
        weight_kind="background",
        pixel_scale=scale,
        saturation=sat,
        config=ExtractionConfig(threshold=1.5, aperture_radius_arcsec=3.0),
    )
    seconds = time.perf_counter() - t0
    c = red.catalog
    return ToolCCD(
        np.asarray(c["x"]),
        np.asarray(c["y"]),
        np.asarray(c["snr"]),
        np.asarray(c["flags"]),
        np.asarray(c["flux_auto"]),
        np.asarray(c["flux_err_auto"]),
        np.asarray(c["flux_psf"]),
        np.asarray(c["flux_err_psf"]),
        seconds,
    )


def tally_ccd(tally: Tally, tool: ToolCCD, truth: TruthCCD, scale: float, label: str) -> None:
    """Add one CCD's figures of one tool to ``tally``."""
    tally.seconds += tool.seconds
    det_xy = np.column_stack([tool.x, tool.y])
    t_tree = cKDTree(np.column_stack([truth.x, truth.y]))
    dist, j = t_tree.query(det_xy, distance_upper_bound=FALSE_ARCSEC / scale)
    false = ~np.isfinite(dist)
    for lim, acc in ((5, tally.false5), (10, tally.false10)):
        sel = tool.snr >= lim
        acc[0] += int((false & sel).sum())
        acc[1] += int(sel.sum())
    f5 = false & (tool.snr >= 5)
    tally.false5_cause.append(classify_false(truth, tool.x[f5], tool.y[f5], scale))
    found = np.zeros(len(truth.x), bool)
    if len(det_xy):
        d2, _ = cKDTree(det_xy).query(np.column_stack([truth.x, truth.y]))
        found = d2 <= FOUND_ARCSEC / scale
    tally.found.append(found)
    # nearest-truth match for fluxes and positions
    m = (dist <= FOUND_ARCSEC / scale) & (tool.flags == 0)
    jj = np.where(m, j, 0)
    good = m & truth.star[jj] & truth.isolated[jj]
    for kind, flux, err in (
        ("kron", tool.flux_auto, tool.err_auto),
        ("psf", tool.flux_psf, tool.err_psf),
    ):
        if flux is None:
            continue
        ok = good & np.isfinite(flux) & (err > 0)
        tf = truth.flux[j[ok]]
        tally.ratio.setdefault(kind, []).append(
            np.column_stack([flux[ok] / tf, (flux[ok] - tf) / err[ok], tf / err[ok], tool.snr[ok]])
        )
        if kind == "psf":
            sel = ok & (flux / np.where(err > 0, err, 1) >= 20)
            r = flux[sel] / truth.flux[j[sel]]
            tally.psf_bias.append((label, float(np.median(r) - 1) if len(r) else np.nan, len(r)))
    bright = good & (tool.snr > 100)
    off = det_xy[bright] - np.column_stack([truth.x[j[bright]], truth.y[j[bright]]])
    tally.offsets.append(off * scale)


def m_limit(mag: np.ndarray, found: np.ndarray, level: float) -> float:
    """Faintest bin centre (0.25-mag bins from 16) before completeness drops below ``level``,
    linearly interpolated."""
    edges = np.arange(16.0, 26.01, 0.25)
    centres, comp = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        s = (mag >= lo) & (mag < hi)
        if s.sum() >= 5:
            centres.append((lo + hi) / 2)
            comp.append(found[s].mean())
    comp = np.asarray(comp)
    below = np.flatnonzero(comp < level)
    if not len(below) or below[0] == 0:
        return float("nan")
    i = below[0]
    c0, c1, m0, m1 = comp[i - 1], comp[i], centres[i - 1], centres[i]
    return float(m0 + (c0 - level) / (c0 - c1) * (m1 - m0))


def _causes(idx: np.ndarray) -> str:
    """``cause n, ...`` of the CAUSES indices ``idx`` (none: "-")."""
    counts = np.bincount(np.asarray(idx, int), minlength=len(CAUSES))
    return ", ".join(f"{c} {n}" for c, n in zip(CAUSES, counts, strict=True) if n) or "-"


def robust_width(v: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if len(v) >= 5 else float("nan")


def print_report(tallies: dict[str, Tally], truths: list[TruthCCD], mpix: float) -> None:
    mag = np.concatenate([t.mag for t in truths])
    star = np.concatenate([t.star for t in truths])
    found = {k: np.concatenate(v.found) for k, v in tallies.items()}
    names = list(tallies)
    print("\ncompleteness per magnitude bin (stars | galaxies)")
    print(
        "  mag    "
        + "  ".join(f"{n:>9s}" for n in names)
        + " |"
        + "  ".join(f"{n:>9s}" for n in names)
        + "    n*   ngal"
    )
    for lo, hi in zip(MAG_BINS[:-1], MAG_BINS[1:], strict=True):
        s = (mag >= lo) & (mag < hi)
        st, ga = s & star, s & ~star
        row = [f"{found[n][st].mean():9.3f}" if st.any() else f"{'-':>9s}" for n in names]
        row2 = [f"{found[n][ga].mean():9.3f}" if ga.any() else f"{'-':>9s}" for n in names]
        print(
            f"  {lo:4.1f}-{hi:4.1f} "
            + "  ".join(row)
            + " |"
            + "  ".join(row2)
            + f" {st.sum():5d} {ga.sum():6d}"
        )
    for n in names:
        print(
            f"{n:>11s}: m50 {m_limit(mag, found[n], 0.5):.2f}"
            f"  m90 {m_limit(mag, found[n], 0.9):.2f}"
            f" (all objects); stars m50 {m_limit(mag[star], found[n][star], 0.5):.2f}"
            f" m90 {m_limit(mag[star], found[n][star], 0.9):.2f}"
        )
    cause = np.concatenate([t.miss_cause for t in truths])
    if len(names) == 2:
        a, b = names
        bright = mag < 21.5
        print(
            f"bright (mag < 21.5, {bright.sum()} objects): missed by {a} and found by {b}: "
            f"{(bright & ~found[a] & found[b]).sum()}; missed by {b} and found by {a}: "
            f"{(bright & ~found[b] & found[a]).sum()}; missed by both: "
            f"{(bright & ~found[a] & ~found[b]).sum()}"
        )
        for x, y in ((a, b), (b, a)):
            sel = bright & ~found[x] & found[y]
            print(f"  missed by {x} and found by {y}, by cause: {_causes(cause[sel])}")
        print(f"  missed by both, by cause: {_causes(cause[bright & ~found[a] & ~found[b]])}")
    for n, t in tallies.items():
        f5 = t.false5[0] / max(t.false5[1], 1)
        f10 = t.false10[0] / max(t.false10[1], 1)
        print(
            f"{n:>11s}: false detections S/N>=5 {t.false5[0]}/{t.false5[1]} = {f5:.4f}; "
            f"S/N>=10 {t.false10[0]}/{t.false10[1]} = {f10:.4f}"
        )
        print(f"{'':>11s}  S/N>=5 false by cause: {_causes(np.concatenate(t.false5_cause))}")
    print("\nflux / truth (median) and pull width by S/N bin, isolated unflagged stars")
    for n, t in tallies.items():
        for kind, parts in t.ratio.items():
            arr = np.concatenate(parts)
            cells = []
            for lo, hi in SNR_BINS:
                s = (arr[:, 2] >= lo) & (arr[:, 2] < hi)
                r = np.median(arr[s, 0]) if s.sum() else np.nan
                pull = (arr[s, 0] - r) * arr[s, 2]  # (flux - r true)/err = (ratio - r) * true/err
                cells.append(f"{lo:.0f}-{hi:.0f}: {r:.4f} / {robust_width(pull):.2f} (n={s.sum()})")
            print(f"  {n:>10s} {kind:4s} " + "; ".join(cells))
    for n, t in tallies.items():
        if t.psf_bias:
            vals = ", ".join(f"{lab} {b * 100:+.2f}%" for lab, b, _ in t.psf_bias)
            worst = np.nanmax(np.abs([b for _, b, _ in t.psf_bias]))
            print(f"\n{n}: PSF-flux bias per CCD (S/N >= 20), worst {worst * 100:.2f}%: {vals}")
    for n, t in tallies.items():
        off = np.concatenate(t.offsets)
        rms = float(np.sqrt(np.mean(np.sum(off**2, axis=1)))) if len(off) else np.nan
        print(
            f'{n:>11s}: positional RMS (S/N > 100 isolated stars, n={len(off)}) {rms:.4f}"; '
            f"{mpix / t.seconds:.2f} Mpix/s ({t.seconds:.1f} s)"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instrument", default="paucam-mini")
    p.add_argument("--science", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seeing", type=float, nargs=2, default=None, help="arcsec range")
    p.add_argument("--ccds", type=int, default=0, help="at most this many CCDs per exposure")
    p.add_argument("--dump", type=Path, default=None, help="save each reduced CCD (.npz) here")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="save each reduced CCD, its truth and SExtractor's catalog here (.pkl)",
    )
    p.add_argument(
        "--from-cache",
        type=Path,
        default=None,
        help="re-run only our extraction on the CCDs of a --cache directory (no simulation)",
    )
    args = p.parse_args()
    if args.from_cache is not None:
        compare_cached(args.from_cache)
        return
    binary = sextractor_binary()
    if binary is None:
        print(
            "SExtractor not found: install the Debian package with "
            "`apt-get install source-extractor` (binary `source-extractor`); skipping."
        )
        return
    inst = load_instrument(args.instrument)
    cfg = SimulationConfig()
    if args.seeing:
        cfg = cfg.model_copy(update={"seeing_range_arcsec": tuple(args.seeing)})
    with tempfile.TemporaryDirectory(prefix="surveydm-vs-sex-") as tmp:
        root = Path(tmp)
        sim = simulate_night(
            inst,
            root / "buffer",
            seed=args.seed,
            n_science=args.science,
            n_bias=3,
            n_flats_per_tray=3,
            config=cfg,
        )
        compare_night(
            sim, inst, binary, root, args.ccds, DetectorModel(inst, cfg), args.dump, args.cache
        )


def compare_night(
    sim,
    inst,
    binary: str,
    root: Path,
    max_ccds: int,
    detector: DetectorModel,
    dump: Path | None = None,
    cache: Path | None = None,
) -> None:
    cal = masters(sim, inst, inst.ccds[: max_ccds or None])
    masks = read_parquet(sim.truth_dir / "truth_masks.parquet")
    table = pq.read_table(sim.truth_dir / "objects.parquet")
    objects = {k: np.asarray(v) for k, v in table.to_pydict().items()}
    objects["epoch"] = float((table.schema.metadata or {}).get(b"epoch", b"2016.0"))
    rows = {
        (r["file"], r["ccd_num"]): r
        for r in pq.read_table(sim.truth_dir / "exposures.parquet").to_pylist()
    }
    refcat = Table.read(sim.refcat)
    tallies = {"surveydm": Tally(), "SExtractor": Tally()}
    truths, mpix, scale = [], 0.0, inst.pixel_scale_arcsec
    for f in [f for f in sim.files if f.kind == "science"]:
        for ccd in inst.ccds[: max_ccds or None]:
            raw = read_raw_ccd(f.path, inst, ccd.num)
            amps = raw.amps
            header = {
                k: read_keyword(raw.header, getattr(inst.header, k), k)
                for k in ("filter_tray", "exptime", "airmass", "ra", "dec")
            }
            band = inst.filter(inst.tray(header["filter_tray"]).filters[ccd.num])
            ref = refcat.copy()
            ref["mag"], ref["mag_error"] = ref[f"mag_{band.name}"], ref[f"magerr_{band.name}"]
            bias, flats, bpm = cal[ccd.num]
            red = reduce_ccd(
                amps,
                ccd,
                band,
                exptime=header["exptime"],
                airmass=header["airmass"] or 1.0,
                pixel_scale=scale,
                initial_wcs=ccd_wcs(inst, ccd.num, header["ra"], header["dec"]),
                reference=ref,
                bias=bias,
                flat=flats[header["filter_tray"]],
                bad_pixel_mask=bpm,
            )
            row = rows[(f.path.name, ccd.num)]
            truth = truth_ccd(objects, row, band.name, red.science.shape, scale)
            truth.artefacts = artefact_masks(
                truth_mask(masks, f.path.name, ccd.num, red.science.shape),
                detector.defect_mask(ccd),
            )
            truth.miss_cause = classify_objects(truth, scale)
            truths.append(truth)
            sat = 0.9 * min((a.saturation - a.bias_level) * a.gain for a in ccd.amplifiers)
            fwhm = (red.metrics.psf_fwhm or 1.0) / scale
            label = f"{f.expnum}/{ccd.num}:{band.name}"
            if dump is not None:
                dump.mkdir(parents=True, exist_ok=True)
                np.savez(
                    dump / f"ccd_{f.expnum}_{ccd.num}.npz",
                    science=red.science, weight=red.weight, mask=red.mask, saturation=sat,
                    scale=scale, truth_x=truth.x, truth_y=truth.y, truth_mag=truth.mag,
                    truth_star=truth.star, **{k.replace("/", "_").replace(" ", "_"): v
                                              for k, v in truth.artefacts.items()},
                )  # fmt: skip
            tally_ccd(tallies["surveydm"], ours(red, scale, sat), truth, scale, label)
            sex = run_sextractor(binary, root, red, scale, sat, fwhm)
            tally_ccd(tallies["SExtractor"], sex, truth, scale, label)
            if cache is not None:
                cache.mkdir(parents=True, exist_ok=True)
                cached = CachedCCD(label, red.science, red.weight, red.mask, scale, sat, truth, sex)
                with open(cache / f"ccd_{f.expnum}_{ccd.num}.pkl", "wb") as fh:
                    pickle.dump(cached, fh)
            mpix += red.science.size / 1e6
            print(
                f"{label:>14s}: FWHM {fwhm:.2f} px, ours {red.metrics.n_extracted} "
                f"SExtractor {len(sex.x)} detections, true objects {len(truth.x)}, "
                f"CR masked px {int((red.mask & 8 != 0).sum())}"
            )
    print_report(tallies, truths, mpix)


@dataclass
class CachedCCD:
    """One reduced CCD with its truth and SExtractor's catalog (``--cache``)."""

    label: str
    science: np.ndarray
    weight: np.ndarray
    mask: np.ndarray
    scale: float
    sat: float
    truth: TruthCCD
    sex: ToolCCD


def compare_cached(cache: Path) -> None:
    """The report of a ``--cache`` directory with only our extraction re-run (background from
    the reduced image, as :func:`ours` times it; the masks and SExtractor's catalogs are the
    cached ones)."""
    tallies = {"surveydm": Tally(), "SExtractor": Tally()}
    truths, mpix = [], 0.0
    for path in sorted(cache.glob("ccd_*.pkl")):
        with open(path, "rb") as fh:
            c: CachedCCD = pickle.load(fh)
        t0 = time.perf_counter()
        bkg = measure_background(c.science, mask=c.mask)
        cat = extract_sources(
            c.science,
            background=bkg,
            mask=c.mask,
            weight=c.weight,
            weight_kind="background",
            pixel_scale=c.scale,
            saturation=c.sat,
            config=ExtractionConfig(threshold=1.5, aperture_radius_arcsec=3.0),
        )
        seconds = time.perf_counter() - t0
        tool = ToolCCD(
            *(np.asarray(cat[k]) for k in ("x", "y", "snr", "flags", "flux_auto")),
            np.asarray(cat["flux_err_auto"]),
            np.asarray(cat["flux_psf"]),
            np.asarray(cat["flux_err_psf"]),
            seconds,
        )
        tally_ccd(tallies["surveydm"], tool, c.truth, c.scale, c.label)
        tally_ccd(tallies["SExtractor"], c.sex, c.truth, c.scale, c.label)
        truths.append(c.truth)
        mpix += c.science.size / 1e6
        print(f"{c.label:>14s}: ours {len(cat)} SExtractor {len(c.sex.x)} detections")
    print_report(tallies, truths, mpix)


if __name__ == "__main__":
    main()
