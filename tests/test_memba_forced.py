"""Forced aperture photometry and flux co-adds (pure functions) against known truth: stars
rendered with the simulator's Moffat PSF on a noisy sky, photutils' elliptical apertures as the
reference for the sums, masks turned into flags, neighbours kept out of the background, and
outlier rejection of the co-add."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.wcs import WCS

from surveydm.reduction.flux_coadd import coadd_fluxes
from surveydm.reduction.forced_photometry import (
    FLAG_BLENDED,
    FLAG_SATURATED_NEIGHBOUR,
    FLAG_TRUNCATED,
    ForcedConfig,
    aperture_axes,
    calibrated_flux_njy,
    forced_photometry,
    sky_to_pixel_ellipses,
)
from surveydm.reduction.masks import MaskBit
from surveydm.simulation.render import render_stars

SKY, READ_NOISE, FWHM = 300.0, 5.0, 2.4


def _field(seed: int, n_side: int = 12, spacing: int = 30):
    """Isolated stars on a grid (position jitter 0.3 pixel), fluxes log-uniform 1e3..3e5 e-,
    Poisson + read noise on a flat sky; weight = 1 / (sky + read noise^2) like a nightly map."""
    rng = np.random.default_rng(seed)
    g = (np.arange(n_side) + 1) * spacing
    x, y = (v.ravel() + rng.uniform(-0.3, 0.3, n_side**2) for v in np.meshgrid(g, g))
    flux = 10 ** rng.uniform(3, 5.5, len(x))
    shape = ((n_side + 1) * spacing,) * 2
    model = np.zeros(shape, np.float32)
    render_stars(model, x, y, flux, FWHM, 3.5)
    expected = model + SKY
    image = expected + rng.standard_normal(shape) * np.sqrt(expected + READ_NOISE**2)
    weight = np.full(shape, 1 / (SKY + READ_NOISE**2), np.float32)
    return image.astype(np.float32), weight, np.zeros(shape, np.uint16), x, y, flux


def _measure(image, weight, mask, x, y, config=ForcedConfig()):
    n = len(x)
    zeros = np.zeros(n)
    return forced_photometry(
        image, weight, mask, x, y, zeros, zeros, zeros, FWHM, np.ones(n, bool), config
    )


def test_star_fluxes_are_unbiased_and_errors_match_the_scatter():
    ratios, pulls = [], []
    for seed in range(2):
        image, weight, mask, x, y, flux = _field(seed)
        res = _measure(image, weight, mask, x, y)
        assert (res.flag == 0).all()
        assert 1.0 < res.aperture_correction < 2.5
        snr = res.flux / res.flux_err
        ratios.append((res.flux / flux)[snr > 50])
        pulls.append((res.flux - flux) / res.flux_err)
        # the background is the sky (around bright stars the PSF wings add a little)
        assert abs(np.median(res.bkg_median[flux < 3e4]) - SKY) < 0.5
    bias = np.median(np.concatenate(ratios)) - 1
    pull = np.concatenate(pulls)
    width = 1.4826 * np.median(np.abs(pull - np.median(pull)))
    assert abs(bias) < 0.005, bias
    assert 0.85 < width < 1.15, width


def test_sums_agree_with_photutils_elliptical_apertures():
    import photutils.aperture as photutils

    image, weight, mask, x, y, _ = _field(7)
    res = _measure(image, weight, mask, x, y)
    raw = (res.flux / res.aperture_correction) + res.bkg_median * math.pi * res.a * res.b
    aps = photutils.EllipticalAperture(np.c_[x, y], res.a[0], res.b[0], theta=0.0)
    ref = photutils.aperture_photometry(image, aps, method="exact")
    rel = raw / np.asarray(ref["aperture_sum"]) - 1
    assert np.abs(rel).max() < 1e-4, np.abs(rel).max()


def test_a_bright_neighbour_in_the_annulus_does_not_bias_the_background():
    # noiseless sky + a faint star + a bright neighbour 9 pixels away, inside its annulus
    image = np.full((60, 60), SKY, np.float32)
    x, y = np.array([25.0, 34.0]), np.array([30.0, 30.0])
    render_stars(image, x, y, np.array([1e4, 2e5]), FWHM, 3.5)
    weight = np.full(image.shape, 1 / SKY, np.float32)
    zeros = np.zeros(2)
    res = forced_photometry(image, weight, np.zeros(image.shape, np.uint16), x, y, zeros, zeros,
                            zeros, FWHM, np.ones(2, bool))  # fmt: skip
    yy, xx = np.mgrid[:60, :60]
    r = np.hypot(xx - x[0], yy - y[0])
    ring = (r >= res.a_in[0]) & (r <= res.a_out[0])
    assert image[ring].mean() - SKY > 20.0  # an annulus mean would be far off
    assert abs(res.bkg_median[0] - SKY) < 0.5  # masked neighbour + clipped median are not


def test_faint_stars_beside_bright_ones_are_deblended():
    # pairs: a star 1-4 mag fainter 2-6 pixels from a bright one (FWHM 1.4 pixels, Moffat
    # beta 3.5 as rendered; the model fits beta to the image's curve of growth)
    rng = np.random.default_rng(3)
    n_side, spacing, fwhm = 10, 40, 1.4
    g = (np.arange(n_side) + 1) * spacing
    x, y = (v.ravel() + rng.uniform(-0.5, 0.5, n_side**2) for v in np.meshgrid(g, g))
    flux = 10 ** rng.uniform(4.0, 5.5, len(x))
    comp = np.arange(0, len(x), 2)
    ang, d = rng.uniform(0, 2 * np.pi, len(comp)), rng.uniform(2.0, 6.0, len(comp))
    cx, cy = x[comp] + d * np.cos(ang), y[comp] + d * np.sin(ang)
    cf = flux[comp] * 10 ** (-0.4 * rng.uniform(1, 4, len(comp)))
    xs, ys, true = np.r_[x, cx], np.r_[y, cy], np.r_[flux, cf]
    shape = ((n_side + 1) * spacing,) * 2
    model = np.zeros(shape, np.float32)
    render_stars(model, xs, ys, true, fwhm, 3.5)
    image = model + SKY + rng.standard_normal(shape) * np.sqrt(model + SKY + READ_NOISE**2)
    weight = np.full(shape, 1 / (SKY + READ_NOISE**2), np.float32)
    zeros, n = np.zeros(len(xs)), len(x)
    comps = np.arange(n, len(xs))
    out = {}
    for subtract in (False, True):
        res = forced_photometry(image.astype(np.float32), weight, np.zeros(shape, np.uint16),
                                xs, ys, zeros, zeros, zeros, fwhm, np.ones(len(xs), bool),
                                ForcedConfig(subtract_neighbours=subtract))  # fmt: skip
        out[subtract] = res
    plain, sub = out[False], out[True]
    assert np.median(plain.flux[comps] / cf) > 1.2  # the bright star's light is in them
    ratio, pull = sub.flux / true, (sub.flux - true) / sub.flux_err
    good = sub.flux / sub.flux_err > 20
    assert good[comps].sum() > 15 and good[:n].all()
    assert abs(np.median(ratio[comps][good[comps]]) - 1) < 0.01
    assert np.abs(pull[good]).max() < 5
    assert 0.7 < 1.4826 * np.median(np.abs(pull[comps] - np.median(pull[comps]))) < 1.5
    assert (sub.flag[comps] & FLAG_BLENDED).sum() > len(comps) / 2
    # isolated primaries (odd indices) are not changed
    iso = np.arange(1, n, 2)
    assert np.allclose(sub.flux[iso], plain.flux[iso], rtol=1e-3)
    # a saturated primary cannot be subtracted: its companion is flagged (not co-added)
    mask = np.zeros(shape, np.uint16)
    mask[int(round(ys[0])), int(round(xs[0]))] = MaskBit.SATURATED
    sat = forced_photometry(image.astype(np.float32), weight, mask, xs, ys, zeros, zeros, zeros,
                            fwhm, np.ones(len(xs), bool))  # fmt: skip
    assert sat.flag[n] & FLAG_SATURATED_NEIGHBOUR and sat.flag[0] & MaskBit.SATURATED
    assert not (sat.flag[n + 1 :] & FLAG_SATURATED_NEIGHBOUR).any()


def test_mask_bits_become_flags_and_truncation_is_flagged():
    image, weight, mask, x, y, _ = _field(4)
    xi, yi = int(round(x[5])), int(round(y[5]))
    mask[yi, xi] |= MaskBit.COSMIC_RAY
    x2, y2 = np.append(x, 0.5), np.append(y, 100.0)
    res = _measure(image, weight, mask, x2, y2)
    assert res.flag[5] & MaskBit.COSMIC_RAY
    assert res.flag[-1] & FLAG_TRUNCATED
    assert (np.delete(res.flag, [5, len(x2) - 1]) == 0).all()


def test_aperture_grows_with_the_source_and_the_psf():
    a, b = aperture_axes(np.array([0.0, 8.0]), np.array([0.0, 5.0]), 3.0)
    assert a[0] == pytest.approx(max(1.40 * 3.0 / 2.3548, ForcedConfig().min_radius_fwhm * 3.0))
    no_floor = ForcedConfig(min_radius_fwhm=0, min_radius_pix=0)
    assert aperture_axes(np.zeros(1), np.zeros(1), 3.0, no_floor)[0][0] == pytest.approx(
        1.40 * 3.0 / 2.3548, rel=1e-2
    )
    # a PSF of 1.2 pixels FWHM: the 2.5-pixel floor (pixel phase) wins over 1.3 FWHM
    sharp_a, sharp_b = aperture_axes(np.zeros(1), np.zeros(1), 1.2)
    assert sharp_a[0] == sharp_b[0] == ForcedConfig().min_radius_pix
    assert a[1] > b[1] > a[0]
    with pytest.raises(ValueError, match="FWHM"):
        aperture_axes(np.zeros(1), np.zeros(1), 0.0)
    with pytest.raises(ValueError, match="must match"):
        forced_photometry(np.zeros((5, 5)), np.zeros((5, 4)), np.zeros((5, 5), np.uint16),
                          [1.0], [1.0], [0.0], [0.0], [0.0], 2.0, [True])  # fmt: skip


def test_sky_ellipse_angles_follow_the_wcs():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [50.0, 50.0]
    w.wcs.cd = np.array([[-0.25, 0.0], [0.0, 0.25]]) / 3600  # north up, east left
    ell = sky_to_pixel_ellipses(w, [150.0, 150.0], [2.0, 2.0], [2.0, 2.0], [1.0, 1.0], [0, 90])
    assert ell.a[0] == pytest.approx(8.0)  # 2 arcsec / 0.25 arcsec per pixel
    assert abs(math.degrees(ell.theta[0])) == pytest.approx(90.0)  # north is along y
    assert math.degrees(ell.theta[1]) == pytest.approx(0.0, abs=1e-9)  # east is -x: axis along x
    assert calibrated_flux_njy(np.array([100.0]), 10.0, 31.4)[0] == pytest.approx(10.0)


def test_elongated_sources_at_any_angle_are_measured():
    image, weight, mask, x, y, _ = _field(8, n_side=4)
    n = len(x)
    theta = np.linspace(-3.0, 3.0, n)  # sep itself only takes [-pi/2, pi/2]
    res = forced_photometry(image, weight, mask, x, y, np.full(n, 3.0), np.full(n, 1.5), theta,
                            FWHM, np.zeros(n, bool))  # fmt: skip
    assert np.isfinite(res.flux).all() and (np.abs(res.theta) <= math.pi / 2).all()
    assert (res.a > res.b).all()


def test_coadd_rejects_outliers_and_has_unit_chi2_per_dof():
    rng = np.random.default_rng(5)
    n_obj, n_ep = 400, 6
    true = rng.uniform(100, 1000, n_obj)
    err = rng.uniform(5, 20, (n_obj, n_ep))
    flux = true[:, None] + rng.standard_normal((n_obj, n_ep)) * err
    flux[0, 2] += 40 * err[0, 2]  # a cosmic ray on one epoch
    group = np.repeat(np.arange(n_obj), n_ep)
    res = coadd_fluxes(group, flux.ravel(), err.ravel())
    assert res.n_coadd[0] == n_ep - 1 and res.n_rejected[0] == 1
    assert not res.kept[2]
    pull = (res.flux - true) / res.flux_err
    assert 0.85 < pull.std() < 1.15
    assert 0.85 < np.median(res.chi2[1:] / (res.n_coadd[1:] - 1)) / 0.873 < 1.15
    # unusable measurements are neither kept nor counted as outliers
    one = coadd_fluxes(np.zeros(3), np.array([1.0, np.nan, 1.2]), np.array([0.1, 0.1, 0.1]))
    assert one.n_coadd[0] == 2 and one.n_rejected[0] == 0
