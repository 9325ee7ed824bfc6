"""Tile co-adds and their catalogs, pure functions (seed 002: tile coadding with pixel
rejection, single- and dual-mode catalogs, PSF homogenisation, tile masks and depth; seed 004
sections 3.5-3.7: Pan-STARRS warps and stacks).

Modules, one concept each: ``tiling`` (the sky tiling), ``resample`` (warping an image, its
weight and mask onto a tile with ``reproject``), ``combine`` (median frame, rejection,
weighted mean), ``stack`` (one tile and band from reduced images), ``psf`` (the tile PSF and
homogenisation), ``depth`` (limiting magnitude, tile area, bright-star masks),
``completeness`` (artificial-source injection) and ``catalog`` (single and dual mode).
"""

from surveydm.reduction.coadd.combine import Coadd, CombineConfig, combine, reject_outliers
from surveydm.reduction.coadd.stack import CoaddInput, StackConfig, TileCoadd, coadd_tile
from surveydm.reduction.coadd.tiling import TileSpec, make_tiling

__all__ = [
    "Coadd",
    "CoaddInput",
    "CombineConfig",
    "StackConfig",
    "TileCoadd",
    "TileSpec",
    "coadd_tile",
    "combine",
    "make_tiling",
    "reject_outliers",
]
