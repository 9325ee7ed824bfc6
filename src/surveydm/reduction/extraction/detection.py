"""Step 1 of source extraction: detection of the sources on the background-subtracted image
(isophotal thresholding, filtering and multi-threshold deblending: SExtractor, Bertin & Arnouts
1996, sect. 3.2-3.4, through sep, Barbary 2016).

Detection thresholds ``MeasurementImage.det_image``: masked pixels (saturated, bleed, bad
column, hot, cosmic ray) interpolated from their neighbours as SExtractor does with zero-weight
pixels, so that a bleed trail does not merge the sources along it into one object."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep
from scipy import ndimage

from surveydm.reduction.extraction.image import ExtractionError, MeasurementImage

__all__ = ["Detections", "detect", "sep_extract"]

#: sep deblending sub-object limits tried in turn (sep's default is 1024).
_SUB_OBJECT_LIMITS = (4096, 32768)


@dataclass(frozen=True)
class Detections:
    """Sources found by :func:`detect` (arrays of length n, sep's isophotal measurements).

    Attributes:
        x, y: isophotal barycentres (SExtractor ``X_IMAGE``), 0-based pixels, float64.
        a, b: semi-major / semi-minor axis of the isophotal second moments, pixels (>= 0.1).
        theta: position angle, rad from +x towards +y, within (-pi/2, pi/2).
        flags: int32 sep extraction flags (``sep.OBJ_MERGED`` ...).
        peak: peak pixel value above the background, e- (the measured image's, also where
            the detection image was interpolated, e.g. a saturated core).
        background: background level at the barycentre's pixel, e-.
        npix: isophotal area, pixels.
        errx2, erry2: variances of the barycentre, pixels^2 (SExtractor ``ERRX2_IMAGE``).
        segmap: (ny, nx) int32 segmentation map of sep.extract: the pixels of detection i are
            labelled i + 1, the sky 0. The measurements leave each object's neighbours out
            through it (SExtractor measures deblended objects so).
    """

    x: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    flags: np.ndarray
    peak: np.ndarray
    background: np.ndarray
    npix: np.ndarray
    errx2: np.ndarray
    erry2: np.ndarray
    segmap: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    @property
    def elongation(self) -> np.ndarray:
        """a / b (SExtractor ``ELONGATION``)."""
        return self.a / self.b

    @property
    def peak_level(self) -> np.ndarray:
        """Peak pixel value including the background, e- (compared with saturation)."""
        return self.peak + self.background


def detect(img: MeasurementImage, config) -> Detections:
    """Detect the sources of ``img`` (an ``ExtractionConfig`` gives threshold, minimum area,
    filter and deblending); the threshold is in units of the background sigma ``err_bkg``.

    Raises:
        ExtractionError: sep fails even with the fallbacks of :func:`sep_extract`.
    """
    kwargs = {}
    if not isinstance(config.filter_kernel, str):
        kwargs["filter_kernel"] = config.filter_kernel
    objs, seg = sep_extract(
        img.det_image,
        float(config.threshold),
        err=img.err_bkg,
        mask=img.det_mask,
        minarea=int(config.minarea),
        deblend_nthresh=int(config.deblend_nthresh),
        deblend_cont=float(config.deblend_cont),
        segmentation_map=True,
        **kwargs,
    )
    peak = objs["peak"].astype(np.float64)
    if img.filled is not None:
        peak = _measured_peaks(img, seg, peak)
    x = objs["x"].astype(np.float64)
    y = objs["y"].astype(np.float64)
    ny, nx = img.shape
    xi = np.clip(np.rint(x).astype(np.int64), 0, nx - 1)
    yi = np.clip(np.rint(y).astype(np.int64), 0, ny - 1)
    return Detections(
        x=x,
        y=y,
        a=np.maximum(objs["a"].astype(np.float64), 0.1),
        b=np.maximum(objs["b"].astype(np.float64), 0.1),
        theta=np.clip(objs["theta"].astype(np.float64), -np.pi / 2 + 1e-6, np.pi / 2 - 1e-6),
        flags=objs["flag"].astype(np.int32),
        peak=peak,
        background=img.background[yi, xi].astype(np.float64),
        npix=objs["npix"],
        errx2=objs["errx2"],
        erry2=objs["erry2"],
        segmap=np.ascontiguousarray(seg, dtype=np.int32),
    )


def _measured_peaks(img: MeasurementImage, seg: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Peak of each object (n,), e-: the detection image's ``peak``, raised to the measured
    image's largest value over the object's interpolated pixels (segmentation map ``seg``,
    object i labelled i + 1)."""
    if len(peak) == 0:
        return peak
    sel = img.filled & (seg > 0)
    if not sel.any():
        return peak
    labels = seg[sel]
    index = np.arange(1, len(peak) + 1)
    hidden = ndimage.maximum(img.sub[sel], labels=labels, index=index)
    return np.fmax(peak, np.where(np.isin(index, labels), hidden, np.nan))


def sep_extract(sub: np.ndarray, threshold: float, **kwargs) -> np.ndarray:
    """sep.extract with a pixel stack and a deblending sub-object limit grown on demand (large
    ones cost time and memory per call); a detection that still overflows the deblender at
    the largest limit is retried with half the deblending thresholds, then without
    deblending, rather than failing the CCD."""
    stack = 300_000
    limit = _SUB_OBJECT_LIMITS[0]
    while True:
        sep.set_extract_pixstack(stack)
        sep.set_sub_object_limit(limit)
        try:
            # filter_type="conv": the threshold is in units of the unfiltered per-pixel noise,
            # applied to the filtered image, as SExtractor's DETECT_THRESH.
            return sep.extract(sub, threshold, clean=True, filter_type="conv", **kwargs)
        except Exception as exc:
            msg = str(exc).lower()
            if ("pixel buffer full" in msg or "pixstack" in msg) and stack < sub.size:
                stack = min(sub.size, stack * 4)
                continue
            if "deblending overflow" in msg:
                if limit < _SUB_OBJECT_LIMITS[-1]:
                    limit = next(v for v in _SUB_OBJECT_LIMITS if v > limit)
                    continue
                nthresh = int(kwargs.get("deblend_nthresh", 32))
                if nthresh > 1:
                    kwargs["deblend_nthresh"] = max(1, nthresh // 2) if nthresh > 8 else 1
                    continue
            raise ExtractionError(f"source extraction failed: {exc}") from exc
        finally:
            sep.set_sub_object_limit(_SUB_OBJECT_LIMITS[0])
