"""Compiled (numba) pixel loops of the co-add: the warp of an input onto the tile grid, the
PSF-matching convolution of a warped input, the per-pixel rejection against the median frame,
the growing of rejected regions and the weighted mean, each one pass over the tile's pixels.

Every loop here replaces several whole-array numpy steps (each of which reads and writes the
tile once and allocates a temporary) by one pass that keeps its values in registers; the
arithmetic is the same. Single-threaded on purpose (a pipeline worker co-adds one tile per
core); compiled on first use and cached on disk (``cache=True``), like
:mod:`surveydm.reduction.kernels`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def _coarse_index(n: int, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel 0..n-1: the coarse-grid cell it falls in and its fraction in it."""
    idx = np.zeros(n, np.int64)
    frac = np.zeros(n, np.float64)
    k = 0
    last = grid.size - 1
    for i in range(n):
        while k < last - 1 and i > grid[k + 1]:
            k += 1
        if last == 0:
            idx[i], frac[i] = 0, 0.0
        else:
            idx[i] = k
            frac[i] = (i - grid[k]) / (grid[k + 1] - grid[k])
    return idx, frac


@njit(**_JIT)
def prepare_input(
    image: np.ndarray,
    weight: np.ndarray,
    total_weight: np.ndarray,
    mask: np.ndarray,
    has_mask: bool,
    out_image: np.ndarray,
    out_variance: np.ndarray,
    out_total: np.ndarray,
) -> None:
    """The input as the warp reads it: image NaN, variances inf on bad pixels (weight or total
    weight <= 0, mask nonzero, image not finite), else image, 1/weight, 1/total_weight."""
    ny, nx = image.shape
    for j in range(ny):
        for i in range(nx):
            x, w, wt = image[j, i], weight[j, i], total_weight[j, i]
            bad = not (np.isfinite(x) and w > 0 and wt > 0) or (has_mask and mask[j, i] != 0)
            out_image[j, i] = np.nan if bad else x
            out_variance[j, i] = np.inf if bad else np.float32(1.0) / w
            out_total[j, i] = np.inf if bad else np.float32(1.0) / wt


