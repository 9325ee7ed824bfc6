"""Compiled (numba) pixel loops of the detrending: one pass over the pixels of a CCD.

:func:`assemble_rows` does every per-pixel step of
:func:`surveydm.reduction.assemble.assemble_ccd` in their order (overscan -> crosstalk ->
non-linearity -> gain -> flips -> bias -> dark -> flat) one image row at a time: each pixel is
read and written in main memory once, instead of once per numpy operation. Image rows are
visited in ascending order and every frame is read within the same loop (rows in descending
order, or frames read one after the other, took two to four times the memory time on the
development machine). The arithmetic is numpy's float32 arithmetic in the same order (no
fast-math, no fused multiply-add), so the results equal the numpy steps' (the non-linearity's to
float32 precision: its Newton steps are counted per row instead of per amplifier).

Single-threaded on purpose (no ``parallel=True``): a pipeline worker reduces one CCD per core.
Compiled on first use and cached on disk (``cache=True``: next to this file, or in numba's
per-user cache directory when that is read-only), so that worker processes load the machine
code (~0.2 s) instead of compiling it (a few seconds, once per machine, raw dtype and set of
calibration frames given: a frame that is None is left out at compile time).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# error_model="numpy": division by zero gives inf/NaN as in numpy, without the exception check
# that would keep the loops from being vectorised.
_JIT = dict(cache=True, nogil=True, error_model="numpy")

#: Relative error of the non-linearity inversion at the largest value it is computed for.
NEWTON_TOL = 1e-8


@njit(**_JIT)
def newton_iterations(max_adu: float, coeffs: np.ndarray, tol: float = NEWTON_TOL) -> int:
    """Newton steps needed after the first-order start for relative error ``tol``.

    The first-order inverse errs by about ``p**2`` (``p = sum |c_k| max_adu**k``) and each
    step squares the error; a factor 10 margin per step is taken (at most 8 steps).
    """
    p, power = 0.0, 1.0
    for c in coeffs:
        power *= max_adu
        p += abs(c) * power
    err, n = 10.0 * p * p, 0
    while err > tol and n < 8:
        err, n = 10.0 * err * err, n + 1
    return n


@njit(**_JIT)
def _horner(x: np.ndarray, coeffs: np.ndarray, out: np.ndarray) -> None:
    """out = sum_k coeffs[k-1] * x**k (k = 1..K), float32, elementwise."""
    n, k_max = x.size, coeffs.size
    c = coeffs[k_max - 1]
    for i in range(n):
        out[i] = c
    for k in range(k_max - 2, -1, -1):
        c = coeffs[k]
        for i in range(n):
            out[i] = out[i] * x[i] + c
    for i in range(n):
        out[i] *= x[i]


@njit(**_JIT)
def linearise(
    measured: np.ndarray,
    coeffs: np.ndarray,
    iterations: int,
    out: np.ndarray,
    poly: np.ndarray,
    dpoly: np.ndarray,
) -> None:
    """Solve ``m = x * (1 + sum_k c_k x**k)`` for x, elementwise, float32.

    First-order start ``x = m * (1 - p(m))`` (``p(x) = sum c_k x**k``), then ``iterations``
    Newton steps on ``f(x) = x * (1 + p(x)) - m``.

    Args:
        measured: 1-d float32 ADU above bias.
        coeffs: 1-d float32 c_1 .. c_K, K >= 1.
        out: 1-d float32 result, the size of ``measured`` and not ``measured`` itself.
        poly, dpoly: 1-d float32 scratch of at least that size.
    """
    n = measured.size
    one = np.float32(1.0)
    dcoeffs = np.empty_like(coeffs)  # of the derivative of x * p(x)
    for k in range(coeffs.size):
        dcoeffs[k] = np.float32(k + 2) * coeffs[k]
    p, dp = poly[:n], dpoly[:n]
    _horner(measured, coeffs, p)
    for i in range(n):
        out[i] = measured[i] * (one - p[i])
    for _ in range(iterations):
        _horner(out, coeffs, p)
        _horner(out, dcoeffs, dp)
        for i in range(n):
            out[i] -= ((p[i] + one) * out[i] - measured[i]) / (dp[i] + one)


@njit(**_JIT)
def finish_row(
    adu: np.ndarray,
    level: np.float32,
    gain: np.float32,
    flip_x: bool,
    image: np.ndarray,
    y: int,
    x0: int,
    bias: np.ndarray | None,
    dark: np.ndarray | None,
    dark_scale: np.float32,
    dark_level: np.float32,
    flat: np.ndarray | None,
    raw: np.ndarray | None,
    saturation: np.float32,
    saturated: np.ndarray | None,
) -> None:
    """One amplifier's segment of image row ``y``, columns ``x0 : x0 + adu.size``:
    ``((adu - level) * gain - bias - dark_scale * dark - dark_level) / flat``, 0 where the
    flat is not positive or NaN, with ``adu`` reversed when ``flip_x``; and
    ``saturated = raw >= saturation`` (compared in float32). A None frame is left out."""
    n = adu.size
    zero = np.float32(0.0)
    out = image[y, x0 : x0 + n]
    if bias is not None:
        b = bias[y, x0 : x0 + n]
    if dark is not None:
        d = dark[y, x0 : x0 + n]
    if flat is not None:
        f = flat[y, x0 : x0 + n]
    if saturated is not None:
        s = saturated[y, x0 : x0 + n]
    # Two copies of the loop: an unsigned index needs no negative-index check, so the
    # reversed loop is vectorised too.
    if flip_x:
        for i in range(n):
            j = np.uintp(n - 1 - i)
            v = (np.float32(adu[j]) - level) * gain
            if bias is not None:
                v -= b[i]
            if dark is not None:
                v -= dark_scale * d[i]
            v -= dark_level
            if flat is not None:
                v = v / f[i] if f[i] > zero else zero
            out[i] = v
            if saturated is not None:
                s[i] = np.float32(raw[j]) >= saturation
    else:
        for i in range(n):
            v = (np.float32(adu[i]) - level) * gain
            if bias is not None:
                v -= b[i]
            if dark is not None:
                v -= dark_scale * d[i]
            v -= dark_level
            if flat is not None:
                v = v / f[i] if f[i] > zero else zero
            out[i] = v
            if saturated is not None:
                s[i] = np.float32(raw[i]) >= saturation


@njit(**_JIT)
def calibrate(
    image: np.ndarray,
    out: np.ndarray,
    bias: np.ndarray | None,
    dark: np.ndarray | None,
    dark_scale: np.float32,
    dark_level: np.float32,
    flat: np.ndarray | None,
) -> None:
    """Bias, dark and flat of a 2-d float32 image into ``out`` (may be ``image``): the last
    steps of :func:`finish_row`."""
    zero, one = np.float32(0.0), np.float32(1.0)
    for y in range(image.shape[0]):
        finish_row(
            image[y],
            zero,
            one,
            False,
            out,
            y,
            0,
            bias,
            dark,
            dark_scale,
            dark_level,
            flat,
            None,
            zero,
            None,
        )


@njit(**_JIT)
def _corrected_row(
    raws: tuple,
    geometry: np.ndarray,
    levels: np.ndarray,
    mix: np.ndarray,
    coeffs: np.ndarray,
    a: int,
    k: int,
    sub: np.ndarray,
    adu: np.ndarray,
    poly: np.ndarray,
    dpoly: np.ndarray,
) -> np.ndarray:
    """DATASEC row ``k`` of amplifier ``a`` after overscan, crosstalk and non-linearity
    (float32 ADU, raw orientation), in ``adu`` or ``sub[a]``; ``sub`` receives the
    overscan-subtracted rows of the amplifiers it needs."""
    nx = geometry[a, 3]
    for b in range(len(raws)):
        if b == a or mix[a, b] != 0:
            dy0, dx0 = geometry[b, 0], geometry[b, 1]
            src, level, row = raws[b][dy0 + k, dx0 : dx0 + nx], levels[b, k], sub[b]
            for i in range(nx):
                row[i] = np.float32(src[i]) - level
    v = sub[a, :nx]
    if mix[a, a] != 0:  # a victim of crosstalk: same float32 operations as correct_crosstalk
        w, c = adu[:nx], mix[a, a]
        for i in range(nx):
            w[i] = v[i] * c
        for b in range(len(raws)):
            c = mix[a, b]
            if b != a and c != 0:
                u = sub[b, :nx]
                for i in range(nx):
                    w[i] += u[i] * c
        v = w
    if np.any(coeffs[a] != 0):
        amax = np.float32(0.0)
        for i in range(nx):
            amax = max(amax, abs(v[i]))
        w = sub[a, :nx] if mix[a, a] != 0 else adu[:nx]  # the buffer v is not in
        linearise(v, coeffs[a], newton_iterations(float(amax), coeffs[a]), w, poly, dpoly)
        v = w
    return v


@njit(**_JIT)
def assemble_rows(
    raws: tuple,
    geometry: np.ndarray,
    levels: np.ndarray,
    mix: np.ndarray,
    coeffs: np.ndarray,
    gains: np.ndarray,
    saturation: np.ndarray,
    bias: np.ndarray | None,
    dark: np.ndarray | None,
    dark_scale: np.float32,
    dark_level: np.float32,
    flat: np.ndarray | None,
    image: np.ndarray,
    saturated: np.ndarray,
) -> None:
    """Overscan, crosstalk, non-linearity, gain, flips, bias, dark and flat of a CCD's n
    amplifiers into ``image``, in ascending image rows.

    Args:
        raws: n raw amplifier arrays (2-d, C-contiguous, one dtype).
        geometry: (n, 8) int64 per amplifier: DATASEC first row and column in the raw array,
            its rows and columns, CCDSEC first row and column in the image, flip_y, flip_x.
        levels: (n, rows) float32 overscan level of each DATASEC row (ADU).
        mix: (n, n) float32 crosstalk correction: row a is row a of ``(I + C)^-1`` for a
            victim of crosstalk (its sources must have its DATASEC shape), zeros otherwise.
        coeffs: (n, K >= 1) float32 non-linearity c_1 .. c_K (a row of zeros: linear).
        gains: (n,) float32 e-/ADU; saturation: (n,) float32 raw saturation level (ADU).
        bias, dark, flat, dark_scale, dark_level: see :func:`finish_row`.
        image: float32 output (e-), saturated: bool output, both C-contiguous.
    """
    n = len(raws)
    width = max(1, geometry[:, 3].max())
    sub = np.empty((n, width), np.float32)
    adu = np.empty(width, np.float32)
    poly = np.empty(width, np.float32)
    dpoly = np.empty(width, np.float32)
    direct = np.empty(n, np.bool_)  # nothing between overscan and gain
    for a in range(n):
        direct[a] = not (np.any(mix[a] != 0) or np.any(coeffs[a] != 0))
    for y in range(image.shape[0]):
        for a in range(n):
            dy0, dx0, ny, nx, cy0, cx0, flip_y, flip_x = geometry[a]
            if not cy0 <= y < cy0 + ny:
                continue
            k = ny - 1 - (y - cy0) if flip_y else y - cy0
            raw = raws[a][dy0 + k, dx0 : dx0 + nx]
            # Two calls, not one on a variable: the raw row and the corrected float32 row
            # have different types, which numba cannot unify in one variable.
            if direct[a]:
                finish_row(
                    raw,
                    levels[a, k],
                    gains[a],
                    flip_x,
                    image,
                    y,
                    cx0,
                    bias,
                    dark,
                    dark_scale,
                    dark_level,
                    flat,
                    raw,
                    saturation[a],
                    saturated,
                )
            else:
                v = _corrected_row(raws, geometry, levels, mix, coeffs, a, k, sub, adu, poly, dpoly)
                finish_row(
                    v,
                    np.float32(0.0),
                    gains[a],
                    flip_x,
                    image,
                    y,
                    cx0,
                    bias,
                    dark,
                    dark_scale,
                    dark_level,
                    flat,
                    raw,
                    saturation[a],
                    saturated,
                )
