"""Sums and windowed centroids over one object's pixels, its neighbours masked through the
segmentation map (SExtractor's measurement of deblended objects, Bertin & Arnouts 1996 sect. 10;
SExtractor 2.25 ``photom.c: computeautoflux`` and ``winpos.c: compute_winpos``).

A pixel belongs to the measurement of object ``id`` when it is inside the image, not in the
measurement mask and unassigned or assigned to ``id`` in the segmentation map. Any other pixel
(a neighbour's or a masked one) is replaced by the value at its mirror point through the
object's centre, ``(2 x - ix, 2 y - iy)``, and counts 0 when that is not measured either:
SExtractor's default ``MASK_TYPE CORRECT``. SExtractor takes the pixel nearest to the mirror
point; here the value is interpolated bilinearly between its four pixels when they all belong
(the nearest pixel otherwise), as the nearest pixel can be 0.5 px closer to the centre: on a
3 px FWHM star with a masked column 1.7 px from its centre the nearest-pixel mirror reads the
Kron flux 5 % high. sep's sums instead rescale the flux by the unmasked area, which inflates
the Kron flux of an object whose neighbour covers part of its aperture.

Coordinates are 0-based pixels (pixel centres at integers); the image ``sub`` is background
subtracted (e-), ``var`` the per-pixel variance (e-^2), ``seg`` the int32 map of sep.extract
(object i labelled i + 1, 0 for sky) and ``bad`` a bool measurement mask (may be all False).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "APER_HASMASKED",
    "APER_TRUNC",
    "MAX_LOST",
    "WINPOS_FAC",
    "WINPOS_NITERMAX",
    "WINPOS_NSIG",
    "WINPOS_OVERSAMP",
    "ellipse_sums",
    "windowed_positions",
]

#: sep's aperture flags, same bits in the catalog ``flags``.
APER_TRUNC = 16
APER_HASMASKED = 32

#: SExtractor's windowed-centroid constants (``define.h``): radius of the window in sigma,
#: boundary over-sampling, iteration limit, step factor and the convergence step (pixels).
WINPOS_NSIG = 4.0
WINPOS_OVERSAMP = 11
WINPOS_NITERMAX = 16
WINPOS_FAC = 2.0
WINPOS_STEPMIN = 1e-4
#: Largest fraction of a window's weight on pixels without a value (``windowed_positions``).
MAX_LOST = 0.25


@njit(cache=True)
def _belongs(seg, bad, ix, iy, oid):
    """Whether pixel (ix, iy) is measured for object ``oid`` (inside, unmasked, own or sky)."""
    ny, nx = seg.shape
    if ix < 0 or iy < 0 or ix >= nx or iy >= ny:
        return False
    if bad[iy, ix]:
        return False
    s = seg[iy, ix]
    return s == 0 or s == oid


@njit(cache=True)
def _mirror(sub, var, seg, bad, mx, my, oid):
    """(value, variance, ok) at the point (mx, my): bilinear between its four pixels when they
    all belong to object ``oid``, else the nearest pixel if it belongs, else not ok."""
    jx, jy = int(math.floor(mx)), int(math.floor(my))
    if (
        _belongs(seg, bad, jx, jy, oid)
        and _belongs(seg, bad, jx + 1, jy, oid)
        and _belongs(seg, bad, jx, jy + 1, oid)
        and _belongs(seg, bad, jx + 1, jy + 1, oid)
    ):
        fx, fy = mx - jx, my - jy
        w00, w10 = (1.0 - fx) * (1.0 - fy), fx * (1.0 - fy)
        w01, w11 = (1.0 - fx) * fy, fx * fy
        pix = (
            w00 * sub[jy, jx] + w10 * sub[jy, jx + 1]
            + w01 * sub[jy + 1, jx] + w11 * sub[jy + 1, jx + 1]
        )  # fmt: skip
        v = (
            w00 * var[jy, jx] + w10 * var[jy, jx + 1]
            + w01 * var[jy + 1, jx] + w11 * var[jy + 1, jx + 1]
        )  # fmt: skip
        return pix, v, True
    jx, jy = int(math.floor(mx + 0.5)), int(math.floor(my + 0.5))
    if _belongs(seg, bad, jx, jy, oid):
        return sub[jy, jx], var[jy, jx], True
    return 0.0, 0.0, False


@njit(cache=True)
def _value(sub, var, seg, bad, ix, iy, oid, x, y):
    """(value, variance, masked, ok) of pixel (ix, iy) for object ``oid`` centred at (x, y):
    the pixel itself, else its mirror point through the centre (:func:`_mirror`), else 0 (not
    ``ok``); ``masked`` is True when the pixel is in the measurement mask (not for a
    neighbour)."""
    ny, nx = seg.shape
    masked = ix >= 0 and iy >= 0 and ix < nx and iy < ny and bad[iy, ix]
    if _belongs(seg, bad, ix, iy, oid):
        return sub[iy, ix], var[iy, ix], masked, True
    pix, v, ok = _mirror(sub, var, seg, bad, 2.0 * x - ix, 2.0 * y - iy, oid)
    return pix, v, masked, ok


@njit(cache=True)
def _ellipse_sum(sub, var, seg, bad, x, y, cxx, cyy, cxy, scale, oid, subpix):
    """Sum, variance and flags within ``cxx dx^2 + cyy dy^2 + cxy dx dy <= scale^2`` around
    (x, y); pixels cut by the boundary by ``subpix x subpix`` sub-pixels."""
    ny, nx = sub.shape
    r2lim = scale * scale
    det = 4.0 * cxx * cyy - cxy * cxy
    if det <= 0.0 or scale <= 0.0:
        return 0.0, 0.0, 0
    dxlim = scale * math.sqrt(4.0 * cyy / det)
    dylim = scale * math.sqrt(4.0 * cxx / det)
    xmin, xmax = int(math.floor(x - dxlim)), int(math.ceil(x + dxlim))
    ymin, ymax = int(math.floor(y - dylim)), int(math.ceil(y + dylim))
    flag = 0
    if xmin < 0 or ymin < 0 or xmax >= nx or ymax >= ny:
        flag |= APER_TRUNC
    # a pixel is wholly inside / outside when its centre is inside (outside) the ellipse by
    # more than half its diagonal, in the ellipse's metric (largest eigenvalue of C)
    lam = 0.5 * (cxx + cyy + math.sqrt((cxx - cyy) ** 2 + cxy * cxy))
    rmargin = math.sqrt(lam) * 0.7072
    rin = scale - rmargin
    rin2 = rin * rin if rin > 0 else -1.0
    rout2 = (scale + rmargin) ** 2
    step = 1.0 / subpix
    off = 0.5 * (step - 1.0)
    tv = 0.0
    sigtv = 0.0
    for iy in range(ymin, ymax + 1):
        for ix in range(xmin, xmax + 1):
            dx = ix - x
            dy = iy - y
            r2 = cxx * dx * dx + cyy * dy * dy + cxy * dx * dy
            if r2 >= rout2:
                continue
            if r2 <= rin2:
                overlap = 1.0
            else:
                overlap = 0.0
                for sy in range(subpix):
                    ddy = dy + off + sy * step
                    for sx in range(subpix):
                        ddx = dx + off + sx * step
                        if cxx * ddx * ddx + cyy * ddy * ddy + cxy * ddx * ddy <= r2lim:
                            overlap += step * step
                if overlap == 0.0:
                    continue
            pix, v, masked, _ = _value(sub, var, seg, bad, ix, iy, oid, x, y)
            if masked:
                flag |= APER_HASMASKED
            tv += overlap * pix
            sigtv += overlap * v
    return tv, sigtv, flag


@njit(cache=True)
def _ellipse_sums(sub, var, seg, bad, x, y, cxx, cyy, cxy, scale, ids, subpix):
    n = len(x)
    flux = np.zeros(n)
    fvar = np.zeros(n)
    flags = np.zeros(n, np.int32)
    for i in range(n):
        flux[i], fvar[i], flags[i] = _ellipse_sum(
            sub, var, seg, bad, x[i], y[i], cxx[i], cyy[i], cxy[i], scale[i], ids[i], subpix
        )
    return flux, fvar, flags


def ellipse_sums(
    sub: np.ndarray,
    var: np.ndarray,
    seg: np.ndarray,
    bad: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
    scale: np.ndarray,
    ids: np.ndarray,
    subpix: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flux within the ellipses of semi-axes ``scale a, scale b`` (n,) at (x, y), each
    object's neighbours and masked pixels replaced by their mirror images (module docstring).

    Args:
        sub, var: (ny, nx) background-subtracted image (e-) and per-pixel variance (e-^2).
        seg: (ny, nx) int32 segmentation map; bad: (ny, nx) bool measurement mask.
        x, y, a, b, theta, scale: (n,) centres (pixels), semi-axes (pixels), position angle
            (rad from +x towards +y) and the scale of the ellipse in units of a, b.
        ids: (n,) segmentation label of each object.
        subpix: sub-pixels per side for the pixels cut by the ellipse.

    Returns:
        (flux, variance, flags) (n,): e-, e-^2 (without the source's Poisson term), int32
        ``APER_TRUNC`` (the ellipse leaves the image) | ``APER_HASMASKED`` (a pixel of the
        measurement mask inside; a neighbour's pixels do not set it).
    """
    cos, sin = np.cos(theta), np.sin(theta)
    a2, b2 = a * a, b * b
    cxx = cos**2 / a2 + sin**2 / b2
    cyy = sin**2 / a2 + cos**2 / b2
    cxy = 2.0 * cos * sin * (1.0 / a2 - 1.0 / b2)
    return _ellipse_sums(
        sub, var, seg, bad, *(np.ascontiguousarray(v, np.float64) for v in (x, y, cxx, cyy, cxy)),
        np.ascontiguousarray(scale, np.float64), np.ascontiguousarray(ids, np.int64), int(subpix),
    )  # fmt: skip


