"""The files of a co-added tile and band, and of tile catalogs: FITS in
``red/<release>/tiles/<tile>/`` (science, weight, exposure count with exposure-time and
tile-area extensions, PSF stamp, catalogs as binary tables). No timestamps in headers, so
a re-run writes identical bytes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from surveydm.archive import Archive
from surveydm.pipelines.base.connections import Output
from surveydm.pipelines.base.recording import OutputFile
from surveydm.reduction.coadd.stack import TileCoadd
from surveydm.reduction.coadd.tiling import TileSpec

#: Data-ID dimensions of tile products.
TILE_DIMENSIONS = ("tile", "band")
#: The files of a co-added tile and band, by file suffix.
COADD_OUTPUTS = {
    kind: Output(f"coadd_{kind}", TILE_DIMENSIONS) for kind in ("sci", "wht", "cnt", "psf")
}
#: Catalog products: single mode per band, dual mode per tile (band = detection band).
CATALOG_OUTPUTS = {
    mode: Output(f"coadd_cat_{mode}", TILE_DIMENSIONS) for mode in ("single", "dual")
}


def tile_path(release: str, tile: str, filename: str) -> str:
    """Archive path of a tile product: ``red/<release>/tiles/<tile>/<filename>``."""
    return Archive.red_path(release, "tiles", f"{tile}/{filename}")


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            continue
        out[key] = value
    return out


def coadd_header(
    spec: TileSpec, band: str, result: TileCoadd, inputs: Sequence[str]
) -> fits.Header:
    """Header of a tile's images: the tile WCS and ``TILE, FILTER, BUNIT, MAGZERO, NCOMBINE,
    SEEING`` (arcsec), ``DEPTH5`` (AB mag) and ``IMCMBnnn`` (input files, at most 999)."""
    hdr = spec.wcs().to_header()
    psf = result.psf
    values = {
        "TILE": spec.name,
        "FILTER": band,
        "BUNIT": "flux (MAGZERO = AB mag for 1 unit)",
        "MAGZERO": result.zp,
        "NCOMBINE": result.n_inputs,
        "SEEING": psf.fwhm * spec.pixel_scale if psf is not None else None,
        "DEPTH5": result.depth.mag_lim,
        "DEPTHAP": 2 * result.depth.radius * spec.pixel_scale,
    }
    for key, value in _clean(values).items():
        hdr[key] = value
    for i, name in enumerate(inputs[:999], start=1):
        hdr[f"IMCMB{i:03d}"] = name[:68]
    return hdr


def coadd_files(
    store: Archive,
    release: str,
    spec: TileSpec,
    band: str,
    result: TileCoadd,
    inputs: Sequence[str],
    bright: np.ndarray | None = None,
) -> list[OutputFile]:
    """Science, weight, count and PSF files of a co-added tile and band. The count file holds
    the number of inputs per pixel and the extensions ``EXPTIME`` (s), ``AREA`` (1 inside the
    tile area), ``REJECTED`` (inputs rejected per pixel) and ``BRIGHT`` (1 in bright-star
    masks, when ``bright`` is given)."""
    hdr = coadd_header(spec, band, result, inputs)
    co = result.coadd
    sci = np.where(co.weight > 0, np.nan_to_num(co.image), 0.0).astype(np.float32)
    data_id = {"tile": spec.name, "band": band}

    def write_cnt(p: Path) -> None:
        hdus = fits.HDUList(
            [
                fits.PrimaryHDU(co.count.astype(np.int16), header=hdr),
                fits.ImageHDU(co.exptime.astype(np.float32), header=hdr, name="EXPTIME"),
                fits.ImageHDU(result.area.astype(np.uint8), header=hdr, name="AREA"),
                fits.ImageHDU(co.rejected.astype(np.int16), header=hdr, name="REJECTED"),
            ]
        )
        if bright is not None:
            hdus.append(fits.ImageHDU(bright.astype(np.uint8), header=hdr, name="BRIGHT"))
        hdus.writeto(p, output_verify="exception")

    def write_psf(p: Path) -> None:
        stamp = result.psf.stamp if result.psf is not None else np.zeros((1, 1), np.float32)
        phdr = fits.Header(
            _clean(
                {
                    "TILE": spec.name,
                    "FILTER": band,
                    "FWHM": result.psf.fwhm if result.psf else None,
                    "NSTARS": result.psf.n_stars if result.psf else 0,
                }
            )
        )
        fits.PrimaryHDU(stamp, header=phdr).writeto(p, output_verify="exception")

    writers = {
        "sci": lambda p: fits.PrimaryHDU(sci, header=hdr).writeto(p, output_verify="exception"),
        "wht": lambda p: fits.PrimaryHDU(co.weight.astype(np.float32), header=hdr).writeto(
            p, output_verify="exception"
        ),
        "cnt": write_cnt,
        "psf": write_psf,
    }
    return [
        OutputFile(
            out, data_id, tile_path(release, spec.name, f"{spec.name}.{band}.{k}.fits"), writers[k]
        )
        for k, out in COADD_OUTPUTS.items()
    ]


def catalog_file(release: str, tile: str, band: str, mode: str, table: Table) -> OutputFile:
    """The FITS binary table of a tile catalog (``<tile>.<band>.cat_<mode>.fits``; for dual
    mode ``band`` is the detection band)."""
    out = CATALOG_OUTPUTS[mode]
    path = tile_path(release, tile, f"{tile}.{band}.cat_{mode}.fits")

    def write(p: Path) -> None:
        hdus = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(table, name="CATALOG")])
        hdus.writeto(p, output_verify="exception")

    return OutputFile(out, {"tile": tile, "band": band}, path, write)
