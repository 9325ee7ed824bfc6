"""Neighbour subtraction for forced aperture photometry (memba): the light that other reference
sources put into a source's aperture, net of what its annulus median already removed, solved
for jointly over each blend group. Pure numpy + numba, no database, no files.

Model: every reference source is the image PSF, a Moffat profile (Moffat 1969; the profile of
the nightly PSF fit, :mod:`surveydm.reduction.psf`) of the image FWHM whose index ``beta`` is
fitted to the curve of growth of the image's bright isolated stars
(:func:`moffat_beta_from_growth`), stretched per axis for a resolved source as its half-light
ellipse is convolved with the PSF in the Gaussian approximation (the aperture sizing of
:mod:`surveydm.reduction.forced_photometry`). For apertures i and sources j the coupling
``g_ij`` is the fraction of j's light inside aperture i minus aperture i's area times the mean
of j's profile over the annulus pixels that gave i's background. The background-subtracted
aperture sums are then ``S = G T`` for the total fluxes T; each connected blend group is solved
exactly (a simultaneous fit of fluxes with fixed positions and shapes, as forced photometry of
overlapping sources is done in SDSS's and HSC's forced measurement, Bosch et al. 2018, PASJ 70,
S5, sect. 4.9.4, here on apertures rather than pixels). The deblended aperture flux is
``S_i - sum_{j != i} g_ij T_j``; its variance is propagated through the solve, plus a model
error ``blend_model_error x`` the subtracted light, so a source swamped by a brighter neighbour
comes out with the low S/N it really has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep
from numba import njit
from scipy.optimize import minimize_scalar
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

GAUSS_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # FWHM / sigma
GAUSS_R50 = math.sqrt(2.0 * math.log(2.0))  # r50 / sigma of a 2-D Gaussian
#: Moffat index when too few stars measure it (a typical seeing-limited value).
DEFAULT_BETA = 3.0


@dataclass(frozen=True)
class Neighbours:
    """Result of :func:`subtract_neighbours` (arrays of length n, electrons).

    Attributes:
        light: neighbours' light in each aperture net of the annulus (subtract it).
        variance: variance added to each aperture flux by the subtraction, e-^2.
        group: label of each source's blend group (equal labels: solved together).
        beta: Moffat index of the model.
        unreliable: (n,) bool, a neighbour whose flux its own aperture cannot measure (e.g.
            saturated) couples to this aperture: what was subtracted is not its light.
    """

    light: np.ndarray
    variance: np.ndarray
    group: np.ndarray
    beta: float
    unreliable: np.ndarray


def moffat_alpha(fwhm_pix: float, beta: float) -> float:
    """Moffat scale radius (pixel) of a profile of FWHM ``fwhm_pix`` and index ``beta``."""
    return fwhm_pix / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def moffat_beta_from_growth(
    data: np.ndarray,
    bad: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    background: float,
    fwhm_pix: float,
    radii_fwhm: tuple[float, ...] = (1.5, 2.0, 2.5, 3.0),
    total_fwhm: float = 4.0,
) -> float:
    """Moffat ``beta`` whose encircled energy, ``1 - (1 + r^2 / alpha^2)^(1 - beta)`` with
    alpha set by the FWHM, matches the median curve of growth of the stars at (x, y) between
    ``radii_fwhm`` and ``total_fwhm`` FWHM (pixel-sampling matters little beyond 1.5 FWHM).

    Args:
        data: (ny, nx) image, e-; bad: (ny, nx) bool, stars with a bad pixel within the total
            radius are not used; x, y: (n,) bright isolated point sources; background: e-/pixel.

    Returns :data:`DEFAULT_BETA` with fewer than 3 usable stars.
    """
    total = total_fwhm * fwhm_pix
    if len(x) < 3:
        return DEFAULT_BETA
    nbad, _, _ = sep.sum_circle(bad.astype(np.float32), x, y, total, subpix=0)
    ok = nbad == 0
    if ok.sum() < 3:
        return DEFAULT_BETA
    xs, ys = np.asarray(x, float)[ok], np.asarray(y, float)[ok]
    tot, _, _ = sep.sum_circle(data, xs, ys, total, subpix=0)
    tot = tot - background * math.pi * total**2
    radii = np.asarray(radii_fwhm) * fwhm_pix
    grow = []
    for r in radii:
        f, _, _ = sep.sum_circle(data, xs, ys, r, subpix=0)
        grow.append(np.median((f - background * math.pi * r**2) / tot))
    grow = np.asarray(grow)

    def misfit(beta: float) -> float:
        alpha = moffat_alpha(fwhm_pix, beta)
        ee = 1.0 - (1.0 + (radii / alpha) ** 2) ** (1.0 - beta)
        ee_tot = 1.0 - (1.0 + (total / alpha) ** 2) ** (1.0 - beta)
        return float(np.sum((ee / ee_tot - grow) ** 2))

    res = minimize_scalar(misfit, bounds=(1.3, 12.0), method="bounded")
    return float(res.x) if np.isfinite(res.x) else DEFAULT_BETA


def subtract_neighbours(
    skip: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    ap_a: np.ndarray,
    ap_b: np.ndarray,
    theta: np.ndarray,
    a_in: np.ndarray,
    a_out: np.ndarray,
    src_a: np.ndarray,
    src_b: np.ndarray,
    flux: np.ndarray,
    variance: np.ndarray,
    fwhm_pix: float,
    beta: float,
    model_error: float = 0.05,
    min_coupling: float = 1e-4,
    unmeasured: np.ndarray | None = None,
) -> Neighbours:
    """Light of the other reference sources in each aperture (module doc).

    Args:
        skip: (ny, nx) bool, pixels left out of the annuli (as the background used them).
        x, y, ap_a, ap_b, theta, a_in, a_out: (n,) apertures and annuli (semi-major axes of
            the annulus; same axis ratio and angle), pixel and rad.
        src_a, src_b: (n,) half-light semi-axes of the sources, pixel (0: point source).
        flux, variance: (n,) background-subtracted aperture sums and their variances, e-.
        fwhm_pix, beta: the image PSF; model_error: relative error of the subtracted light;
        min_coupling: couplings below this fraction are neglected.
        unmeasured: (n,) bool, sources whose own aperture sum does not measure them
            (saturated): apertures they couple to are marked ``unreliable``.
    """
    n = len(x)
    light, extra = np.zeros(n), np.zeros(n)
    if n == 0:
        return Neighbours(light, extra, np.zeros(0, np.int64), beta, np.zeros(0, bool))
    alpha = moffat_alpha(fwhm_pix, beta)
    s_psf = fwhm_pix / GAUSS_FWHM
    scale_a = np.hypot(np.asarray(src_a, float) / GAUSS_R50, s_psf) / s_psf
    scale_b = np.hypot(np.asarray(src_b, float) / GAUSS_R50, s_psf) / s_psf
    pa, pb = alpha * scale_a, alpha * scale_b
    # pairs close enough for j's light to reach i's aperture or annulus
    reach = float(np.max(a_out) + 3.0 * np.max(pa) + 2.0 * fwhm_pix)
    pairs = cKDTree(np.column_stack([x, y])).query_pairs(reach, output_type="ndarray")
    pi = np.concatenate([np.arange(n), pairs[:, 0], pairs[:, 1]])
    pj = np.concatenate([np.arange(n), pairs[:, 1], pairs[:, 0]])
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    ratio = ap_b / ap_a
    g = _coupling_kernel(
        skip, pi, pj, x, y, ap_a, ap_b, cos_t, sin_t, ratio, a_in, a_out, pa, pb, beta,
        fwhm_pix,
    )  # fmt: skip
    diag = g[:n]
    off = (np.abs(g) >= min_coupling) & (pi != pj)
    pi, pj, g = pi[off], pj[off], g[off]
    unreliable = np.zeros(n, bool)
    if unmeasured is not None:
        unreliable[pi[np.asarray(unmeasured, bool)[pj]]] = True
    graph = coo_matrix((np.ones(len(pi)), (pi, pj)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    order = np.argsort(group[pi], kind="stable")
    pi, pj, g = pi[order], pj[order], g[order]
    starts = np.searchsorted(group[pi], np.arange(group.max() + 2))
    members = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[members], np.arange(group.max() + 2))
    for k in np.flatnonzero(np.diff(bounds) > 1):
        idx = members[bounds[k] : bounds[k + 1]]
        lo, hi = starts[k], starts[k + 1]
        _solve_group(idx, pi[lo:hi], pj[lo:hi], g[lo:hi], diag, flux, variance, light, extra)
    extra += (model_error * light) ** 2
    return Neighbours(light, extra, group, beta, unreliable)


def _solve_group(
    idx: np.ndarray,
    pi: np.ndarray,
    pj: np.ndarray,
    g: np.ndarray,
    diag: np.ndarray,
    flux: np.ndarray,
    variance: np.ndarray,
    light: np.ndarray,
    extra: np.ndarray,
) -> None:
    """Solve ``S = G T`` for one blend group; write each member's neighbour light and the
    variance the solve adds to its deblended flux ``g_ii T_i``."""
    pos = {int(v): k for k, v in enumerate(idx)}
    mat = np.diag(diag[idx])
    for a, b, v in zip(pi, pj, g, strict=True):
        mat[pos[int(a)], pos[int(b)]] = v
    try:
        inv = np.linalg.inv(mat)
    except np.linalg.LinAlgError:
        inv = np.linalg.pinv(mat)
    total = inv @ flux[idx]
    own = diag[idx] * total
    light[idx] = flux[idx] - own
    var = (diag[idx][:, None] * inv) ** 2 @ variance[idx]
    extra[idx] = np.maximum(var - variance[idx], 0.0)


@njit(cache=True, nogil=True)
def _moffat(dx, dy, cos_t, sin_t, pa, pb, beta):  # noqa: ANN001, ANN202
    """Unit-flux elliptical Moffat at offset (dx, dy), axes pa, pb (pixel), index beta."""
    u = (dx * cos_t + dy * sin_t) / pa
    v = (-dx * sin_t + dy * cos_t) / pb
    return (beta - 1.0) / (math.pi * pa * pb) * (1.0 + u * u + v * v) ** (-beta)


@njit(cache=True, nogil=True)
def _coupling_kernel(skip, pi, pj, x, y, ap_a, ap_b, cos_t, sin_t, ratio, a_in, a_out, pa, pb,  # noqa: ANN001, ANN202, PLR0913
                     beta, fwhm):  # fmt: skip
    """Per pair (i, j): fraction of j's Moffat in aperture i (3 x 3 samples per pixel, 9 x 9
    within 1.5 FWHM + 1 pixel of j) minus area_i x the mean of j's profile over i's unskipped
    annulus pixels (every other one in x and y); 0 for pairs too far apart to matter (j's
    centre more than 3 Moffat radii + 2 FWHM outside i's annulus: a coupling well below 1e-4
    for beta >= 2)."""
    ny, nx = skip.shape
    out = np.zeros(pi.shape[0])
    for k in range(pi.shape[0]):
        i, j = pi[k], pj[k]
        dxij, dyij = x[j] - x[i], y[j] - y[i]
        dist = math.sqrt(dxij * dxij + dyij * dyij)
        if i != j and dist > a_out[i] + 3.0 * pa[j] + 2.0 * fwhm:
            continue
        ct, st = cos_t[j], sin_t[j]
        # the aperture integral: analytic for a source in its own aperture when the aperture
        # is the profile's ellipse scaled (always for point sources)
        acc = 0.0
        r = ap_a[i]
        ua, ub = ap_a[i] / pa[j], ap_b[i] / pb[j]
        analytic = i == j and abs(ua - ub) <= 1e-6 * ua
        if analytic:
            acc = 1.0 - (1.0 + ua * ua) ** (1.0 - beta)
            r = -1.0  # no loop below
        for yy in range(int(math.floor(y[i] - r)), int(math.ceil(y[i] + r)) + 1):
            for xx in range(int(math.floor(x[i] - r)), int(math.ceil(x[i] + r)) + 1):
                near = (xx - x[j]) ** 2 + (yy - y[j]) ** 2 < (1.5 * fwhm + 1.0) ** 2
                ns = 9 if near else 3
                step = 1.0 / ns
                for sy in range(ns):
                    py = yy - 0.5 + (sy + 0.5) * step
                    for sx in range(ns):
                        px = xx - 0.5 + (sx + 0.5) * step
                        ddx, ddy = px - x[i], py - y[i]
                        u = (ddx * cos_t[i] + ddy * sin_t[i]) / ap_a[i]
                        v = (-ddx * sin_t[i] + ddy * cos_t[i]) / ap_b[i]
                        if u * u + v * v <= 1.0:
                            w = _moffat(px - x[j], py - y[j], ct, st, pa[j], pb[j], beta)
                            acc += w * step * step
        out[k] = acc
        # the annulus mean
        ro = a_out[i] + 1.0
        lo2, hi2 = a_in[i] ** 2, a_out[i] ** 2
        s, c = 0.0, 0
        # every other pixel in x and y: a mean of a smooth wing, and 4x fewer evaluations
        for yy in range(max(int(y[i] - ro), 0), min(int(y[i] + ro) + 2, ny), 2):
            for xx in range(max(int(x[i] - ro), 0), min(int(x[i] + ro) + 2, nx), 2):
                if skip[yy, xx]:
                    continue
                ddx, ddy = xx - x[i], yy - y[i]
                u = ddx * cos_t[i] + ddy * sin_t[i]
                v = (-ddx * sin_t[i] + ddy * cos_t[i]) / ratio[i]
                rr = u * u + v * v
                if rr >= lo2 and rr <= hi2:
                    s += _moffat(xx - x[j], yy - y[j], ct, st, pa[j], pb[j], beta)
                    c += 1
        if c > 0:
            out[k] -= math.pi * ap_a[i] * ap_b[i] * s / c
    return out