@njit(cache=True)
def _winpos(sub, var, seg, bad, x0, y0, sig, oid, max_lost):
    """SExtractor's iterative Gaussian-windowed centroid of one object: (x, y, ok) (``var``
    any (ny, nx) array: only the values are used). Not ok when the windowed flux is not
    positive or more than ``max_lost`` of the window's weight fell on pixels without a value
    (masked or off the image, and so their mirror points)."""
    inv2s2 = 1.0 / (2.0 * sig * sig)
    raper = WINPOS_NSIG * sig
    raper2 = raper * raper
    rint = raper - 0.75
    rint2 = rint * rint if rint > 0 else 0.0
    rext2 = (raper + 0.75) ** 2
    step = 1.0 / WINPOS_OVERSAMP
    off = 0.5 * (step - 1.0)
    mx, my = x0, y0
    for _ in range(WINPOS_NITERMAX):
        tv = 0.0
        dxpos = 0.0
        dypos = 0.0
        wsum = 0.0
        wlost = 0.0
        for iy in range(int(my - raper) - 1, int(my + raper) + 2):
            for ix in range(int(mx - raper) - 1, int(mx + raper) + 2):
                dx = ix - mx
                dy = iy - my
                r2 = dx * dx + dy * dy
                if r2 >= rext2:
                    continue
                if r2 > rint2:
                    area = 0.0
                    for sy in range(WINPOS_OVERSAMP):
                        ddy = dy + off + sy * step
                        for sx in range(WINPOS_OVERSAMP):
                            ddx = dx + off + sx * step
                            if ddx * ddx + ddy * ddy < raper2:
                                area += step * step
                else:
                    area = 1.0
                if area == 0.0:
                    continue
                pix, _, _, ok = _value(sub, var, seg, bad, ix, iy, oid, mx, my)
                g = area * math.exp(-r2 * inv2s2)
                wsum += g
                if not ok:
                    wlost += g
                w = g * pix
                tv += w
                dxpos += w * dx
                dypos += w * dy
        if tv <= 0.0 or wlost > max_lost * wsum:
            return x0, y0, False
        dxpos /= tv
        dypos /= tv
        mx += WINPOS_FAC * dxpos
        my += WINPOS_FAC * dypos
        if dxpos * dxpos + dypos * dypos < WINPOS_STEPMIN * WINPOS_STEPMIN:
            break
    return mx, my, True


