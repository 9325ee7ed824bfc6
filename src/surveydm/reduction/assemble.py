"""Assemble one CCD from its raw amplifier extensions, in electrons.

Order (seed 002 "daily pipeline", IPP chip stage): per amplifier, overscan subtraction and
trim to DATASEC; crosstalk correction between amplifiers in readout order on the
overscan-subtracted raw data; non-linearity correction (ADU above bias); gain to electrons;
flips to CCD orientation and placement at CCDSEC; then, when they are given, the master bias,
dark and flat (as :func:`surveydm.reduction.detrend.detrend`). The overscan levels are measured
with numpy; every per-pixel step runs in one compiled pass over the pixels
(:func:`surveydm.reduction.kernels.assemble_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from surveydm.instruments.model import CCD, Amplifier
from surveydm.reduction import kernels
from surveydm.reduction.crosstalk import crosstalk_matrix
from surveydm.reduction.detrend import calibration_args
from surveydm.reduction.overscan import (
    OverscanMethod,
    RawGeometryError,
    _check_raw,
    overscan_noise,
    overscan_profile,
)


@dataclass
class AssembledCCD:
    """A CCD in electrons after overscan, trim, crosstalk, non-linearity and gain.

    Attributes:
        image: (ny, nx) float32, electrons above bias level (CCD orientation); also bias-,
            dark- and flat-corrected when :func:`assemble_ccd` was given those frames.
        saturated: (ny, nx) bool, raw value >= the amplifier's saturation level.
        overscan_levels: amplifier number -> mean overscan level (ADU).
        read_noise: amplifier number -> read noise measured in the overscan (e-).
        gain: amplifier number -> gain used (e-/ADU).
        ccd: the CCD description (to map amplifiers to pixels).
    """

    image: np.ndarray
    saturated: np.ndarray
    overscan_levels: dict[int, float]
    read_noise: dict[int, float]
    gain: dict[int, float] = field(default_factory=dict)
    ccd: CCD | None = None

    @property
    def saturation_level(self) -> float:
        """Lowest saturation over the amplifiers, in image electrons:
        ``min((saturation - overscan level) * gain)`` (for cosmic-ray detection and bleed
        thresholds). Raises ValueError without a CCD description."""
        if self.ccd is None:
            raise ValueError("no CCD description attached")
        return float(
            min(
                (a.saturation - self.overscan_levels[a.num]) * self.gain[a.num]
                for a in self.ccd.amplifiers
            )
        )

    def read_noise_map(self) -> np.ndarray:
        """(ny, nx) float32 read noise (e-) of the amplifier each pixel was read through."""
        if self.ccd is None:
            raise ValueError("no CCD description attached")
        out = np.empty(self.image.shape, np.float32)
        for amp in self.ccd.amplifiers:
            out[amp.ccd_slices] = self.read_noise[amp.num]
        return out


def _crosstalk_rows(ccd: CCD, amps: list[Amplifier]) -> np.ndarray:
    """(n, n) float32: row a is row a of ``(I + C)^-1`` when amplifier a is a crosstalk
    victim, zeros otherwise (the kernel's ``mix``).

    Raises:
        ValueError: amplifiers linked by crosstalk have different DATASEC shapes.
    """
    nums = [a.num for a in amps]
    mix = np.zeros((len(amps), len(amps)), np.float32)
    involved, m = crosstalk_matrix(ccd.crosstalk, nums)
    if len(involved) < 2:
        return mix
    shapes = {
        tuple(s.stop - s.start for s in amps[nums.index(num)].data_slices) for num in involved
    }
    if len(shapes) != 1:
        raise ValueError(f"crosstalk between amplifiers of different data shapes: {shapes}")
    inv = np.linalg.inv(m)
    victims = {x.victim for x in ccd.crosstalk}
    for i, v in enumerate(involved):
        if v in victims:
            for j, src in enumerate(involved):
                mix[nums.index(v), nums.index(src)] = inv[i, j]
    return mix


def assemble_ccd(
    raw_amps: Mapping[int, np.ndarray],
    ccd: CCD,
    *,
    crosstalk: bool = True,
    linearity: bool = True,
    overscan_method: OverscanMethod = "row_median",
    bias: np.ndarray | None = None,
    dark: np.ndarray | float | None = None,
    exptime: float = 0.0,
    flat: np.ndarray | None = None,
    reuse: AssembledCCD | None = None,
) -> AssembledCCD:
    """Overscan-correct, trim, crosstalk-correct, linearise, gain-correct and assemble a CCD,
    and subtract the master bias and dark and divide by the master flat when given.

    The result equals :func:`detrend` (bias, dark, flat) applied to the assembled CCD, in one
    pass over the pixels instead of one per step (benchmarks/bench_detrend.py).

    Args:
        raw_amps: amplifier number -> raw extension (``amp.raw_shape``), uint16 or integer or
            float; read-only memmaps are fine (never modified).
        ccd: the CCD's description from the instrument file.
        crosstalk: apply the CCD's crosstalk correction (``ccd.crosstalk``).
        linearity: apply each amplifier's non-linearity correction.
        overscan_method: see :func:`surveydm.reduction.overscan.overscan_correct`.
        bias, dark, exptime, flat: master frames of ``ccd.shape`` in electrons, as in
            :func:`surveydm.reduction.detrend.detrend` (``dark`` in e-/s, or a scalar for a
            uniform dark current); None leaves the step out.
        reuse: a previous result of the same CCD geometry whose ``image`` and ``saturated``
            arrays are overwritten instead of allocating new ones (a worker reducing CCD after
            CCD saves the allocation and page faults of 40 MB per full-size CCD).

    Returns:
        :class:`AssembledCCD` with the image in electrons (float32, ``ccd.shape``).

    Raises:
        RawGeometryError: an amplifier is missing or its array has the wrong shape.
        ValueError: a master frame's shape differs from ``ccd.shape``; ``dark`` with a
            negative ``exptime``; amplifiers linked by crosstalk have different DATASEC shapes.
    """
    missing = [a.num for a in ccd.amplifiers if a.num not in raw_amps]
    if missing:
        raise RawGeometryError(f"CCD {ccd.name}: raw data missing for amplifiers {missing}")
    shape = tuple(ccd.shape)
    cal = calibration_args(shape, bias=bias, dark=dark, exptime=exptime, flat=flat)
    if (
        reuse is not None
        and reuse.image.shape == shape
        and reuse.image.dtype == np.float32
        and reuse.image.flags.c_contiguous
        and reuse.saturated.shape == shape
        and reuse.saturated.dtype == np.bool_
        and reuse.saturated.flags.c_contiguous
    ):
        image, saturated = reuse.image, reuse.saturated
    else:
        image = np.empty(shape, np.float32)
        saturated = np.empty(shape, bool)
    amps = list(ccd.amplifiers)
    raws = [_check_raw(raw_amps[a.num], a) for a in amps]
    # one native dtype, C order and read-only flag for all: the kernel's tuple is homogeneous
    dtype = np.result_type(*raws).newbyteorder("=")
    raws = [np.ascontiguousarray(raw, dtype=dtype).view() for raw in raws]
    for raw in raws:
        raw.flags.writeable = False
    n_rows = max(a.data_slices[0].stop - a.data_slices[0].start for a in amps)
    levels = np.zeros((len(amps), n_rows), np.float32)
    mean_levels: dict[int, float] = {}
    noise: dict[int, float] = {}
    geometry = np.empty((len(amps), 8), np.int64)
    for i, (amp, raw) in enumerate(zip(amps, raws, strict=True)):
        level = overscan_profile(raw, amp, method=overscan_method)[:, 0]
        levels[i, : level.size] = level
        mean_levels[amp.num] = float(level.mean())
        noise[amp.num] = overscan_noise(raw, amp) * amp.gain
        (dy, dx), (cy, cx) = amp.data_slices, amp.ccd_slices
        geometry[i, :4] = (dy.start, dx.start, dy.stop - dy.start, dx.stop - dx.start)
        geometry[i, 4:] = (cy.start, cx.start, amp.flip_y, amp.flip_x)
    if crosstalk and ccd.crosstalk:
        mix = _crosstalk_rows(ccd, amps)
    else:
        mix = np.zeros((len(amps), len(amps)), np.float32)
    n_coeffs = max([1] + [len(a.nonlinearity) for a in amps])
    coeffs = np.zeros((len(amps), n_coeffs), np.float32)
    if linearity:
        for i, amp in enumerate(amps):
            coeffs[i, : len(amp.nonlinearity)] = amp.nonlinearity
    kernels.assemble_rows(
        tuple(raws),
        geometry,
        levels,
        mix,
        coeffs,
        np.array([a.gain for a in amps], np.float32),
        np.array([_float32_at_least(a.saturation) for a in amps], np.float32),
        *cal,
        image,
        saturated,
    )
    return AssembledCCD(
        image=image,
        saturated=saturated,
        overscan_levels=mean_levels,
        read_noise=noise,
        gain={a.num: a.gain for a in amps},
        ccd=ccd,
    )


def _float32_at_least(value: float) -> np.float32:
    """The smallest float32 >= ``value``: ``float32(raw) >= it`` is ``raw >= value`` for raw
    values that float32 holds exactly (all integers below 2**24)."""
    v = np.float32(value)
    return v if v >= value else np.nextafter(v, np.float32(np.inf))
