"""Drawing objects into a CCD image: stars as pixel-integrated Moffat stamps, galaxies as
GalSim's Sersic profiles convolved with the same Moffat PSF.

Every stamp is normalised so that its pixels sum to the object's flux (the flux that falls
outside the stamp is negligible: stamps grow with the flux until the Moffat wing beyond them
is below ~10 e-), which makes the truth flux equal the sum of the rendered pixels.
Methods: Moffat (1969, A&A 3, 455) with FWHM = 2 alpha sqrt(2^(1/beta) - 1); pixel
integration by 3x3 (or 2x2) sub-sampling; galaxies: GalSim's Sersic profile (Rowe et al.
2015) tabulated per index and evaluated vectorised on the sub-sampled grid (drawing each of
~10^4 galaxies per exposure through GalSim's Python API costs ~0.25 ms each, too slow for the
60-s night budget), convolved with the Moffat by FFT (circular, on a stamp with 2 FWHM of
margin), then binned.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_HALF_SIZES = (3, 5, 8, 12, 18, 27, 40, 60, 90, 135, 200)
# galaxy stamps: 2h+1 is 5-smooth so the (sub-sampled) FFTs are fast
_GALAXY_HALF_SIZES = (4, 7, 12, 22, 37)


def moffat_alpha(fwhm_pix: float, beta: float) -> float:
    """Moffat scale radius alpha (pixels) of a profile with ``fwhm_pix``."""
    return fwhm_pix / (2.0 * math.sqrt(2 ** (1.0 / beta) - 1.0))


def _half_size_for(needed: np.ndarray) -> np.ndarray:
    sizes = np.asarray(_HALF_SIZES)
    idx = np.searchsorted(sizes, np.minimum(needed, sizes[-1]))
    return sizes[np.minimum(idx, len(sizes) - 1)]


def star_half_sizes(flux: np.ndarray, fwhm_pix: float, beta: float) -> np.ndarray:
    """Stamp half-size (pixels) per star: the radius beyond which the Moffat wing carries less
    than 10 e- (``(1 + (R/alpha)^2)^(1 - beta) * flux < 10``), at least 2 FWHM."""
    alpha = moffat_alpha(fwhm_pix, beta)
    ratio = np.maximum(np.asarray(flux, float) / 10.0, 1.0)
    r = alpha * np.sqrt(ratio ** (1.0 / (beta - 1.0)) - 1.0)
    return _half_size_for(np.maximum(np.ceil(r), np.ceil(2 * fwhm_pix)))


def _add_stamps(image: np.ndarray, stamps: np.ndarray, x0: np.ndarray, y0: np.ndarray) -> None:
    """Add (n, s, s) stamps whose [0, 0] pixel goes to integer (x0, y0), clipped at the edges."""
    ny, nx = image.shape
    s = stamps.shape[1]
    for st, xa, ya in zip(stamps, x0, y0, strict=True):
        xb, yb = xa + s, ya + s
        if xb <= 0 or yb <= 0 or xa >= nx or ya >= ny:
            continue
        cx0, cy0 = max(0, -xa), max(0, -ya)
        cx1, cy1 = s - max(0, xb - nx), s - max(0, yb - ny)
        image[ya + cy0 : ya + cy1, xa + cx0 : xa + cx1] += st[cy0:cy1, cx0:cx1]


def _split(x: np.ndarray, y: np.ndarray, half: int):
    """Integer corner of a (2h+1)^2 stamp centred on the pixel nearest (x, y) and the
    sub-pixel offset of the centre from that pixel."""
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    return ix - half, iy - half, x - ix, y - iy


def render_stars(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    fwhm_pix: float | np.ndarray,
    beta: float,
    max_batch_pixels: int = 4_000_000,
) -> None:
    """Add Moffat stars (flux in e-, positions in 0-based pixels) to ``image`` in place.

    ``fwhm_pix`` is one FWHM (pixels) or one per star (a PSF varying across the field).
    Stars are grouped by stamp size and evaluated vectorised; each stamp is sub-sampled
    3x3 (pixel-integrated, as the pipeline's PSF model assumes) up to half-size 60, beyond
    which stars saturate anyway, and normalised to the star's flux.
    """
    fwhm = np.broadcast_to(np.asarray(fwhm_pix, dtype=float), np.shape(x))
    alphas = fwhm / (2.0 * math.sqrt(2 ** (1.0 / beta) - 1.0))
    halves = star_half_sizes(flux, float(np.max(fwhm)) if fwhm.size else 1.0, beta)
    for half in np.unique(halves):
        sel = np.nonzero(halves == half)[0]
        ov = 3 if half <= 60 else 1
        s = 2 * half + 1
        sub = (np.arange(s * ov) - (s * ov - 1) / 2.0) / ov  # sub-pixel centres, pixels
        per = max(1, max_batch_pixels // (s * s * ov * ov))
        for start in range(0, sel.size, per):
            part = sel[start : start + per]
            x0, y0, fx, fy = _split(x[part], y[part], int(half))
            dx = sub[None, :] - fx[:, None]
            dy = sub[None, :] - fy[:, None]
            r2 = (dy[:, :, None] ** 2 + dx[:, None, :] ** 2) / alphas[part, None, None] ** 2
            prof = (1.0 + r2) ** (-beta)
            if ov > 1:
                prof = prof.reshape(len(part), s, ov, s, ov).sum(axis=(2, 4))
            prof *= (flux[part] / prof.sum(axis=(1, 2)))[:, None, None]
            _add_stamps(image, prof.astype(np.float32), x0, y0)


def moffat_kernel(fwhm_pix: float, beta: float, half: int, ov: int) -> np.ndarray:
    """Point-sampled Moffat on a grid ``ov`` times finer than the pixels, 2 h ov + 1 square
    (odd, centred on a grid point), normalised to sum 1."""
    alpha = moffat_alpha(fwhm_pix, beta) * ov
    n = 2 * half * ov + 1  # odd, so that the centre is a grid point
    c = (n - 1) / 2.0
    yy, xx = np.mgrid[0:n, 0:n]
    k = (1.0 + ((xx - c) ** 2 + (yy - c) ** 2) / alpha**2) ** (-beta)
    return k / k.sum()


@lru_cache(maxsize=32)
def sersic_profile_table(n: float) -> tuple[np.ndarray, np.ndarray]:
    """GalSim's Sersic surface brightness of index ``n`` and unit half-light radius tabulated
    on a radial grid (radius in units of the half-light radius, 0..20): (radii, values)."""
    import galsim

    prof = galsim.Sersic(n=float(n), half_light_radius=1.0)
    radii = np.concatenate([[0.0], np.logspace(-3, np.log10(20.0), 600)])
    values = np.array([prof.xValue(galsim.PositionD(float(r), 0.0)) for r in radii])
    return radii, values


def render_galaxies(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    sersic_n: np.ndarray,
    hlr_arcsec: np.ndarray,
    axis_ratio: np.ndarray,
    angle_pix_rad: np.ndarray,
    pixel_scale: float,
    fwhm_pix: float,
    beta: float,
    exact: np.ndarray | None = None,
) -> None:
    """Add Sersic galaxies convolved with the Moffat PSF to ``image`` (e-) in place.

    Galaxies flagged ``exact`` are drawn one by one by GalSim:
    ``Convolve(Sersic(n, hlr).shear(q, beta), Moffat(beta, fwhm)).drawImage(...)`` (FFT,
    pixel-integrated; ~1.5 ms each). The others (the many faint ones) use GalSim's Sersic
    profile of their index tabulated (:func:`sersic_profile_table`), sheared as GalSim's
    ``shear(q=axis_ratio, beta=angle)`` does (area-preserving: semi-axes hlr / sqrt(q) and
    hlr sqrt(q)), evaluated vectorised on a grid sub-sampled 2x, convolved with the Moffat by
    FFT and binned. Every stamp is normalised to the flux.

    Args:
        x, y: 0-based pixel centres; flux: e-; hlr_arcsec: half-light radius (arcsec);
            axis_ratio: b/a; angle_pix_rad: major-axis angle from +x, counter-clockwise, in
            the pixel frame; pixel_scale: arcsec/pixel; fwhm_pix: PSF FWHM (pixels);
            exact: (n,) bool, draw these with GalSim's full convolution.
    """
    if len(x) == 0:
        return
    if exact is not None and exact.any():
        _render_galaxies_galsim(
            image, x[exact], y[exact], flux[exact], sersic_n[exact], hlr_arcsec[exact],
            axis_ratio[exact], angle_pix_rad[exact], pixel_scale, fwhm_pix, beta,
        )  # fmt: skip
        keep = ~exact
        x, y, flux, sersic_n, hlr_arcsec, axis_ratio, angle_pix_rad = (
            a[keep] for a in (x, y, flux, sersic_n, hlr_arcsec, axis_ratio, angle_pix_rad)
        )
        if len(x) == 0:
            return
    ov = 2
    need = np.ceil(3.0 * hlr_arcsec / pixel_scale + 2.0 * fwhm_pix)
    sizes = np.asarray(_GALAXY_HALF_SIZES)
    halves = sizes[np.minimum(np.searchsorted(sizes, need), len(sizes) - 1)]
    for half in np.unique(halves):
        sel_all = np.nonzero(halves == half)[0]
        s = 2 * int(half) + 1
        n_sub = s * ov
        sub = (np.arange(n_sub) - (n_sub - 1) / 2.0) / ov  # pixels from the stamp centre
        k_half = min(int(half), max(3, int(math.ceil(3 * fwhm_pix))))
        kernel = moffat_kernel(fwhm_pix, beta, k_half, ov)
        # Circular convolution on the stamp grid: the kernel's centre goes to [0, 0].
        kpad = np.zeros((n_sub, n_sub))
        kc = kernel.shape[0] // 2
        kpad[: kc + 1, : kc + 1] = kernel[kc:, kc:]
        kpad[-kc:, : kc + 1] = kernel[:kc, kc:]
        kpad[: kc + 1, -kc:] = kernel[kc:, :kc]
        kpad[-kc:, -kc:] = kernel[:kc, :kc]
        kfft = np.fft.rfft2(kpad)
        chunk = max(1, 3_000_000 // (n_sub * n_sub))
        for start in range(0, sel_all.size, chunk):
            sel = sel_all[start : start + chunk]
            x0, y0, fx, fy = _split(x[sel], y[sel], int(half))
            dx = (sub[None, :] - fx[:, None]) * pixel_scale  # arcsec
            dy = (sub[None, :] - fy[:, None]) * pixel_scale
            c = np.cos(angle_pix_rad[sel])[:, None, None]
            sn = np.sin(angle_pix_rad[sel])[:, None, None]
            u = dx[:, None, :] * c + dy[:, :, None] * sn
            v = -dx[:, None, :] * sn + dy[:, :, None] * c
            q = axis_ratio[sel][:, None, None]
            re = np.sqrt(q * u * u + v * v / q) / hlr_arcsec[sel][:, None, None]
            stamps = np.empty_like(re)
            for n in np.unique(sersic_n[sel]):
                m = sersic_n[sel] == n
                radii, values = sersic_profile_table(float(n))
                stamps[m] = np.interp(re[m], radii, values, right=0.0)
            conv = np.fft.irfft2(np.fft.rfft2(stamps) * kfft, s=(n_sub, n_sub))
            binned = conv.reshape(sel.size, s, ov, s, ov).sum(axis=(2, 4))
            np.maximum(binned, 0, out=binned)
            binned *= (flux[sel] / binned.sum(axis=(1, 2)))[:, None, None]
            _add_stamps(image, binned.astype(np.float32), x0, y0)


def _render_galaxies_galsim(
    image, x, y, flux, sersic_n, hlr_arcsec, axis_ratio, angle_pix_rad, pixel_scale, fwhm_pix,
    beta,
) -> None:  # fmt: skip
    """GalSim's full drawing (see :func:`render_galaxies`), one stamp per galaxy."""
    import galsim

    psf = galsim.Moffat(beta=beta, fwhm=fwhm_pix * pixel_scale)
    gsp = galsim.GSParams(folding_threshold=5e-3, maxk_threshold=1e-3)
    need = np.ceil(4.0 * hlr_arcsec / pixel_scale + 3.0 * fwhm_pix)
    halves = np.minimum(need, 120).astype(int)
    for i in range(len(x)):
        half = int(halves[i])
        x0, y0, fx, fy = _split(x[i : i + 1], y[i : i + 1], half)
        gal = galsim.Sersic(n=float(sersic_n[i]), half_light_radius=float(hlr_arcsec[i]))
        gal = gal.shear(q=float(axis_ratio[i]), beta=float(angle_pix_rad[i]) * galsim.radians)
        stamp = galsim.ImageD(2 * half + 1, 2 * half + 1, scale=pixel_scale)
        galsim.Convolve(gal, psf, gsparams=gsp).drawImage(
            image=stamp, offset=(float(fx[0]), float(fy[0]))
        )
        arr = np.maximum(stamp.array, 0)
        arr *= flux[i] / arr.sum()
        _add_stamps(image, arr[None].astype(np.float32), x0, y0)
