"""Non-linearity correction.

The instrument model describes the response as
``ADU_measured = ADU_linear * (1 + sum_k c_k * ADU_linear**k)`` (k = 1, 2, ...), on ADU above
bias. The correction inverts this polynomial per pixel with Newton's method, vectorised: a few
iterations from ``ADU_linear = ADU_measured`` reach float32 precision for any physical
non-linearity (a few per cent at full well).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def apply_nonlinearity(linear: np.ndarray, coeffs: Sequence[float]) -> np.ndarray:
    """Forward model: measured ADU from linear ADU (float64 for simulation and tests)."""
    linear = np.asarray(linear, dtype=np.float64)
    factor = np.ones_like(linear)
    for k, c in enumerate(coeffs, start=1):
        factor += c * linear**k
    return linear * factor


def _horner(x: np.ndarray, coeffs: Sequence[float], out: np.ndarray) -> np.ndarray:
    """out = sum_k coeffs[k-1] * x**k (k = 1..K), in place, float32."""
    out.fill(np.float32(coeffs[-1]))
    for c in reversed(coeffs[:-1]):
        out *= x
        out += np.float32(c)
    out *= x
    return out


#: Elements per cache-sized block in :func:`correct_nonlinearity`.
_BLOCK = 1 << 16


def newton_iterations(max_adu: float, coeffs: Sequence[float], tol: float = 1e-8) -> int:
    """Newton steps needed after the first-order start for relative error ``tol``.

    The first-order inverse errs by about ``p**2`` (``p = sum |c_k| max_adu**k``) and each
    step squares the error; a factor 10 margin per step is taken.
    """
    p = sum(abs(c) * max_adu**k for k, c in enumerate(coeffs, start=1))
    err, n = 10.0 * p * p, 0
    while err > tol and n < 8:
        err, n = 10.0 * err * err, n + 1
    return n


def correct_nonlinearity(
    measured: np.ndarray,
    coeffs: Sequence[float],
    *,
    iterations: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Linear ADU from measured ADU above bias, inverting the instrument's polynomial.

    Starts from the first-order inverse ``x0 = m * (1 - p(m))`` (``p(x) = sum c_k x**k``) and
    refines it with Newton steps on ``f(x) = x * (1 + p(x)) - m``; each step squares the
    relative error. float32 throughout, in cache-sized blocks.

    Args:
        measured: ADU above bias (overscan subtracted), any shape.
        coeffs: c_1, c_2, ... of the instrument model (1/ADU^k); empty means linear.
        iterations: Newton steps after the first-order start (default: enough for 1e-8
            relative error at the largest value, see :func:`newton_iterations`).
        out: optional float32 output array (may be ``measured`` itself, also a strided view,
            for in-place work).

    Returns:
        float32 array of linear ADU.
    """
    measured = np.asarray(measured)
    coeffs = [float(v) for v in coeffs]
    if out is None:
        out = measured.astype(np.float32, copy=True)
    elif out is not measured:
        out[...] = measured
    if not coeffs or not any(coeffs) or out.size == 0:
        return out
    target = np.array(out, dtype=np.float32, copy=True, order="C").reshape(-1)
    if iterations is None:
        iterations = newton_iterations(float(np.abs(target).max()), coeffs)
    result = np.empty_like(target)
    n = min(_BLOCK, target.size)
    poly = np.empty(n, np.float32)
    dpoly = np.empty(n, np.float32)
    dcoeffs = [(k + 1) * c for k, c in enumerate(coeffs, start=1)]
    one = np.float32(1.0)
    for start in range(0, target.size, _BLOCK):
        m = target[start : start + _BLOCK]
        x = result[start : start + _BLOCK]
        p, dp = poly[: m.size], dpoly[: m.size]
        _horner(m, coeffs, p)  # first-order inverse: x = m * (1 - p(m))
        np.subtract(one, p, out=p)
        np.multiply(m, p, out=x)
        for _ in range(iterations):
            _horner(x, coeffs, p)
            _horner(x, dcoeffs, dp)
            p += one
            p *= x
            p -= m  # f(x)
            dp += one  # f'(x)
            p /= dp
            x -= p
    out[...] = result.reshape(out.shape)
    return out
