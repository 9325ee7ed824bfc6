"""Astrometric calibration from a wrong header guess on a synthetic TAN-SIP CCD."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS, Sip
from scipy.spatial import cKDTree

from surveydm.reduction.astrometry import (
    STATUS_NO_MATCH,
    STATUS_OK,
    STATUS_TOO_FEW_STARS,
    AstrometryConfig,
    AstrometryError,
    apply_proper_motion,
    fit_tan_sip,
    solve_astrometry,
)
from surveydm.reduction.extraction import extract_sources, measure_background

SCALE = 0.8  # arcsec/pixel, like paucam-mini
NX, NY = 2048, 1024


def make_wcs(*, ra=150.0, dec=2.0, rot_deg=0.0, sip=True, crpix=None):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if sip else ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = crpix if crpix is not None else [NX / 2 + 0.5, NY / 2 + 0.5]
    t = np.deg2rad(rot_deg)
    s = SCALE / 3600
    w.wcs.cd = np.array([[-s * np.cos(t), s * np.sin(t)], [s * np.sin(t), s * np.cos(t)]])
    if sip:  # up to ~3 px of distortion at the CCD corners
        a = np.zeros((4, 4))
        b = np.zeros((4, 4))
        a[2, 0], a[0, 2], a[3, 0], a[1, 2] = 2e-6, -1e-6, 2e-10, 1.5e-10
        b[0, 2], b[1, 1], b[0, 3], b[2, 1] = 2e-6, 1e-6, 2e-10, 1.2e-10
        w.sip = Sip(a, b, None, None, w.wcs.crpix)
    w.pixel_shape = (NX, NY)
    return w


def render(x, y, flux, fwhm, rng, beta=3.5, sky=200.0, rn=5.0):
    """Moffat stars integrated over pixels (5x5 sub-sampling), Poisson + read noise."""
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    model = np.zeros((NY, NX))
    h = int(np.ceil(8 * fwhm)) + 3
    off = (np.arange(5) - 2) / 5.0
    for xi, yi, fi in zip(x, y, flux, strict=True):
        ix, iy = round(xi), round(yi)
        x0, x1, y0, y1 = max(ix - h, 0), min(ix + h + 1, NX), max(iy - h, 0), min(iy + h + 1, NY)
        px = (np.arange(x0, x1)[:, None] + off[None, :]).ravel() - xi
        py = (np.arange(y0, y1)[:, None] + off[None, :]).ravel() - yi
        r2 = (py[:, None] ** 2 + px[None, :] ** 2) / alpha**2
        prof = (beta - 1) / (np.pi * alpha**2) * (1 + r2) ** (-beta) / 25.0
        model[y0:y1, x0:x1] += fi * prof.reshape(y1 - y0, 5, x1 - x0, 5).sum(axis=(1, 3))
    image = rng.poisson(model + sky) + rng.normal(0, rn, model.shape)
    return image.astype(np.float32), np.full(model.shape, 1 / (sky + rn**2), np.float32)


@pytest.fixture(scope="module")
def ccd():
    rng = np.random.default_rng(11)
    true_wcs = make_wcs()
    n = 600
    x = rng.uniform(4, NX - 5, n)
    y = rng.uniform(4, NY - 5, n)
    mag = rng.uniform(14.0, 21.5, n)
    ra, dec = true_wcs.all_pix2world(x, y, 0)
    # 1.03" seeing: FWHM 1.3 pixels, undersampled like paucam-mini
    image, weight = render(x, y, 10 ** (-0.4 * (mag - 28.0)), 1.3, rng)
    bkg = measure_background(image)
    cat = extract_sources(
        image, background=bkg, weight=weight, pixel_scale=SCALE, weight_kind="background"
    )
    # The reference catalog extends beyond the CCD (padding for pointing errors).
    m = 150
    xo = rng.uniform(-300, NX + 300, m)
    yo = rng.uniform(-300, NY + 300, m)
    outside = (xo < 0) | (xo > NX) | (yo < 0) | (yo > NY)
    rao, deco = true_wcs.all_pix2world(xo[outside], yo[outside], 0)
    ref = Table(
        {
            "ra": np.r_[ra, rao],
            "dec": np.r_[dec, deco],
            "mag": np.r_[mag, rng.uniform(14, 21.5, outside.sum())],
        }
    )
    return dict(x=x, y=y, ra=ra, dec=dec, mag=mag, cat=cat, ref=ref, true=true_wcs)


def guess(offset_arcsec=(60.0, 0.0), rot_deg=1.0):
    dra = offset_arcsec[0] / 3600 / np.cos(np.deg2rad(2.0))
    return make_wcs(ra=150.0 + dra, dec=2.0 + offset_arcsec[1] / 3600, rot_deg=rot_deg, sip=False)


def _bright_rms_vs_truth(ccd, wcs):
    cat = ccd["cat"]
    d, i = cKDTree(np.c_[ccd["x"], ccd["y"]]).query(np.c_[cat["x"], cat["y"]])
    bright = (d < 1) & (cat["flags"] == 0) & (cat["snr"] > 100)
    ra, dec = wcs.all_pix2world(cat["x"][bright], cat["y"][bright], 0)
    dra = (ra - ccd["ra"][i[bright]]) * np.cos(np.deg2rad(2.0)) * 3600
    ddec = (dec - ccd["dec"][i[bright]]) * 3600
    return np.sqrt(np.mean(dra**2 + ddec**2)), bright.sum()


@pytest.mark.parametrize(("offset", "rot"), [((60.0, 0.0), 1.0), ((-40.0, 45.0), -0.7)])
def test_solves_from_wrong_guess(ccd, offset, rot):
    sol = solve_astrometry(
        ccd["cat"], ccd["ref"], guess(offset, rot), config=AstrometryConfig(sip_degree=3)
    )
    assert sol.status == STATUS_OK, sol.message
    assert sol.n_matches > 300
    assert abs(sol.rotation_deg + rot) < 0.02
    rms, n_bright = _bright_rms_vs_truth(ccd, sol.wcs)
    assert n_bright > 100
    assert rms <= 0.03, rms
    assert sol.rms_arcsec <= 0.03
    assert sol.rms_arcsec == pytest.approx(np.hypot(sol.rms_ra, sol.rms_dec))
    assert "SIP" in sol.wcs.wcs.ctype[0] and sol.wcs.sip is not None
    # The model itself (true pixel positions through the fitted WCS) is much better.
    ra, dec = sol.wcs.all_pix2world(ccd["x"], ccd["y"], 0)
    d = np.hypot((ra - ccd["ra"]) * np.cos(np.deg2rad(2.0)), dec - ccd["dec"]) * 3600
    assert np.percentile(d, 99) < 0.05


def test_too_few_stars_returns_initial_wcs(ccd):
    g = guess()
    sol = solve_astrometry(ccd["cat"][:3], ccd["ref"], g)
    assert sol.status == STATUS_TOO_FEW_STARS
    assert not sol.ok
    assert np.allclose(sol.wcs.wcs.crval, g.wcs.crval)


def test_unrelated_catalog_gives_no_match(ccd):
    rng = np.random.default_rng(3)
    n = 500
    ref = Table(
        {
            "ra": 150.0 + rng.uniform(-0.3, 0.3, n) / np.cos(np.deg2rad(2.0)),
            "dec": 2.0 + rng.uniform(-0.15, 0.15, n),
            "mag": rng.uniform(14, 21, n),
        }
    )
    sol = solve_astrometry(ccd["cat"], ref, guess())
    assert sol.status == STATUS_NO_MATCH, sol.message


def test_proper_motion_moves_reference():
    ref = Table({"ra": [10.0], "dec": [60.0], "pmra": [1000.0], "pmdec": [-2000.0]})
    ref.meta["epoch"] = 2016.0
    ra, dec = apply_proper_motion(ref, 2026.0)
    assert dec[0] == pytest.approx(60.0 - 20.0 / 3600)
    assert (ra[0] - 10.0) * np.cos(np.deg2rad(60.0)) == pytest.approx(10.0 / 3600, rel=1e-3)
    ra0, dec0 = apply_proper_motion(ref, None)
    assert ra0[0] == 10.0 and dec0[0] == 60.0
    fits_like = Table({"ra": [10.0], "dec": [60.0], "pmra": [0.0], "pmdec": [-2000.0]})
    fits_like.meta["EPOCH"] = 2016.0  # FITS catalogs carry the epoch as a header keyword
    assert apply_proper_motion(fits_like, 2026.0)[1][0] == pytest.approx(60.0 - 20.0 / 3600)


def test_missing_columns_raise(ccd):
    with pytest.raises(AstrometryError):
        solve_astrometry(Table({"x": [1.0]}), ccd["ref"], guess())


def test_proper_motions_applied_at_epoch(ccd):
    """Reference positions at epoch 2016 with large proper motions; the CCD is at 2026."""
    rng = np.random.default_rng(8)
    ref = ccd["ref"].copy()
    n = len(ref)
    pmra = rng.normal(0.0, 60.0, n)  # mas/yr, mu_alpha* (with cos dec)
    pmdec = rng.normal(0.0, 60.0, n)
    ref["dec"] = ref["dec"] - pmdec * 10.0 / 3.6e6
    ref["ra"] = ref["ra"] - pmra * 10.0 / 3.6e6 / np.cos(np.deg2rad(ref["dec"]))
    ref["pmra"], ref["pmdec"] = pmra, pmdec
    ref["epoch"] = np.full(n, 2016.0)
    with_pm = solve_astrometry(ccd["cat"], ref, guess(), epoch=2026.0)
    without = solve_astrometry(ccd["cat"], ref, guess(), epoch=None)
    assert with_pm.status == STATUS_OK
    assert with_pm.rms_arcsec < 0.03
    assert without.rms_arcsec > 3 * with_pm.rms_arcsec or without.status != STATUS_OK


def test_fit_tan_sip_recovers_exact_model():
    true_wcs = make_wcs()
    rng = np.random.default_rng(4)
    x = rng.uniform(0, NX - 1, 400)
    y = rng.uniform(0, NY - 1, 400)
    ra, dec = true_wcs.all_pix2world(x, y, 0)
    w = fit_tan_sip(
        x, y, ra, dec, crpix=(NX / 2 + 0.5, NY / 2 + 0.5), sip_degree=3, image_shape=(NY, NX)
    )
    gx, gy = np.meshgrid(np.linspace(0, NX - 1, 30), np.linspace(0, NY - 1, 30))
    r1, d1 = w.all_pix2world(gx.ravel(), gy.ravel(), 0)
    r0, d0 = true_wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
    sep = np.hypot((r1 - r0) * np.cos(np.deg2rad(d0)), d1 - d0) * 3600
    assert sep.max() < 1e-3  # arcsec
    # The inverse SIP terms (AP, BP) invert the distortion without iteration.
    fx, fy = w.sip_pix2foc(gx.ravel() + 1, gy.ravel() + 1, 1)
    u, v = w.sip_foc2pix(fx, fy, 1)
    assert np.max(np.hypot(u - gx.ravel() - 1, v - gy.ravel() - 1)) < 0.01
    assert w.wcs.ctype[0] == "RA---TAN-SIP"


def test_astropy_fitter_agrees_with_linear_fit(ccd):
    """fitter="astropy" (fit_wcs_from_points) fits the same model; it is only slower."""
    cat = ccd["cat"][np.argsort(-ccd["cat"]["flux_auto"])[:120]]
    lin = solve_astrometry(cat, ccd["ref"], guess(), config=AstrometryConfig(sip_degree=2))
    apy = solve_astrometry(
        cat, ccd["ref"], guess(), config=AstrometryConfig(sip_degree=2, fitter="astropy")
    )
    assert lin.status == apy.status == STATUS_OK
    gx, gy = np.meshgrid(np.linspace(0, NX - 1, 9), np.linspace(0, NY - 1, 5))
    r1, d1 = lin.wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
    r2, d2 = apy.wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
    assert np.max(np.hypot((r1 - r2) * np.cos(np.deg2rad(2.0)), d1 - d2)) * 3600 < 0.02
    with pytest.raises(AstrometryError, match="fitter"):
        AstrometryConfig(fitter="scamp")


def test_config_errors_name_the_field():
    with pytest.raises(AstrometryError, match="match_radius_arcsec"):
        AstrometryConfig(match_radius_arcsec=0.0)
    with pytest.raises(AstrometryError, match="max_offset_arcsec"):
        AstrometryConfig(max_offset_arcsec=-1.0)
    with pytest.raises(AstrometryError, match="min_matches"):
        AstrometryConfig(min_matches=0)