@njit(**_JIT)
def warp_bilinear(
    image: np.ndarray,
    variance: np.ndarray,
    total: np.ndarray,
    grid_y: np.ndarray,
    grid_x: np.ndarray,
    coarse_y: np.ndarray,
    coarse_x: np.ndarray,
    flux_mul: float,
    out_image: np.ndarray,
    out_weight: np.ndarray,
    out_variance: np.ndarray,
) -> None:
    """Bilinear resampling of an image and its variances (:func:`prepare_input`) onto a tile.

    The input (y, x) of every tile pixel is the bilinear interpolation of ``coarse_y``,
    ``coarse_x`` (input coordinates computed exactly at tile rows ``grid_y`` and columns
    ``grid_x``). A tile pixel gets no data (image NaN, weight 0, variance inf) when it falls
    off the input or when any of its four input pixels is bad (NaN image); otherwise
    image = interpolated image * ``flux_mul``, weight = 1 / (interpolated variance *
    flux_mul**2), variance = interpolated total variance * flux_mul**2 (flux_mul = pixel-area
    ratio * flux scale).
    """
    ny, nx = out_image.shape
    my, mx = image.shape
    iy, fy_row = _coarse_index(ny, grid_y)
    ix, fx_col = _coarse_index(nx, grid_x)
    nxg = grid_x.size
    row_y = np.empty(nxg, np.float64)
    row_x = np.empty(nxg, np.float64)
    mul = np.float32(flux_mul)
    mul2 = np.float32(flux_mul * flux_mul)
    for j in range(ny):
        a, t = iy[j], fy_row[j]
        b = min(a + 1, grid_y.size - 1)
        for k in range(nxg):
            row_y[k] = coarse_y[a, k] + (coarse_y[b, k] - coarse_y[a, k]) * t
            row_x[k] = coarse_x[a, k] + (coarse_x[b, k] - coarse_x[a, k]) * t
        for i in range(nx):
            c, u = ix[i], fx_col[i]
            d = min(c + 1, nxg - 1)
            y = row_y[c] + (row_y[d] - row_y[c]) * u
            x = row_x[c] + (row_x[d] - row_x[c]) * u
            if not (y >= 0.0 and y <= my - 1 and x >= 0.0 and x <= mx - 1):
                out_image[j, i] = np.nan
                out_weight[j, i] = 0.0
                out_variance[j, i] = np.inf
                continue
            y0 = min(int(y), my - 2)
            x0 = min(int(x), mx - 2)
            ty = np.float32(y - y0)
            tx = np.float32(x - x0)
            w00 = (np.float32(1.0) - ty) * (np.float32(1.0) - tx)
            w01 = (np.float32(1.0) - ty) * tx
            w10 = ty * (np.float32(1.0) - tx)
            w11 = ty * tx
            s = (
                w00 * image[y0, x0]
                + w01 * image[y0, x0 + 1]
                + w10 * image[y0 + 1, x0]
                + w11 * image[y0 + 1, x0 + 1]
            )
            v = (
                w00 * variance[y0, x0]
                + w01 * variance[y0, x0 + 1]
                + w10 * variance[y0 + 1, x0]
                + w11 * variance[y0 + 1, x0 + 1]
            )
            vt = (
                w00 * total[y0, x0]
                + w01 * total[y0, x0 + 1]
                + w10 * total[y0 + 1, x0]
                + w11 * total[y0 + 1, x0 + 1]
            )
            if np.isfinite(s) and np.isfinite(v) and np.isfinite(vt) and v > 0:
                out_image[j, i] = s * mul
                out_weight[j, i] = np.float32(1.0) / (v * mul2)
                out_variance[j, i] = vt * mul2
            else:
                out_image[j, i] = np.nan
                out_weight[j, i] = 0.0
                out_variance[j, i] = np.inf


@njit(**_JIT)
def matched_convolution(
    image: np.ndarray,
    weight: np.ndarray,
    variance: np.ndarray,
    kernel: np.ndarray,
    out_image: np.ndarray,
    out_variance: np.ndarray,
    out_missing: np.ndarray,
    tmp: np.ndarray,
    min_kernel_weight: float,
) -> None:
    """Normalised convolution of a warped input with a separable kernel (1-D ``kernel``, sum
    1, odd length), and the variance of the result.

    Pixels with weight <= 0 or non-finite image are left out (normalised convolution,
    Knutsson & Westin 1993): out = sum k v x / sum k v, variance = sum k^2 v var /
    (sum k v)^2 for independent pixels; ``out_missing`` = 1 - sum k v, the part of the kernel
    that fell on masked pixels or off the input (there the matched copy does not match a
    steep profile: :func:`reject_pixels` allows for it); where the kept kernel weight is below
    ``min_kernel_weight`` the output is NaN (not compared). ``tmp`` is (6, ny, nx) float32
    scratch. Branch-free loops over rows with the kernel taps outside (vectorised).
    """
    ny, nx = image.shape
    h = kernel.size // 2
    k2 = kernel * kernel
    xv, vv, qv = tmp[0], tmp[1], tmp[2]
    hx, hv, hq = tmp[3], tmp[4], tmp[5]
    for j in range(ny):
        for i in range(nx):
            x = image[j, i]
            ok = weight[j, i] > 0 and np.isfinite(x)
            xv[j, i] = x if ok else 0.0
            vv[j, i] = 1.0 if ok else 0.0
            qv[j, i] = variance[j, i] if ok else 0.0
    for j in range(ny):
        for i in range(nx):
            hx[j, i] = 0.0
            hv[j, i] = 0.0
            hq[j, i] = 0.0
        for t in range(-h, h + 1):
            c, c2 = kernel[h + t], k2[h + t]
            for i in range(max(0, -t), min(nx, nx - t)):
                hx[j, i] += c * xv[j, i + t]
                hv[j, i] += c * vv[j, i + t]
                hq[j, i] += c2 * qv[j, i + t]
    for j in range(ny):
        for i in range(nx):
            xv[j, i] = 0.0
            vv[j, i] = 0.0
            qv[j, i] = 0.0
        for t in range(max(-h, -j), min(h, ny - 1 - j) + 1):
            c, c2 = kernel[h + t], k2[h + t]
            for i in range(nx):
                xv[j, i] += c * hx[j + t, i]
                vv[j, i] += c * hv[j + t, i]
                qv[j, i] += c2 * hq[j + t, i]
        for i in range(nx):
            sv = vv[j, i]
            out_missing[j, i] = np.float32(1.0) - sv
            if sv >= min_kernel_weight:
                out_image[j, i] = xv[j, i] / sv
                out_variance[j, i] = qv[j, i] / (sv * sv)
            else:
                out_image[j, i] = np.nan
                out_variance[j, i] = np.inf


