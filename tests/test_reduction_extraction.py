"""Source extraction and PSF FWHM on synthetic CCD images with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.special import erf

from surveydm.reduction.extraction import (
    CATALOG_COLUMNS,
    MASK_FLAG_SHIFT,
    ExtractionConfig,
    ExtractionError,
    extract_sources,
    level_background,
    measure_background,
)
from surveydm.reduction.psf import estimate_psf_fwhm, select_psf_stars

SKY = 300.0  # e-/pixel
READ_NOISE = 5.0  # e-


def render_stars(shape, x, y, flux, fwhm, *, rng, sky=SKY, read_noise=READ_NOISE):
    """Pixel-integrated Gaussian stars (exact erf integrals) + sky, Poisson + read noise."""
    ny, nx = shape
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    model = np.zeros(shape)
    h = int(np.ceil(6 * sigma)) + 2
    for xi, yi, fi in zip(x, y, flux, strict=True):
        ix, iy = round(xi), round(yi)
        x0, x1 = max(ix - h, 0), min(ix + h + 1, nx)
        y0, y1 = max(iy - h, 0), min(iy + h + 1, ny)
        cx = np.diff(0.5 * erf((np.arange(x0, x1 + 1) - 0.5 - xi) / (np.sqrt(2) * sigma)))
        cy = np.diff(0.5 * erf((np.arange(y0, y1 + 1) - 0.5 - yi) / (np.sqrt(2) * sigma)))
        model[y0:y1, x0:x1] += fi * np.outer(cy, cx)
    image = rng.poisson(model + sky) + rng.normal(0.0, read_noise, shape)
    weight = np.full(shape, 1.0 / (sky + read_noise**2), dtype=np.float32)
    return image.astype(np.float32), weight


def flux_for_snr(snr, fwhm, sky=SKY, read_noise=READ_NOISE):
    """Flux giving the requested optimal (PSF-weighted) S/N for a Gaussian star."""
    sigma = fwhm / 2.3548
    npix = 4 * np.pi * sigma**2
    var = sky + read_noise**2
    return 0.5 * snr**2 * (1 + np.sqrt(1 + 4 * npix * var / snr**2))


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(42)
    shape = (1024, 1024)
    fwhm = 2.5
    n = 400
    x = rng.uniform(12, shape[1] - 13, n)
    y = rng.uniform(12, shape[0] - 13, n)
    # Keep injected stars apart so blends do not enter the statistics.
    keep = np.ones(n, dtype=bool)
    tree = cKDTree(np.c_[x, y])
    for i, j in sorted(tree.query_pairs(12.0)):
        if keep[i]:
            keep[j] = False
    x, y = x[keep], y[keep]
    flux = 10 ** rng.uniform(np.log10(flux_for_snr(5, fwhm)), 5.3, len(x))
    image, weight = render_stars(shape, x, y, flux, fwhm, rng=rng)
    bkg = measure_background(image)
    cat = extract_sources(
        image,
        background=bkg,
        weight=weight,
        pixel_scale=0.8,
        weight_kind="background",
        config=ExtractionConfig(aperture_radius_arcsec=4.0),
    )
    return dict(x=x, y=y, flux=flux, fwhm=fwhm, image=image, weight=weight, bkg=bkg, cat=cat)


def _matched(field, radius=1.0):
    cat = field["cat"]
    d, i = cKDTree(np.c_[field["x"], field["y"]]).query(np.c_[cat["x"], cat["y"]])
    ok = d < radius
    return cat[ok], i[ok]


def test_background_level_and_noise(field):
    bkg = field["bkg"]
    assert bkg.image.dtype == np.float32 and bkg.image.shape == field["image"].shape
    assert abs(bkg.global_level - SKY) < 2.0
    assert abs(bkg.global_rms - np.sqrt(SKY + READ_NOISE**2)) < 0.5


def test_background_noise_of_constant_cells_is_the_median_rms():
    """A block of constant pixels (zero noise) must not leave a zero in the RMS map, which
    made extraction fail with 'noise map has non-positive values' on a whole CCD."""
    rng = np.random.default_rng(3)
    image = rng.normal(1000.0, 30.0, (512, 512)).astype(np.float32)
    image[128:384, 128:384] = 1000.0
    bkg = measure_background(image)
    assert np.all(bkg.rms > 0)
    assert np.median(bkg.rms[200:300, 200:300]) == pytest.approx(30.0, rel=0.1)
    extract_sources(image, background=bkg, pixel_scale=0.5)  # no ExtractionError
    with pytest.raises(ExtractionError, match="no pixel has any noise"):
        measure_background(np.full((256, 256), 5.0, np.float32))


def test_level_background_removes_the_mode_bias_of_a_skewed_sky():
    """Faint negative residuals (another exposure's sources subtracted with a fringe frame
    made from two dithers) skew the sky pixels: sep's mode estimator then misses the mean
    level that aperture sums see; level_background restores it."""
    from scipy import ndimage

    rng = np.random.default_rng(12)
    holes = np.zeros((1024, 1024), np.float32)
    ys, xs = rng.integers(0, 1024, 20000), rng.integers(0, 1024, 20000)
    holes[ys, xs] = -rng.uniform(300, 900, 20000)
    holes = ndimage.gaussian_filter(holes, 1.5)
    image = (1000.0 + holes + rng.normal(0, 30, holes.shape)).astype(np.float32)
    image[500:506, 500:506] += 20000.0  # a star: masked, not averaged in
    truth = 1000.0 + float(np.mean(holes))
    bkg = measure_background(image)
    assert abs(bkg.global_level - truth) > 1.5  # the mode estimator is biased here
    levelled, offset = level_background(image, bkg)
    assert levelled.global_level == pytest.approx(truth, abs=1.0)
    assert np.median(levelled.image) == pytest.approx(truth, abs=1.0)
    assert offset == pytest.approx(truth - bkg.global_level, abs=1.0)
    assert levelled.rms is bkg.rms


def test_completeness_at_snr10(field):
    snr10 = flux_for_snr(10, field["fwhm"])
    sel = (field["flux"] > 0.8 * snr10) & (field["flux"] < 1.5 * snr10)
    assert sel.sum() >= 20
    cat = field["cat"]
    d, _ = cKDTree(np.c_[cat["x"], cat["y"]]).query(np.c_[field["x"][sel], field["y"][sel]])
    completeness = np.mean(d < 1.5)
    assert completeness >= 0.9, completeness


def test_aperture_flux_pull_width(field):
    # A 4 arcsec (5 px) radius aperture holds > 99.9% of a 2.5 px FWHM Gaussian.
    cat, idx = _matched(field)
    clean = cat["flags"] == 0
    pull = (cat["flux_aper"][clean] - field["flux"][idx[clean]]) / cat["flux_err_aper"][clean]
    assert len(pull) > 150
    width = 1.4826 * np.median(np.abs(pull - np.median(pull)))
    assert abs(np.std(pull) - 1.0) < 0.1, np.std(pull)
    assert abs(width - 1.0) < 0.1, width
    assert abs(np.median(pull)) < 0.2


def test_centroid_errors_consistent(field):
    cat, idx = _matched(field)
    clean = cat["flags"] == 0
    px = (cat["x"][clean] - field["x"][idx[clean]]) / cat["xerr"][clean]
    py = (cat["y"][clean] - field["y"][idx[clean]]) / cat["yerr"][clean]
    for pull in (px, py):
        assert 0.8 < np.std(pull) < 1.25, np.std(pull)
    bright = cat["snr"][clean] > 200
    dx = cat["x"][clean][bright] - field["x"][idx[clean]][bright]
    assert np.sqrt(np.mean(dx**2)) < 0.02


def test_psf_fwhm_recovered_within_5_percent(field):
    est = estimate_psf_fwhm(field["cat"], pixel_scale=0.8)
    assert est.n_stars >= 20
    assert abs(est.fwhm_pixels / field["fwhm"] - 1.0) < 0.05, est
    assert est.fwhm_arcsec == pytest.approx(est.fwhm_pixels * 0.8)
    assert est.ellipticity < 0.1
    stars = select_psf_stars(field["cat"])
    assert stars.sum() == est.n_stars


def test_mask_bits_reach_flags():
    rng = np.random.default_rng(7)
    shape = (200, 200)
    x = np.array([50.0, 150.0])
    y = np.array([100.0, 100.0])
    image, weight = render_stars(shape, x, y, np.array([2e5, 2e5]), 2.5, rng=rng)
    mask = np.zeros(shape, dtype=np.uint16)
    mask[100, 150] = 2  # saturated pixel in the second star
    bkg = measure_background(image, mask)
    cat = extract_sources(
        image,
        background=bkg,
        mask=mask,
        weight=weight,
        pixel_scale=0.8,
        weight_kind="background",
    )
    cat = cat[cat["snr"] > 100]
    cat.sort("x")
    assert len(cat) == 2
    assert cat["mask_flags"][0] == 0
    assert cat["mask_flags"][1] == 2
    assert cat["flags"][1] & (2 << MASK_FLAG_SHIFT)


def test_bad_input_raises_clear_errors():
    img = np.zeros((10, 10), dtype=np.float32)
    with pytest.raises(ExtractionError):
        measure_background(np.zeros(10))
    with pytest.raises(ExtractionError):
        measure_background(img, mask=np.zeros((5, 5), dtype=np.uint16))
    bkg = measure_background(img + np.random.default_rng(0).normal(0, 1, (10, 10)), box=5)
    with pytest.raises(ExtractionError):
        extract_sources(img, background=bkg, pixel_scale=0.0)
    # the config names the field to fix
    with pytest.raises(ExtractionError, match="threshold"):
        ExtractionConfig(threshold=0.0)
    with pytest.raises(ExtractionError, match="filter_kernel"):
        ExtractionConfig(filter_kernel="gauss")
    with pytest.raises(ExtractionError, match="aperture_radius_arcsec"):
        ExtractionConfig(aperture_radius_arcsec=-1.0)
    with pytest.raises(ExtractionError, match="minarea"):
        ExtractionConfig(minarea=0)


def render_moffat(shape, x, y, flux, fwhm, beta, *, rng=None, sky=SKY, read_noise=READ_NOISE):
    """Moffat objects integrated over pixels by 5x5 sub-sampling (+ noise if rng is given)."""
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    ny, nx = shape
    model = np.zeros(shape)
    h = int(np.ceil(8 * fwhm)) + 3
    off = (np.arange(5) - 2) / 5.0
    for xi, yi, fi in zip(x, y, flux, strict=True):
        ix, iy = round(xi), round(yi)
        x0, x1 = max(ix - h, 0), min(ix + h + 1, nx)
        y0, y1 = max(iy - h, 0), min(iy + h + 1, ny)
        px = (np.arange(x0, x1)[:, None] + off[None, :]).ravel() - xi
        py = (np.arange(y0, y1)[:, None] + off[None, :]).ravel() - yi
        r2 = (py[:, None] ** 2 + px[None, :] ** 2) / alpha**2
        prof = (beta - 1) / (np.pi * alpha**2) * (1 + r2) ** (-beta) / 25.0
        model[y0:y1, x0:x1] += fi * prof.reshape(y1 - y0, 5, x1 - x0, 5).sum(axis=(1, 3))
    if rng is None:
        return model
    image = rng.poisson(model + sky) + rng.normal(0.0, read_noise, shape)
    weight = np.full(shape, 1.0 / (sky + read_noise**2), dtype=np.float32)
    return image.astype(np.float32), weight


@pytest.fixture(scope="module")
def undersampled():
    """paucam-mini like: 0.795"/pixel, 1.03" seeing (FWHM 1.3 pixels), Moffat beta 3.5 stars
    plus extended objects (FWHM 4 pixels, beta 2.5) standing in for galaxies."""
    rng = np.random.default_rng(2)
    shape = (768, 768)
    n, ng = 300, 80
    x = rng.uniform(10, shape[1] - 11, n + ng)
    y = rng.uniform(10, shape[0] - 11, n + ng)
    keep = np.ones(n + ng, dtype=bool)
    for i, j in sorted(cKDTree(np.c_[x, y]).query_pairs(10.0)):
        if keep[i]:
            keep[j] = False
    is_star = (np.arange(n + ng) < n)[keep]
    x, y = x[keep], y[keep]
    flux = 10 ** rng.uniform(3.0, 5.5, len(x))
    stars, weight = render_moffat(shape, x[is_star], y[is_star], flux[is_star], 1.3, 3.5, rng=rng)
    gal = render_moffat(shape, x[~is_star], y[~is_star], flux[~is_star], 4.0, 2.5)
    image = (stars + rng.poisson(gal)).astype(np.float32)
    bkg = measure_background(image)
    cat = extract_sources(
        image, background=bkg, weight=weight, pixel_scale=0.795, weight_kind="background"
    )
    d, i = cKDTree(np.c_[x, y]).query(np.c_[cat["x"], cat["y"]])
    found = (d < 1.5) & (cat["flags"] == 0)
    return dict(cat=cat, x=x, y=y, flux=flux, is_star=is_star, idx=i, found=found)


def test_psf_model_fwhm_undersampled_moffat(undersampled):
    cat = undersampled["cat"]
    assert cat.meta["psf_fwhm_pix"] == pytest.approx(1.3, rel=0.03)
    assert cat.meta["psf_beta"] == pytest.approx(3.5, rel=0.15)
    est = estimate_psf_fwhm(cat, pixel_scale=0.795)
    assert est.fwhm_arcsec == pytest.approx(1.3 * 0.795, rel=0.05)
    assert est.fwhm_locus_arcsec == pytest.approx(1.3 * 0.795, rel=0.05)
    assert est.n_stars >= 50


def test_psf_centroids_unbiased_when_undersampled(undersampled):
    u = undersampled
    cat, idx = u["cat"][u["found"]], u["idx"][u["found"]]
    star = u["is_star"][idx]
    dx = cat["x"][star] - u["x"][idx[star]]
    dy = cat["y"][star] - u["y"][idx[star]]
    bright = cat["snr"][star] > 100
    # Windowed centroids have 0.03 pixel pixel-phase errors at FWHM 1.3 pixel; PSF fits do not.
    assert np.sqrt(np.mean(dx[bright] ** 2 + dy[bright] ** 2)) < 0.012
    for pull in (dx / cat["xerr"][star], dy / cat["yerr"][star]):
        robust = 1.4826 * np.median(np.abs(pull))
        assert 0.8 < robust < 1.2, robust


def test_psf_flux_pull_and_star_galaxy_separation(undersampled):
    u = undersampled
    cat, idx = u["cat"][u["found"]], u["idx"][u["found"]]
    star = u["is_star"][idx]
    s = cat[star]
    pull = (s["flux_psf"] - u["flux"][idx[star]]) / s["flux_err_psf"]
    assert abs(1.4826 * np.median(np.abs(pull - np.median(pull))) - 1.0) < 0.1
    assert np.median(s["flux_psf"] / u["flux"][idx[star]]) == pytest.approx(1.0, abs=0.01)
    bright = cat["snr"] > 30
    assert np.mean(cat["class_star"][star & bright] > 0.5) > 0.95
    assert np.mean(cat["class_star"][~star & bright] < 0.5) > 0.9
    assert np.median(cat["spread_model"][star & bright]) == pytest.approx(0.0, abs=0.001)
    assert (~star & bright).sum() >= 30


def test_total_variance_weight_map_from_detrending(field):
    """surveydm's weight_map holds the full variance (source Poisson included): the flux errors
    must then not add the Poisson term again (weight_kind="total", the default)."""
    from surveydm.reduction.weights import weight_map

    image = field["image"]
    weight = weight_map(image, None, READ_NOISE)
    cat = extract_sources(
        image,
        background=field["bkg"],
        weight=weight,
        pixel_scale=0.8,
        config=ExtractionConfig(aperture_radius_arcsec=4.0),
    )
    d, i = cKDTree(np.c_[field["x"], field["y"]]).query(np.c_[cat["x"], cat["y"]])
    ok = (d < 1.0) & (cat["flags"] == 0)
    pull = (cat["flux_aper"][ok] - field["flux"][i[ok]]) / cat["flux_err_aper"][ok]
    assert abs(np.std(pull) - 1.0) < 0.1, np.std(pull)
    double = extract_sources(
        image,
        background=field["bkg"],
        weight=weight,
        pixel_scale=0.8,
        weight_kind="background",
        config=ExtractionConfig(aperture_radius_arcsec=4.0),
    )
    d2, j = cKDTree(np.c_[double["x"], double["y"]]).query(np.c_[cat["x"], cat["y"]])
    same = ok & (d2 < 0.5) & (cat["snr"] > 100)
    ratio = np.median(double["flux_err_aper"][j[same]] / cat["flux_err_aper"][same])
    assert ratio > 1.2  # counting the source twice inflates the errors of bright stars


def test_saturated_star_is_one_flagged_detection():
    rng = np.random.default_rng(12)
    shape = (200, 200)
    image, weight = render_stars(
        shape, np.array([100.3]), np.array([80.6]), np.array([3e6]), 2.5, rng=rng
    )
    saturation = 60_000.0
    sat = image >= saturation
    assert sat.sum() >= 4
    image[sat] = saturation
    mask = np.where(sat, 2, 0).astype(np.uint16)  # MaskBit.SATURATED
    weight[sat] = 0.0
    bkg = measure_background(image, mask)
    cat = extract_sources(image, background=bkg, mask=mask, weight=weight, pixel_scale=0.8)
    near = np.hypot(cat["x"] - 100.3, cat["y"] - 80.6) < 10
    assert near.sum() == 1
    assert cat["mask_flags"][near][0] & 2
    assert cat["flags"][near][0] != 0


def test_catalog_columns_and_empty_image(field):
    assert tuple(field["cat"].colnames) == CATALOG_COLUMNS
    rng = np.random.default_rng(5)
    flat = rng.normal(100.0, 3.0, (128, 128)).astype(np.float32)
    bkg = measure_background(flat, box=32)
    cat = extract_sources(
        flat, background=bkg, pixel_scale=0.8, config=ExtractionConfig(threshold=5.0)
    )
    assert len(cat) == 0
    assert tuple(cat.colnames) == CATALOG_COLUMNS


def test_nan_pixels_are_masked_not_propagated():
    rng = np.random.default_rng(6)
    shape = (200, 200)
    image, weight = render_stars(
        shape, np.array([60.0, 140.0]), np.array([100.0, 100.0]), np.array([5e4, 5e4]), 2.5, rng=rng
    )
    image[100, 141] = np.nan  # inside the second star's aperture
    image[10:12, 10:40] = np.inf
    bkg = measure_background(np.nan_to_num(image, posinf=300.0))
    cat = extract_sources(image, background=bkg, weight=weight, pixel_scale=0.8)
    for col in ("x", "y", "flux_aper", "flux_err_aper", "flux_auto"):
        assert np.all(np.isfinite(cat[col])), col
    second = np.argmin(np.hypot(cat["x"] - 140.0, cat["y"] - 100.0))
    assert cat["mask_flags"][second] & 64  # MaskBit.NO_DATA


def test_moffat_pixel_profile_normalised_with_exact_derivatives():
    from surveydm.reduction.stamps import moffat_fwhm, moffat_pixel_profile

    yy, xx = np.mgrid[-60:61, -60:61].astype(float)
    alpha, beta = 1.4, 3.5
    prof, gx, gy = moffat_pixel_profile(xx - 0.3, yy + 0.2, alpha, beta, ov=5, derivatives=True)
    # Flux beyond 60 px of a beta 3.5 Moffat: (1 + (60/1.4)^2)^(1 - beta) ~ 1e-8.
    assert prof.sum() == pytest.approx(1.0, abs=1e-4)
    h = 1e-5  # d/dx_centre by central differences
    p1 = moffat_pixel_profile(xx - 0.3 - h, yy + 0.2, alpha, beta, ov=5)
    p0 = moffat_pixel_profile(xx - 0.3 + h, yy + 0.2, alpha, beta, ov=5)
    assert np.allclose(gx, (p1 - p0) / (2 * h), atol=1e-8)
    assert moffat_fwhm(alpha, beta) == pytest.approx(2 * alpha * np.sqrt(2 ** (1 / beta) - 1))
    # shift-invariant total (to the 5-node Gauss-Legendre quadrature's 3e-6)
    assert np.sum(gy) == pytest.approx(0.0, abs=1e-5)


def _bleed_field(rng):
    """A saturated star whose bleed trail runs the full column through six fainter stars, and a
    star cut by a dead (masked) column; returns image, mask (MaskBit codes), weight and truth."""
    from surveydm.reduction.masks import MaskBit

    shape = (400, 160)
    xs = np.array([80.0, 81.5, 78.5, 82.0, 79.0, 80.5, 81.0, 40.0])
    ys = np.array([200.0, 40.0, 90.0, 140.0, 260.0, 310.0, 360.0, 200.0])
    flux = np.array([5e6, 4e4, 4e4, 4e4, 4e4, 4e4, 4e4, 4e4])
    image, weight = render_stars(shape, xs, ys, flux, 2.5, rng=rng)
    mask = np.zeros(shape, np.uint16)
    sat = image >= 60_000.0
    image[sat] = 60_000.0
    mask[sat] = MaskBit.SATURATED
    cols = np.unique(np.nonzero(sat)[1])
    trail = np.zeros(shape, bool)
    trail[:, cols] = True
    trail &= ~sat
    image[trail] = 60_000.0  # charge bled along the whole column
    mask[trail] |= np.uint16(MaskBit.BLEED)
    mask[:, 40] |= np.uint16(MaskBit.BAD_PIXEL)  # a dead column through the last star
    image[:, 40] *= 0.1
    weight[mask != 0] = 0.0
    return image, mask, weight, xs, ys


def test_bleed_trail_and_dead_column_do_not_merge_or_split_sources():
    image, mask, weight, xs, ys = _bleed_field(np.random.default_rng(21))
    bkg = measure_background(image, mask)
    cat = extract_sources(
        image, background=bkg, mask=mask, weight=weight, pixel_scale=0.8,
        saturation=60_000.0, weight_kind="background",
    )  # fmt: skip
    d, j = cKDTree(np.column_stack([cat["x"], cat["y"]])).query(np.column_stack([xs, ys]))
    assert (d < 1.0).all(), d  # every star found once at its place, the saturated one too
    assert np.all(np.bincount(j, minlength=len(cat))[j] == 1)
    assert cat["mask_flags"][j[0]] & 2  # the saturated star is flagged SATURATED
    near_dead = np.hypot(cat["x"] - 40.0, cat["y"] - 200.0) < 8
    assert near_dead.sum() == 1  # not split in two by the dead column
    # the old rule (saturated and bleed pixels detected as they are) merges the trail's stars
    merged = extract_sources(
        image, background=bkg, mask=mask, weight=weight, pixel_scale=0.8,
        saturation=60_000.0, weight_kind="background",
        config=ExtractionConfig(detection_ignored_bits=2 | 4),
    )  # fmt: skip
    dm, _ = cKDTree(np.column_stack([merged["x"], merged["y"]])).query(
        np.column_stack([xs[:7], ys[:7]])
    )
    assert (dm > 1.0).sum() >= 3


def test_fill_masked_pixels_bridges_runs_along_rows_then_columns():
    """Linear between good pixels along the row, else the column; a border run is a copy."""
    from surveydm.reduction.extraction.image import fill_masked_pixels

    yy, xx = np.mgrid[0:50, 0:60].astype(np.float32)
    image = 2.0 * xx + 3.0 * yy
    fill = np.zeros(image.shape, bool)
    fill[:, 20:25] = True  # a masked column band: rows bridge it
    fill[10, :] = True  # a masked row: no good pixel pair on the row, columns bridge it
    fill[30, 55:] = True  # a run reaching the border: its one good end is copied
    out, unfilled = fill_masked_pixels(image + np.where(fill, 1e6, 0).astype(np.float32), fill)
    assert not unfilled.any()
    np.testing.assert_allclose(out[30, 55:], image[30, 54])
    out[30, 55:] = image[30, 55:]
    np.testing.assert_allclose(out, image, atol=1e-3)
    fill[:, :] = True
    assert fill_masked_pixels(image, fill)[1].all()  # nothing to interpolate from


def test_zero_weight_and_mask_bits_route_pixels_to_detection_and_measurement():
    """Masked and zero-weight pixels are interpolated for detection and left out of
    measurements; EDGE-only pixels are detected as they are; zero weight takes the RMS."""
    from surveydm.reduction.extraction.image import measurement_image
    from surveydm.reduction.masks import MaskBit

    rng = np.random.default_rng(5)
    image = rng.normal(SKY, 20.0, (64, 80)).astype(np.float32)
    image[:, 40] += 5000.0  # a hot column of zero weight, no mask bit
    weight = np.full(image.shape, 1.0 / 400.0, np.float32)
    weight[:, 40] = 0.0
    weight[5, 5] = np.nan
    mask = np.zeros(image.shape, np.uint16)
    mask[20, 10:13] = MaskBit.COSMIC_RAY
    mask[:2, :] = MaskBit.EDGE
    # an EDGE pixel of zero weight stays as it is for detection (only zero-weight pixels
    # without any mask bit are interpolated for their weight)
    bkg = measure_background(image, mask=mask)
    img = measurement_image(image, bkg, mask=mask, weight=weight, weight_kind="background",
                            gain=1.0, detection_ignored_bits=int(MaskBit.EDGE))  # fmt: skip
    zero_w = ~(weight > 0)
    assert img.meas_mask.tolist() == ((mask != 0) | zero_w).tolist()
    expected_fill = ((mask & ~np.uint16(MaskBit.EDGE)) != 0) | (zero_w & (mask == 0))
    assert img.filled.tolist() == expected_fill.tolist()
    assert np.abs(img.det_image[10:50, 40]).max() < 200  # the column is bridged
    np.testing.assert_allclose(img.err_bkg[zero_w], bkg.rms[zero_w])
    np.testing.assert_allclose(img.err_bkg[~zero_w], 20.0, rtol=1e-6)
    weight[3, 3] = -1.0
    bad_rms = type(bkg)(bkg.image, np.zeros_like(bkg.rms), bkg.global_level, 0.0)
    with pytest.raises(ExtractionError, match="noise map"):
        measurement_image(image, bad_rms, mask=mask, weight=weight, weight_kind="background",
                          gain=1.0, detection_ignored_bits=0)  # fmt: skip


def _extract(image, weight, mask=None):
    return extract_sources(
        image,
        background=measure_background(image, mask=mask),
        mask=mask,
        weight=weight,
        pixel_scale=0.8,
        weight_kind="background",
        config=ExtractionConfig(psf_model=False),
    )


def test_kron_flux_and_windowed_centroid_with_a_close_neighbour():
    """Pairs 6 px apart (2.4 FWHM), 4:1 in flux: each member's Kron flux and windowed centroid
    against truth with the neighbour masked through the segmentation map (without it the
    faint member's Kron aperture held both stars, 5x its flux, and its centroid was pulled by
    0.07 px)."""
    rng = np.random.default_rng(1)
    grid = np.arange(40.0, 380.0, 40.0)
    gx, gy = (v.ravel() for v in np.meshgrid(grid, grid))
    x0, y0 = gx + rng.uniform(-0.5, 0.5, gx.size), gy + rng.uniform(-0.5, 0.5, gx.size)
    ang = rng.uniform(0.0, np.pi, gx.size)
    x = np.r_[x0, x0 + 6.0 * np.cos(ang)]
    y = np.r_[y0, y0 + 6.0 * np.sin(ang)]
    flux = np.r_[np.full(gx.size, 2e5), np.full(gx.size, 5e4)]
    image, weight = render_stars((400, 400), x, y, flux, 2.5, rng=rng)
    cat = _extract(image, weight)
    d, j = cKDTree(np.c_[cat["x_win"], cat["y_win"]]).query(np.c_[x, y])
    assert (d < 1.0).all()
    assert len(cat) == len(x)
    for sel in (flux > 1e5, flux < 1e5):
        ratio = cat["flux_auto"][j[sel]] / flux[sel]
        assert abs(np.median(ratio) - 1.0) < 0.015, np.median(ratio)
        assert np.sqrt(np.mean(d[sel] ** 2)) < 0.03, np.sqrt(np.mean(d[sel] ** 2))
    # neighbours are not "masked pixels": the flag is left for the measurement mask
    assert not (cat["flags"] & 32).any()


def test_kron_flux_and_pull_width_of_isolated_stars():
    """flux_auto / truth within 1 % and Kron pull width 1.0 +- 0.15 per S/N bin (Gaussian
    stars of FWHM 2.5 px, where the Kron aperture is SExtractor's minimum 3.5 a, b)."""
    rng = np.random.default_rng(3)
    grid = np.arange(20.0, 500.0, 24.0)
    gx, gy = (v.ravel() for v in np.meshgrid(grid, grid))
    x, y = gx + rng.uniform(-0.5, 0.5, gx.size), gy + rng.uniform(-0.5, 0.5, gx.size)
    lo, hi = np.log10(flux_for_snr(8, 2.5)), np.log10(flux_for_snr(800, 2.5))
    flux = 10 ** rng.uniform(lo, hi, len(x))
    rows = []
    for _ in range(3):
        image, weight = render_stars((512, 512), x, y, flux, 2.5, rng=rng)
        cat = _extract(image, weight)
        d, j = cKDTree(np.c_[cat["x"], cat["y"]]).query(np.c_[x, y])
        ok = (d < 1.0) & (cat["flags"][j] == 0)
        rows.append(np.c_[cat["flux_auto"][j[ok]], cat["flux_err_auto"][j[ok]], flux[ok]])
    meas, err, true = np.concatenate(rows).T
    snr = true / err
    for lo_snr, hi_snr in ((5, 20), (20, 100), (100, 1000)):
        s = (snr >= lo_snr) & (snr < hi_snr)
        assert s.sum() > 100
        ratio = np.median(meas[s] / true[s])
        assert abs(ratio - 1.0) < 0.01, (lo_snr, ratio)
        pull = (meas[s] - ratio * true[s]) / err[s]
        width = 1.4826 * np.median(np.abs(pull - np.median(pull)))
        assert abs(width - 1.0) < 0.15, (lo_snr, width)


def test_kron_flux_mirrors_masked_pixels_and_flags_them():
    """A masked column through a star's Kron aperture: the masked pixels take the values at
    their mirror points through the centre (SExtractor MASK_TYPE CORRECT, interpolated), so
    the flux stays within 2 % of the unmasked one (1.5 %; SExtractor's nearest mirror pixel
    5.5 %), and APER_HASMASKED is set."""
    from surveydm.reduction.masks import MaskBit

    rng = np.random.default_rng(7)
    x, y = np.array([50.3, 120.6]), np.array([60.2, 58.9])
    flux = np.array([1e6, 1e6])
    image, weight = render_stars((120, 170), x, y, flux, 3.0, rng=rng)
    mask = np.zeros(image.shape, np.uint16)
    mask[:, 52] = MaskBit.BAD_PIXEL  # a bad column 1.7 px from the first star's centre
    cat = _extract(image, weight, mask)
    d, j = cKDTree(np.c_[cat["x"], cat["y"]]).query(np.c_[x, y])
    assert (d < 0.3).all()
    masked, clean = cat[j[0]], cat[j[1]]
    assert masked["flags"] & 32 and not clean["flags"] & 32
    assert abs(masked["flux_auto"] / flux[0] - clean["flux_auto"] / flux[1]) < 0.02
