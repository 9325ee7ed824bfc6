"""Zero-point, transparency and aperture correction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sep

from surveydm.reduction.photometry import (
    PhotometryError,
    aperture_correction,
    fit_zeropoint,
    instrumental_magnitude,
    transparency,
)


def _stars(rng, n=200, zp=25.3, exptime=90.0, outliers=0.1):
    mag = rng.uniform(15.0, 20.0, n)
    ref_err = 0.01 + 0.02 * (mag - 15.0) / 5.0  # realistic: 0.01 (bright) to 0.03 mag
    flux = exptime * 10 ** (-0.4 * (mag - zp))
    flux_err = np.sqrt(flux + 25 * 300.0)  # Poisson + sky over ~25 pixels
    measured = rng.normal(flux, flux_err)
    ref_mag = rng.normal(mag, ref_err)
    bad = rng.random(n) < outliers  # variables, blends, mismatches: 0.3-2 mag off
    ref_mag[bad] += rng.choice([-1, 1], bad.sum()) * rng.uniform(0.3, 2.0, bad.sum())
    return measured, flux_err, ref_mag, ref_err, bad


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_zeropoint_recovered_to_10_mmag_with_outliers(seed):
    rng = np.random.default_rng(seed)
    flux, flux_err, ref_mag, ref_err, bad = _stars(rng)
    zp = fit_zeropoint(flux, ref_mag, ref_err, exptime=90.0, instrumental_err=flux_err)
    assert abs(zp.zp - 25.3) < 0.01, zp.zp
    assert 0 < zp.zp_err < 0.01
    assert abs(zp.zp - 25.3) < 4 * zp.zp_err
    assert not np.any(zp.used & bad & (np.abs(zp.residuals) > 0.5))
    assert zp.n_stars >= 0.8 * (~bad).sum()
    assert zp.rms < 0.06


def test_zeropoint_from_magnitudes_and_window():
    rng = np.random.default_rng(5)
    flux, flux_err, ref_mag, ref_err, _ = _stars(rng, outliers=0.0)
    inst, inst_err = instrumental_magnitude(flux, 90.0, flux_err)
    zp = fit_zeropoint(
        inst,
        ref_mag,
        ref_err,
        exptime=90.0,
        kind="mag",
        instrumental_err=inst_err,
        mag_range=(16.0, 19.0),
    )
    assert abs(zp.zp - 25.3) < 0.01
    assert not np.any(zp.used & ((ref_mag < 16.0) | (ref_mag > 19.0)))


def test_zeropoint_too_few_stars_is_nan():
    zp = fit_zeropoint(np.array([1000.0, 2000.0]), np.array([20.0, 19.3]), None, exptime=1.0)
    assert math.isnan(zp.zp) and zp.n_stars == 2


def test_zeropoint_bad_input():
    with pytest.raises(PhotometryError):
        fit_zeropoint(np.ones(3), np.ones(4), None, exptime=1.0)
    with pytest.raises(PhotometryError):
        fit_zeropoint(np.ones(3), np.ones(3), None, exptime=0.0)


def test_transparency_formula():
    # Photometric: the measured zero-point equals the nominal one dimmed by k X.
    assert transparency(25.0 - 0.1 * 1.3, 25.0, 0.1, 1.3) == pytest.approx(1.0)
    # 0.5 mag of cloud: 10**(-0.2) of the light.
    assert transparency(25.0 - 0.13 - 0.5, 25.0, 0.1, 1.3) == pytest.approx(10 ** (-0.2))
    assert transparency(30.0, 25.0, 0.1, 1.0) == 1.5  # clipped
    assert math.isnan(transparency(float("nan"), 25.0, 0.1, 1.0))
    with pytest.raises(PhotometryError):
        transparency(25.0, 25.0, 0.1, 0.5)


def test_aperture_correction_recovers_total_flux():
    rng = np.random.default_rng(9)
    shape = (400, 400)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    alpha, beta = 2.0, 3.5  # Moffat, FWHM = 2 alpha sqrt(2**(1/beta) - 1) ~ 1.75 px
    image = np.zeros(shape)
    pos = [(x, y) for x in range(40, 400, 80) for y in range(40, 400, 80)]
    for x, y in pos:
        x += rng.uniform(-0.5, 0.5)
        y += rng.uniform(-0.5, 0.5)
        for sx in np.arange(-0.4, 0.5, 0.2):  # 5x5 sub-pixels: pixel-integrated profile
            for sy in np.arange(-0.4, 0.5, 0.2):
                r2 = (xx + sx - x) ** 2 + (yy + sy - y) ** 2
                prof = (beta - 1) / (np.pi * alpha**2) * (1 + r2 / alpha**2) ** (-beta)
                image += 1e5 / 25 * prof
    image = rng.normal(image, 1.0).astype(np.float32)
    xs = np.array([p[0] for p in pos], dtype=float)
    ys = np.array([p[1] for p in pos], dtype=float)
    ac = aperture_correction(image, xs, ys, radius=2.5, total_radius=30.0)
    # Corrected aperture fluxes measure the total flux (1e5 e-; 99.999% lies within 30 px).
    ap, _, _ = sep.sum_circle(image, xs, ys, 2.5, subpix=0)
    assert np.median(ap * ac.factor) == pytest.approx(1e5, rel=0.005)
    assert np.median(ap) < 0.92e5  # the correction is substantial for this PSF
    assert ac.n_stars == len(pos)
    assert ac.mag < 0
    assert np.all(np.diff(ac.growth) >= -1e-3)
    with pytest.raises(PhotometryError):
        aperture_correction(image, xs, ys, radius=3.0, total_radius=2.0)
    one = aperture_correction(image, xs[:1], ys[:1], radius=2.5, total_radius=30.0)
    assert one.n_stars == 1 and one.factor == pytest.approx(ac.factor, rel=0.01)
    assert np.isnan(one.error)  # no scatter and no noise model: no error claimed


def test_weighted_aperture_correction_beats_unweighted_on_sky_noise():
    """With a bright sky, faint stars' growth curves are noisy: inverse-variance weights
    (``err``) let the bright ones set the correction, with an error that covers the truth."""
    rng = np.random.default_rng(4)
    shape = (600, 600)
    yy, xx = np.mgrid[0:40, 0:40]
    alpha, beta, sky = 1.8, 3.5, 2.0e4
    clean = np.zeros(shape)
    pos = [(x, y) for x in range(30, 600, 60) for y in range(30, 600, 60)]
    fluxes = 10 ** rng.uniform(4.3, 6.3, len(pos))
    xs, ys = [], []
    for (x, y), f in zip(pos, fluxes, strict=True):
        x, y = x + rng.uniform(-0.5, 0.5), y + rng.uniform(-0.5, 0.5)
        xs.append(x)
        ys.append(y)
        sub = np.zeros((40, 40))
        for sx in np.arange(-0.4, 0.5, 0.2):
            for sy in np.arange(-0.4, 0.5, 0.2):
                r2 = (xx + sx - (x - round(x) + 20)) ** 2 + (yy + sy - (y - round(y) + 20)) ** 2
                sub += (beta - 1) / (np.pi * alpha**2) * (1 + r2 / alpha**2) ** (-beta) / 25
        clean[round(y) - 20 : round(y) + 20, round(x) - 20 : round(x) + 20] += f * sub
    xs, ys = np.array(xs), np.array(ys)
    radius, total = 3.0, 12.0
    exact, _, _ = sep.sum_circle(clean.astype(np.float32), xs, ys, radius, subpix=0)
    exact_tot, _, _ = sep.sum_circle(clean.astype(np.float32), xs, ys, total, subpix=0)
    truth = float(np.median(exact_tot / exact))
    errors_w, errors_u = [], []
    for _ in range(4):
        noisy = rng.poisson(clean + sky).astype(np.float32)
        w = aperture_correction(
            noisy, xs, ys, radius=radius, total_radius=total, background=sky,
            err=np.sqrt(sky), gain=1.0,
        )  # fmt: skip
        u = aperture_correction(noisy, xs, ys, radius=radius, total_radius=total, background=sky)
        errors_w.append(w.factor - truth)
        errors_u.append(u.factor - truth)
        assert abs(w.mag - (-2.5 * np.log10(truth))) < 5 * w.error + 1e-4
    assert np.sqrt(np.mean(np.square(errors_w))) < 0.5 * np.sqrt(np.mean(np.square(errors_u)))