@njit(cache=True)
def _winpos_all(sub, seg, bad, x0, y0, sig, ids, max_lost):

    n = len(x0)
    x = np.empty(n)
    y = np.empty(n)
    ok = np.empty(n, np.bool_)
    for i in range(n):
        x[i], y[i], ok[i] = _winpos(sub, sub, seg, bad, x0[i], y0[i], sig[i], ids[i], max_lost)
    return x, y, ok


def windowed_positions(
    sub: np.ndarray,
    seg: np.ndarray,
    bad: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    sig: np.ndarray,
    ids: np.ndarray,
    max_lost: float = MAX_LOST,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian-windowed centroids (SExtractor ``XWIN_IMAGE``, ``YWIN_IMAGE``; manual sect.
    "Windowed positional parameters") with each object's neighbours and masked pixels replaced
    by their mirror images (module docstring).

    Iterates ``x += 2 sum(w I dx) / sum(w I)`` with ``w = exp(-r^2 / 2 sig^2)`` within
    ``r < 4 sig`` (boundary pixels over-sampled 11 x 11) from (x0, y0) until the step is below
    1e-4 pixel, at most 16 times.

    Args:
        sub: (ny, nx) background-subtracted image; seg: (ny, nx) int32 segmentation map;
            bad: (ny, nx) bool measurement mask.
        x0, y0: (n,) starting positions (isophotal barycentres), 0-based pixels.
        sig: (n,) window sigma, pixels; ids: (n,) segmentation label of each object.
        max_lost: largest fraction of the window's Gaussian weight on pixels with no value
            (masked or off the image, and so their mirror points: a saturated core, a source
            on the masked CCD edge), beyond which the centroid is not trusted.

    Returns:
        (x, y, ok) (n,): the centroids (0-based pixels; the start where not ok) and whether
        the windowed flux stayed positive and the window was measured (``max_lost``).
    """
    return _winpos_all(
        sub, seg, bad, *(np.ascontiguousarray(v, np.float64) for v in (x0, y0, sig)),
        np.ascontiguousarray(ids, np.int64), float(max_lost),
    )  # fmt: skip
