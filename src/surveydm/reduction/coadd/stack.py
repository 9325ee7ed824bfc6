"""One tile and band co-added from reduced single-epoch images (seed 002 tile coadding:
scale to a common zero-point, resample, median frame, pixel rejection, weighted mean; then
the tile's PSF and depth). Pure: arrays and WCS in, a :class:`TileCoadd` out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_area

from surveydm.reduction.coadd.combine import FWHM_PER_SIGMA, Coadd, CombineConfig, combine
from surveydm.reduction.coadd.depth import Depth, limiting_magnitude, tile_area_mask
from surveydm.reduction.coadd.psf import PSFModel, image_fwhm, psf_from_stars
from surveydm.reduction.coadd.resample import flux_scale, warp_image
from surveydm.reduction.extraction.background import measure_background

#: Zero-point of every co-add, AB mag for one flux unit of the co-added image.
ZP_COADD = 30.0


@dataclass(frozen=True)
class CoaddInput:
    """One reduced CCD image going into a co-add.

    Attributes:
        image: (ny, nx) e-, sky included; weight: (ny, nx) inverse variance, e-^-2;
        mask: (ny, nx) ``MaskBit`` bits or None; wcs: its fitted WCS; zp: AB mag for 1 e-/s;
        exptime: s; name: for logs; fwhm: its PSF FWHM, arcsec (single-epoch ``image.psf_fwhm``;
        None: measured here, :func:`~surveydm.reduction.coadd.psf.image_fwhm`).
    """

    image: np.ndarray
    weight: np.ndarray
    mask: np.ndarray | None
    wcs: WCS
    zp: float
    exptime: float
    name: str = ""
    fwhm: float | None = None


@dataclass(frozen=True)
class StackConfig:
    """Co-add knobs: resampling ``kernel``, the common zero-point ``zp``, the
    :class:`CombineConfig`, the background mesh ``background_box`` (pixels), the depth
    aperture diameter (arcsec) and the tile-area exposure fraction."""

    kernel: str = "bilinear"
    zp: float = ZP_COADD
    combine: CombineConfig = field(default_factory=CombineConfig)
    background_box: int = 64
    depth_aperture_arcsec: float = 3.0
    area_fraction: float = 0.5

    @classmethod
    def from_mapping(cls, values: dict | None) -> StackConfig:
        """From a job configuration (unknown keys are ignored; ``combine`` is a mapping)."""
        values = dict(values or {})
        comb = CombineConfig(**{
            k: v for k, v in (values.pop("combine", None) or {}).items()
            if k in CombineConfig.__dataclass_fields__
        })  # fmt: skip
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(combine=comb, **known)


@dataclass(frozen=True)
class TileCoadd:
    """A co-added tile and band.

    Attributes:
        coadd: the :class:`Coadd` (image background subtracted, flux on ``zp``);
        psf: its empirical PSF (None without a usable star); depth: 5-sigma limiting
        magnitude; area: bool tile-area mask; zp: AB mag for 1 flux unit;
        pixel_scale: arcsec/pixel; n_inputs: images combined.
    """

    coadd: Coadd
    psf: PSFModel | None
    depth: Depth
    area: np.ndarray
    zp: float
    pixel_scale: float
    n_inputs: int

    @property
    def area_fraction(self) -> float:
        """Fraction of the tile inside the tile area."""
        return float(self.area.mean())


def sky_subtracted(inp: CoaddInput, box: int) -> tuple[np.ndarray, np.ndarray]:
    """The input image with its sep background removed (e-), and its background weight
    (1 / background RMS^2, 0 where the input weight is 0); masked pixels are ignored by the
    background fit."""
    bad = (inp.weight <= 0).astype(np.uint16)
    if inp.mask is not None:
        bad |= (inp.mask != 0).astype(np.uint16)
    img = np.nan_to_num(np.asarray(inp.image, np.float32))
    bkg = measure_background(img, bad, box=box)
    wbkg = np.where(bad == 0, 1.0 / (bkg.rms * bkg.rms), np.float32(0.0)).astype(np.float32)
    return img - bkg.image, wbkg


#: Variance (input pixels^2, per axis) that bilinear resampling adds to a PSF on average over
#: the sub-pixel phase t: E[t (1 - t)] = 1/6.
BILINEAR_VARIANCE = 1.0 / 6.0


def warped_fwhm(
    inp: CoaddInput,
    tile_scale: float,
    sub: np.ndarray | None = None,
    wbkg: np.ndarray | None = None,
) -> float:
    """PSF FWHM (tile pixels) of an input once warped: its single-epoch FWHM (or one measured
    on ``sub``, its background-subtracted image, with background weight ``wbkg``) on the
    tile's pixel scale, broadened by the bilinear resampling's mean smoothing
    (:data:`BILINEAR_VARIANCE`).

    Raises:
        ValueError: no FWHM known and none measurable.
    """
    in_scale = float(np.sqrt(proj_plane_pixel_area(inp.wcs)) * 3600.0)
    fwhm = inp.fwhm
    if fwhm is None or not fwhm > 0:
        if sub is None or wbkg is None:
            raise ValueError(f"{inp.name}: no PSF FWHM given and no image to measure it on")
        rms = np.where(wbkg > 0, 1.0 / np.sqrt(np.maximum(wbkg, 1e-30)), 0.0)
        fwhm = image_fwhm(sub, rms, wbkg <= 0) * in_scale
    sig2 = (fwhm / FWHM_PER_SIGMA / tile_scale) ** 2 + BILINEAR_VARIANCE * (
        in_scale / tile_scale
    ) ** 2
    return float(np.sqrt(sig2) * FWHM_PER_SIGMA)


def _fwhm_or_none(inp: CoaddInput, sub: np.ndarray, wbkg: np.ndarray, scale: float) -> float | None:
    """:func:`warped_fwhm`, None when it cannot be measured (too few stars)."""
    try:
        return warped_fwhm(inp, scale, sub, wbkg)
    except ValueError:
        return None


def _fill_fwhm(fwhm: list[float | None]) -> list[float] | None:
    """Inputs without a FWHM take the largest known (they get the least smoothing: their
    artefacts stay as sharp as possible); None when no FWHM is known."""
    known = [f for f in fwhm if f is not None]
    return [f if f is not None else max(known) for f in fwhm] if known else None


@dataclass(frozen=True)
class WarpedStack:
    """The inputs of a tile warped onto its grid: images, background weights and total
    variances (n, ny, nx) float32, and their PSF FWHM (tile pixels; None when unknown)."""

    images: np.ndarray
    weights: np.ndarray
    variances: np.ndarray
    fwhm: list[float] | None


def warp_inputs(
    inputs: Sequence[CoaddInput],
    tile_wcs: WCS,
    shape: tuple[int, int],
    pixel_scale: float,
    config: StackConfig = StackConfig(),
) -> WarpedStack:
    """Scale, sky-subtract and warp every input into (n, ny, nx) stacks (written in place,
    no per-input copies), with the warped PSF FWHM of each (:func:`warped_fwhm`)."""
    n = len(inputs)
    images, weights, variances = (np.empty((n, *shape), np.float32) for _ in range(3))
    fwhm = []
    for k, inp in enumerate(inputs):
        scale = flux_scale(inp.zp, inp.exptime, config.zp)
        sub, wbkg = sky_subtracted(inp, config.background_box)
        fwhm.append(_fwhm_or_none(inp, sub, wbkg, pixel_scale))
        warp_image(
            sub, wbkg, inp.mask, inp.wcs, tile_wcs, shape, scale=scale, kernel=config.kernel,
            total_weight=inp.weight, out=(images[k], weights[k], variances[k]),
        )  # fmt: skip
    return WarpedStack(images, weights, variances, _fill_fwhm(fwhm))


def coadd_tile(
    inputs: Sequence[CoaddInput],
    tile_wcs: WCS,
    shape: tuple[int, int],
    pixel_scale: float,
    config: StackConfig = StackConfig(),
) -> TileCoadd:
    """Co-add reduced images onto a tile grid.

    Args:
        inputs: the images overlapping the tile (:class:`CoaddInput`).
        tile_wcs, shape: the tile's WCS and (ny, nx); pixel_scale: arcsec/pixel.

    Returns:
        :class:`TileCoadd`.

    The inputs are combined with their background weights (1 / background RMS^2), and
    rejected with their total variance (the input weight maps), PSF-matched with their
    warped FWHM (:func:`warped_fwhm`).

    Raises:
        ValueError: no input, or an input without a positive exposure time or finite zp.
    """
    if not inputs:
        raise ValueError("no input image overlaps the tile")
    stacks = warp_inputs(inputs, tile_wcs, shape, pixel_scale, config)
    co = combine(
        stacks.images, stacks.weights, [i.exptime for i in inputs], config.combine,
        stacks.variances, stacks.fwhm,
    )  # fmt: skip
    try:
        psf: PSFModel | None = psf_from_stars(co.image, co.weight)
    except ValueError:
        psf = None
    radius = config.depth_aperture_arcsec / 2.0 / pixel_scale
    depth = limiting_magnitude(co.image, co.weight, config.zp, radius)
    area = tile_area_mask(co.exptime, fraction=config.area_fraction)
    return TileCoadd(co, psf, depth, area, config.zp, pixel_scale, len(inputs))
