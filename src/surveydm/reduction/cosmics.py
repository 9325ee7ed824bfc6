"""Cosmic-ray detection with astroscrappy (L.A.Cosmic, van Dokkum 2001; McCully et al. 2018).

The detrended image is in electrons, so astroscrappy runs with ``gain=1`` and the read noise
in electrons; the sky must still be in the image (the noise model uses it).
"""

from __future__ import annotations

from collections.abc import Mapping

import astroscrappy
import numpy as np


def find_cosmic_rays(
    image_e: np.ndarray,
    *,
    read_noise: float | Mapping[int, float],
    gain: float = 1.0,
    saturation_level: float,
    mask: np.ndarray | None = None,
    sigclip: float = 4.5,
    sigfrac: float = 0.3,
    objlim: float = 5.0,
    niter: int = 1,
    cleantype: str = "meanmask",
    fsmode: str = "median",
    psf_fwhm: float | None = None,
    psf_beta: float = 2.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect and clean cosmic-ray hits.

    Args:
        image_e: (ny, nx) detrended image in electrons, sky included.
        read_noise: read noise in e- (scalar, or amplifier -> e-: the mean is used).
        gain: e- per image unit (1.0 for images in electrons).
        saturation_level: level (image units) above which stars are saturated; astroscrappy
            protects them from being taken for cosmic rays.
        mask: optional bool or bit mask of pixels to ignore (bad pixels, saturated).
        sigclip, sigfrac, objlim, niter, cleantype, fsmode: astroscrappy ``detect_cosmics``
            parameters (astroscrappy's defaults, except ``niter``: one iteration finds 98% of
            the pixels that four find on a full-size paucam CCD, in a third of the time, and
            cosmic-ray detection is most of the single-epoch cost; ``objlim`` guards star
            cores).
        psf_fwhm: PSF FWHM in pixels. When given, the fine-structure image is built by
            convolving with a Moffat PSF of that width (``fsmode="convolve"``) instead of the
            median filter: with undersampled PSFs (FWHM < ~2 pixels) the median mode takes
            star cores for cosmic rays (van Dokkum 2001, section 3.3; astroscrappy docs).
        psf_beta: Moffat beta of that PSF.

    Returns:
        (mask, cleaned): (ny, nx) bool cosmic-ray mask and float32 cleaned image (e-).

    Raises:
        ValueError: ``image_e`` is not 2-d.
    """
    img = np.asarray(image_e, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-d, got shape {img.shape}")
    rn = (
        float(np.mean(list(read_noise.values())))
        if isinstance(read_noise, Mapping)
        else float(read_noise)
    )
    inmask = None if mask is None else (np.asarray(mask) != 0)
    crmask, cleaned = astroscrappy.detect_cosmics(
        img,
        inmask=inmask,
        sigclip=sigclip,
        sigfrac=sigfrac,
        objlim=objlim,
        gain=gain,
        readnoise=rn,
        satlevel=saturation_level,
        niter=niter,
        cleantype=cleantype,
        sepmed=True,
        **(
            {
                "fsmode": "convolve",
                "psfmodel": "moffat",
                "psffwhm": float(psf_fwhm),
                "psfbeta": float(psf_beta),
                "psfsize": max(5, 2 * int(np.ceil(psf_fwhm)) + 1),
            }
            if psf_fwhm
            else {"fsmode": fsmode}
        ),
    )
    return np.asarray(crmask, dtype=bool), np.asarray(cleaned, dtype=np.float32)
