"""Assemble one CCD from its raw amplifier extensions, in electrons.

Order (seed 002 "daily pipeline", IPP chip stage): per amplifier, overscan subtraction and
trim to DATASEC; crosstalk correction between amplifiers in readout order on the
overscan-subtracted raw data; non-linearity correction (ADU above bias); gain to electrons;
flips to CCD orientation and placement at CCDSEC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from surveydm.instruments.model import CCD
from surveydm.reduction.crosstalk import correct_crosstalk
from surveydm.reduction.linearity import correct_nonlinearity
from surveydm.reduction.overscan import (
    OverscanMethod,
    RawGeometryError,
    _check_raw,
    orient,
    overscan_noise,
    subtract_overscan_raw,
)


@dataclass
class AssembledCCD:
    """A CCD in electrons after overscan, trim, crosstalk, non-linearity and gain.

    Attributes:
        image: (ny, nx) float32, electrons above bias level (CCD orientation).
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


def assemble_ccd(
    raw_amps: Mapping[int, np.ndarray],
    ccd: CCD,
    *,
    crosstalk: bool = True,
    linearity: bool = True,
    overscan_method: OverscanMethod = "row_median",
    reuse: AssembledCCD | None = None,
) -> AssembledCCD:
    """Overscan-correct, trim, crosstalk-correct, linearise, gain-correct and assemble a CCD.

    Args:
        raw_amps: amplifier number -> raw extension (``amp.raw_shape``), uint16 or integer or
            float; read-only memmaps are fine (never modified).
        ccd: the CCD's description from the instrument file.
        crosstalk: apply the CCD's crosstalk correction (``ccd.crosstalk``).
        linearity: apply each amplifier's non-linearity correction.
        overscan_method: see :func:`surveydm.reduction.overscan.overscan_correct`.
        reuse: a previous result of the same CCD geometry whose ``image`` and ``saturated``
            arrays are overwritten instead of allocating new ones (a worker reducing CCD after
            CCD saves the allocation and page faults of 40 MB per full-size CCD).

    Returns:
        :class:`AssembledCCD` with the image in electrons (float32, ``ccd.shape``).

    Raises:
        RawGeometryError: an amplifier is missing or its array has the wrong shape.
    """
    missing = [a.num for a in ccd.amplifiers if a.num not in raw_amps]
    if missing:
        raise RawGeometryError(f"CCD {ccd.name}: raw data missing for amplifiers {missing}")
    shape = tuple(ccd.shape)
    if (
        reuse is not None
        and reuse.image.shape == shape
        and reuse.image.dtype == np.float32
        and reuse.saturated.shape == shape
        and reuse.saturated.dtype == np.bool_
    ):
        image, saturated = reuse.image, reuse.saturated
    else:
        image = np.empty(shape, np.float32)
        saturated = np.empty(shape, bool)
    levels: dict[int, float] = {}
    noise: dict[int, float] = {}
    gains: dict[int, float] = {}
    do_crosstalk = bool(crosstalk and ccd.crosstalk)
    # raw-oriented views of each amplifier's region of the output: every step writes in place
    views: dict[int, np.ndarray] = {}
    for amp in ccd.amplifiers:
        raw = _check_raw(raw_amps[amp.num], amp)
        view = orient(image[amp.ccd_slices], amp)
        fused_gain = not do_crosstalk and not (linearity and amp.nonlinearity)
        _, levels[amp.num] = subtract_overscan_raw(
            raw, amp, method=overscan_method, out=view, scale=amp.gain if fused_gain else None
        )
        views[amp.num] = view
        noise[amp.num] = overscan_noise(raw, amp) * amp.gain
        gains[amp.num] = amp.gain
        data = raw[amp.data_slices]
        sat_view = orient(saturated[amp.ccd_slices], amp)
        if data.max() >= amp.saturation:  # a max is cheaper than a full comparison
            np.greater_equal(data, amp.saturation, out=sat_view)
        else:
            sat_view.fill(False)
    if do_crosstalk:
        corrected = correct_crosstalk(dict(views), ccd.crosstalk)
        for num, arr in corrected.items():
            if arr is not views[num]:
                views[num][...] = arr
    for amp in ccd.amplifiers:
        if not do_crosstalk and not (linearity and amp.nonlinearity):
            continue  # gain already applied with the overscan subtraction
        view = views[amp.num]
        if linearity and amp.nonlinearity:
            correct_nonlinearity(view, amp.nonlinearity, out=view)
        np.multiply(view, np.float32(amp.gain), out=view)
    return AssembledCCD(
        image=image,
        saturated=saturated,
        overscan_levels=levels,
        read_noise=noise,
        gain=gains,
        ccd=ccd,
    )
