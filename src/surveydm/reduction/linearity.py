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

from surveydm.reduction import kernels


def apply_nonlinearity(linear: np.ndarray, coeffs: Sequence[float]) -> np.ndarray:
    """Forward model: measured ADU from linear ADU (float64 for simulation and tests)."""
    linear = np.asarray(linear, dtype=np.float64)
    factor = np.ones_like(linear)
    for k, c in enumerate(coeffs, start=1):
        factor += c * linear**k
    return linear * factor


#: Elements per cache-sized block in :func:`correct_nonlinearity`.
_BLOCK = 1 << 16


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
    relative error. float32 throughout, in cache-sized blocks
    (:func:`surveydm.reduction.kernels.linearise`, which
    :func:`surveydm.reduction.assemble.assemble_ccd` runs on each image row).

    Args:
        measured: ADU above bias (overscan subtracted), any shape.
        coeffs: c_1, c_2, ... of the instrument model (1/ADU^k); empty means linear.
        iterations: Newton steps after the first-order start (default: enough for 1e-8
            relative error at the largest value, see
            :func:`surveydm.reduction.kernels.newton_iterations`).
        out: optional float32 output array (may be ``measured`` itself, also a strided view,
            for in-place work).

    Returns:
        float32 array of linear ADU.
    """
    measured = np.asarray(measured)
    c = np.asarray(coeffs, dtype=np.float32).reshape(-1)
    if out is None:
        out = measured.astype(np.float32, copy=True)
    elif out is not measured:
        out[...] = measured
    if not np.any(c) or out.size == 0:
        return out
    target = np.array(out, dtype=np.float32, copy=True, order="C").reshape(-1)
    if iterations is None:
        iterations = kernels.newton_iterations(float(np.abs(target).max()), c)
    result = np.empty_like(target)
    poly = np.empty(min(_BLOCK, target.size), np.float32)
    dpoly = np.empty_like(poly)
    for start in range(0, target.size, _BLOCK):
        block = slice(start, start + _BLOCK)
        kernels.linearise(target[block], c, iterations, result[block], poly, dpoly)
    out[...] = result.reshape(out.shape)
    return out