@njit(**_JIT)
def _sort_small(vals: np.ndarray, n: int) -> None:
    """Insertion sort of vals[:n] in place (n is the number of inputs: small)."""
    for a in range(1, n):
        v = vals[a]
        b = a - 1
        while b >= 0 and vals[b] > v:
            vals[b + 1] = vals[b]
            b -= 1
        vals[b + 1] = v


@njit(**_JIT)
def median_frame(
    matched: np.ndarray,
    matched_variance: np.ndarray,
    missing: np.ndarray,
    min_inputs: int,
    out_median: np.ndarray,
    out_variance: np.ndarray,
    out_missing: np.ndarray,
) -> None:
    """Median of PSF-matched stacks ``matched`` (n, ny, nx; NaN: not compared) where at least
    ``min_inputs`` inputs are compared (NaN elsewhere), its variance pi/2 V / m (V: mean
    variance of the m compared inputs; the median of m normal values), and the largest
    truncated kernel part (``missing``) of the compared inputs (a truncated copy biases the
    median near input edges and masks)."""
    n, ny, nx = matched.shape
    vals = np.empty(n, np.float32)
    for j in range(ny):
        for i in range(nx):
            m = 0
            vsum = np.float32(0.0)
            miss = np.float32(0.0)
            for k in range(n):
                x = matched[k, j, i]
                if np.isfinite(x):
                    vals[m] = x
                    vsum += matched_variance[k, j, i]
                    miss = max(miss, missing[k, j, i])
                    m += 1
            out_missing[j, i] = miss
            if m < min_inputs:
                out_median[j, i] = np.nan
                out_variance[j, i] = np.inf
                continue
            _sort_small(vals, m)
            out_median[j, i] = np.float32(0.5) * (vals[(m - 1) // 2] + vals[m // 2])
            out_variance[j, i] = np.float32(np.pi / 2) * vsum / m / m


@njit(**_JIT)
def _at(a: np.ndarray, j: int, i: int, default: float) -> float:
    """a[j, i], ``default`` off the array or where not finite."""
    if j < 0 or i < 0 or j >= a.shape[0] or i >= a.shape[1]:
        return default
    v = a[j, i]
    return v if np.isfinite(v) else default


@njit(**_JIT)
def reject_pixels(
    matched: np.ndarray,
    matched_variance: np.ndarray,
    missing: np.ndarray,
    median: np.ndarray,
    median_variance: np.ndarray,
    median_missing: np.ndarray,
    nsigma: float,
    ampfrac: float,
    width_tol: float,
    shift_tol: float,
    out: np.ndarray,
) -> None:
    """Flag the inputs deviating from the median frame at each pixel of PSF-matched stacks.

    ``matched``: (n, ny, nx) PSF-matched fluxes (NaN: not compared), ``matched_variance``
    their variances; ``median``, ``median_variance``: :func:`median_frame`. Input i is flagged
    in ``out`` (n, ny, nx) bool where

        |x_i - M| > nsigma sqrt(var_i + var_M + (2 (missing_i + missing_M) M)^2)
                    + ampfrac |M| + width_tol / 2 |lap M| + shift_tol |grad M|,

    the noise term with the part ``missing`` of the matching kernel that was truncated (and
    the largest of the median's inputs, ``median_missing``), and
    the systematic terms added linearly, as upper bounds of the residual PSF mismatch (the
    approach of ``driz_cr``, Fruchter & Hook 2002, Koekemoer et al. 2003: a residual
    ``scale x derivative`` allowed on top of the noise): a PSF-variance error delta leaves
    delta / 2 lap M (first order), a position error s leaves s . grad M, so the allowance is
    large on the cores and flanks of stars only where the model predicts a mismatch, not a
    fixed fraction of the flux everywhere. The derivatives are central differences of M.
    ``matched`` is overwritten with |x_i - M| (0 where not compared).
    """
    n, ny, nx = matched.shape
    for j in range(ny):
        for i in range(nx):
            med = median[j, i]
            if not np.isfinite(med):
                for k in range(n):
                    matched[k, j, i] = 0.0
                continue
            xl, xr = _at(median, j, i - 1, med), _at(median, j, i + 1, med)
            yd, yu = _at(median, j - 1, i, med), _at(median, j + 1, i, med)
            lap = abs(xl + xr + yd + yu - 4 * med)
            grad = 0.5 * np.sqrt((xr - xl) ** 2 + (yu - yd) ** 2)
            syst = ampfrac * abs(med) + 0.5 * width_tol * lap + shift_tol * grad
            base = median_variance[j, i]
            for k in range(n):
                x = matched[k, j, i]
                matched[k, j, i] = 0.0
                if np.isfinite(x):
                    d = abs(x - med)
                    matched[k, j, i] = d
                    edge = np.float32(2.0) * (missing[k, j, i] + median_missing[j, i]) * med
                    noise = np.sqrt(matched_variance[k, j, i] + base + edge * edge)
                    if d > nsigma * noise + syst:
                        out[k, j, i] = True


@njit(**_JIT)
def localise(
    flagged: np.ndarray, deviation: np.ndarray, half: int, frac: float, out: np.ndarray
) -> None:
    """Keep the flagged pixels (2-D bool) whose ``deviation`` reaches ``frac`` of the largest
    deviation of the flagged pixels within ``half`` pixels: a PSF-matched copy spreads an
    artefact over the matching kernel, and only its core is the artefact in the unconvolved
    input (a cosmic ray 4 pixels from a star must not take the star's core with it)."""
    ny, nx = flagged.shape
    for j in range(ny):
        for i in range(nx):
            if not flagged[j, i]:
                continue
            peak = deviation[j, i]
            for p in range(max(j - half, 0), min(j + half + 1, ny)):
                for q in range(max(i - half, 0), min(i + half + 1, nx)):
                    if flagged[p, q] and deviation[p, q] > peak:
                        peak = deviation[p, q]
            out[j, i] = deviation[j, i] >= frac * peak


@njit(**_JIT)
def _seeing_prediction(
    images: np.ndarray,
    variances: np.ndarray,
    flagged: np.ndarray,
    k: int,
    j: int,
    i: int,
    psf_var: np.ndarray,
    min_snr: float,
) -> float:
    """Input k's value at (j, i) predicted from the other unflagged inputs and the PSF
    variances s_q^2 (``psf_var``, pixels^2): for a Gaussian star of any flux and offset r in
    Gaussian seeing, v = F exp(-r^2 / 2 s^2) / (2 pi s^2), so ln(v s^2) = a + b / s^2 exactly;
    a, b are fitted by least squares on the others and the line is evaluated at s_k^2.
    NaN off sources (an other input below ``min_snr`` sigma), with fewer than 2 others or
    equal PSF variances."""
    m = 0
    su = sy = suu = suy = 0.0
    for q in range(images.shape[0]):
        v = images[q, j, i]
        if q == k or not np.isfinite(v) or flagged[q, j, i]:
            continue
        if not (v > 0 and v > min_snr * np.sqrt(variances[q, j, i])):
            return np.nan
        u = 1.0 / psf_var[q]
        y = np.log(v * psf_var[q])
        su += u
        sy += y
        suu += u * u
        suy += u * y
        m += 1
    det = m * suu - su * su
    if m < 2 or not det > 1e-12 * suu * m:
        return np.nan
    b = (m * suy - su * sy) / det
    a = (sy - b * su) / m
    return np.exp(a + b / psf_var[k]) / psf_var[k]


@njit(**_JIT)
def _outside(
    images: np.ndarray,
    variances: np.ndarray,
    flagged: np.ndarray,
    k: int,
    margin: float,
    j: int,
    i: int,
    psf_var: np.ndarray,
    tol: float,
    min_snr: float,
) -> bool:
    """Input k's value x at (j, i) is not explained by the other unflagged inputs: on a
    source, x differs from the seeing prediction (:func:`_seeing_prediction`) by more than
    ``margin`` times its noise plus ``tol`` times the prediction (the PSF widths' errors: the
    bilinear warp's phase-dependent smoothing, the measured FWHM); elsewhere x lies outside
    the others' range widened by ``margin`` times its noise. True where no other input is
    unflagged."""
    x = images[k, j, i]
    noise = margin * np.sqrt(variances[k, j, i])
    pred = _seeing_prediction(images, variances, flagged, k, j, i, psf_var, min_snr)
    if np.isfinite(pred):
        return abs(x - pred) > noise + tol * pred
    lo, hi = np.inf, -np.inf
    for q in range(images.shape[0]):
        v = images[q, j, i]
        if q != k and np.isfinite(v) and not flagged[q, j, i]:
            lo = min(lo, v)
            hi = max(hi, v)
    return x > hi + noise or x < lo - noise


@njit(**_JIT)
def outside_others(
    images: np.ndarray,
    variances: np.ndarray,
    flagged: np.ndarray,
    k: int,
    margin: float,
    mask: np.ndarray,
    psf_var: np.ndarray,
    tol: float,
    min_snr: float,
) -> None:
    """Clear the pixels of ``mask`` (2-D bool, input ``k``'s candidates) whose unconvolved
    value of input k is explained by the other unflagged inputs (``flagged``: (n, ny, nx)
    bool) and their seeing (:func:`_outside`): a star's core in a different seeing is, the
    pixels of a cosmic ray or a trail are not. This keeps the rejection to the artefact's own
    pixels instead of the matching kernel's footprint."""
    n, ny, nx = images.shape
    for j in range(ny):
        for i in range(nx):
            if mask[j, i]:
                mask[j, i] = _outside(
                    images, variances, flagged, k, margin, j, i, psf_var, tol, min_snr
                )


@njit(**_JIT)
def grow_mask(
    mask: np.ndarray,
    valid: np.ndarray,
    radius: int,
    images: np.ndarray,
    variances: np.ndarray,
    flagged: np.ndarray,
    k: int,
    margin: float,
    out: np.ndarray,
    psf_var: np.ndarray,
    tol: float,
    min_snr: float,
) -> None:
    """out = mask dilated by a (2 radius + 1)^2 box within ``valid`` (2-D bool arrays), the
    faint wings of artefacts; on a source only into the neighbours not explained by the other
    inputs and their seeing (:func:`_grows`; cosmic rays and trails add flux): a star's core
    next to a cosmic ray is kept. Cost proportional to the flagged pixels."""
    seeing = (psf_var, tol, min_snr)
    ny, nx = mask.shape
    for j in range(ny):
        for i in range(nx):
            if not mask[j, i]:
                continue
            out[j, i] = valid[j, i]
            for p in range(max(j - radius, 0), min(j + radius + 1, ny)):
                for q in range(max(i - radius, 0), min(i + radius + 1, nx)):
                    if not valid[p, q] or out[p, q] or mask[p, q]:
                        continue
                    out[p, q] = _grows(images, variances, flagged, k, margin, p, q, *seeing)


@njit(**_JIT)
def _grows(
    images: np.ndarray,
    variances: np.ndarray,
    flagged: np.ndarray,
    k: int,
    margin: float,
    j: int,
    i: int,
    psf_var: np.ndarray,
    tol: float,
    min_snr: float,
) -> bool:
    """A rejected region of input k grows into (j, i): always off sources; on a source only
    where the value exceeds both the other unflagged inputs' values and the seeing prediction
    (:func:`_seeing_prediction`, times 1 + ``tol``) by ``margin`` times its noise."""
    pred = _seeing_prediction(images, variances, flagged, k, j, i, psf_var, min_snr)
    if not np.isfinite(pred):
        return True
    x = images[k, j, i]
    noise = margin * np.sqrt(variances[k, j, i])
    if x <= pred * (1 + tol) + noise:
        return False
    for q in range(images.shape[0]):
        v = images[q, j, i]
        if q != k and np.isfinite(v) and not flagged[q, j, i] and x <= v + noise:
            return False
    return True


@njit(**_JIT)
def fill_holes(mask: np.ndarray, valid: np.ndarray, out: np.ndarray) -> None:
    """out = mask plus the ``valid`` pixels with at least 5 of their 8 neighbours in ``mask``
    (2-D bool): artefacts are contiguous, and a pixel kept inside a rejected region is one
    where overlapping artefacts of several inputs made the median fail."""
    ny, nx = mask.shape
    for j in range(ny):
        for i in range(nx):
            if mask[j, i]:
                out[j, i] = True
                continue
            if not valid[j, i] or j == 0 or i == 0 or j == ny - 1 or i == nx - 1:
                continue
            c = 0
            for p in range(j - 1, j + 2):
                for q in range(i - 1, i + 2):
                    c += mask[p, q]
            out[j, i] = c >= 5


@njit(**_JIT)
def weighted_mean(
    images: np.ndarray,
    weights: np.ndarray,
    rejected: np.ndarray,
    exptimes: np.ndarray,
    out_image: np.ndarray,
    out_weight: np.ndarray,
    out_count: np.ndarray,
    out_exptime: np.ndarray,
    out_rejected: np.ndarray,
) -> None:
    """Inverse-variance weighted mean of the kept (weight > 0, finite, not rejected) input
    pixels: image (NaN where none), summed weight, count, summed exposure time, and the
    number of rejected inputs at each pixel. Where every input was rejected, the one with the
    lowest value is kept (and cleared in ``rejected``): no hole in the co-add."""
    n, ny, nx = images.shape
    for j in range(ny):
        for i in range(nx):
            s = np.float32(0.0)
            ws = np.float32(0.0)
            c = 0
            r = 0
            e = np.float32(0.0)
            for k in range(n):
                if rejected[k, j, i]:
                    r += 1
                    continue
                w = weights[k, j, i]
                x = images[k, j, i]
                if w > 0 and np.isfinite(x):
                    s += w * x
                    ws += w
                    c += 1
                    e += exptimes[k]
            if c == 0 and r > 0:
                # every input rejected (artefacts of several inputs at one pixel): the lowest
                # value is kept (cosmic rays and trails add flux) rather than leave a hole
                best = -1
                for k in range(n):
                    w = weights[k, j, i]
                    x = images[k, j, i]
                    if w > 0 and np.isfinite(x) and (best < 0 or x < images[best, j, i]):
                        best = k
                if best >= 0:
                    rejected[best, j, i] = False
                    ws = weights[best, j, i]
                    s = ws * images[best, j, i]
                    c = 1
                    r -= 1
                    e = exptimes[best]
            out_image[j, i] = s / ws if ws > 0 else np.nan
            out_weight[j, i] = ws
            out_count[j, i] = c
            out_exptime[j, i] = e
            out_rejected[j, i] = r
