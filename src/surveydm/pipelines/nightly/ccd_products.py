"""What one reduced CCD leaves behind: its science, weight and mask files, its ``image`` row
and its ``detection`` rows, built from the typed result of
:func:`surveydm.reduction.single_epoch.reduce_ccd` (no registry reads here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from surveydm.archive import Archive
from surveydm.db.spatial import healpix_index
from surveydm.instruments import Filter
from surveydm.pipelines.base.connections import Output
from surveydm.pipelines.base.recording import OutputFile
from surveydm.pipelines.fitsio import ccd_extname, write_image
from surveydm.reduction.single_epoch import CCDReduction

#: Data-ID dimensions of a reduced CCD's products.
CCD_DIMENSIONS = ("obs_set", "mosaic_id", "ccd", "filter")
#: The three files of a reduced CCD, by file suffix.
REDUCED_OUTPUTS = {
    kind: Output(f"reduced_{kind}", CCD_DIMENSIONS) for kind in ("sci", "wht", "msk")
}


@dataclass(frozen=True)
class Exposure:
    """The raw exposure a CCD belongs to, as its products describe it.

    Attributes:
        filename: raw file name; exptime: s; mjd: MJD (UTC) of the start; airmass (None
        where the header had none).
    """

    filename: str
    exptime: float | None
    mjd: float | None
    airmass: float | None


def reduced_files(
    store: Archive,
    release: str,
    data_id: Mapping[str, Any],
    exposure: Exposure,
    result: CCDReduction,
) -> list[OutputFile]:
    """The science, weight and mask files of one reduced CCD, with the fitted WCS and
    ``OBSSET, CCDNUM, FILTER, EXPTIME, MJD-OBS, AIRMASS, BUNIT, MAGZERO, SEEING`` in their
    headers (non-finite values left out), named ``<raw stem>.CCDnn.<sci|wht|msk>.fits``."""
    header = result.wcs.to_header(relax=True)
    meta = {
        "OBSSET": data_id["obs_set"],
        "CCDNUM": data_id["ccd"],
        "FILTER": data_id["filter"],
        "EXPTIME": exposure.exptime,
        "MJD-OBS": exposure.mjd,
        "AIRMASS": exposure.airmass,
        "BUNIT": "electron",
        "MAGZERO": result.metrics.zp,
        "SEEING": result.metrics.psf_fwhm,
    }
    for key, value in meta.items():
        if value is not None and not (isinstance(value, float) and not np.isfinite(value)):
            header[key] = value
    stem = Path(exposure.filename).stem
    arrays = {"sci": result.science, "wht": result.weight, "msk": result.mask}
    return [
        OutputFile(
            output,
            output.data_id(data_id),
            store.red_path(
                release, data_id["obs_set"], f"{stem}.{ccd_extname(data_id['ccd'])}.{kind}.fits"
            ),
            lambda p, d=arrays[kind]: write_image(p, d, header),
        )
        for kind, output in REDUCED_OUTPUTS.items()
    ]


def image_values(result: CCDReduction, band: Filter, exptime: float) -> dict[str, Any]:
    """Columns of the reduced CCD's ``image`` row (except ``mosaic_id`` and ``product_id``):
    shape, sky bounds and HEALPix index of the centre from the fitted WCS, and the metrics
    (background in e-/pixel, zero-point as ``zp_nightly*``)."""
    m = result.metrics
    ny, nx = result.science.shape
    footprint = result.wcs.calc_footprint(axes=(nx, ny))
    center = result.wcs.all_pix2world([[nx / 2, ny / 2]], 0)[0]
    return dict(
        filter=band.name,
        waveband=band.kind,
        wavelength=band.wavelength_nm,
        naxis1=nx,
        naxis2=ny,
        ra_min=float(footprint[:, 0].min()),
        ra_max=float(footprint[:, 0].max()),
        dec_min=float(footprint[:, 1].min()),
        dec_max=float(footprint[:, 1].max()),
        healpix=int(healpix_index(center[0], center[1])),
        rdnoise=float(np.mean(list(m.read_noise.values()))),
        gain=1.0,
        psf_fwhm=m.psf_fwhm,
        bkg_mean=m.bkg_mean * exptime if m.bkg_mean is not None else None,
        bkg_std=m.bkg_std,
        n_extracted=m.n_extracted,
        zp_nightly=m.zp,
        zp_nightly_err=m.zp_err,
        zp_nightly_stars=m.zp_stars,
        transparency=m.transparency,
        astro_rms=m.astro_rms,
        astro_nstars=m.astro_nstars,
        cosmic_ratio=m.cosmic_ratio,
        saturate_ratio=m.saturate_ratio,
    )


#: detection column <- catalog column, for the nullable float measurements.
_DETECTION_FLOATS = {
    "flux_auto": "flux_auto",
    "flux_err_auto": "flux_err_auto",
    "flux_psf": "flux_psf",
    "flux_err_psf": "flux_err_psf",
    "flux_aper": "flux_aper",
    "flux_err_aper": "flux_err_aper",
    "mag": "mag",
    "mag_err": "mag_err",
    "background": "background",
    "elongation": "elongation",
    "class_star": "class_star",
    "snr": "snr",
}


def detection_rows(
    cat: Table, band: str, production_id: int | None, pixel_scale: float
) -> list[dict[str, Any]]:
    """Detection table rows of a catalog (NaN -> NULL; FWHM converted to arcsec with
    ``pixel_scale``, arcsec/pixel); ``image_id`` is added by the caller."""
    if not len(cat):
        return []
    hp = healpix_index(np.asarray(cat["ra"]), np.asarray(cat["dec"]))
    cols = {
        name: np.asarray(cat[src], float)
        for name, src in _DETECTION_FLOATS.items()
        if src in cat.colnames
    }
    fwhm = np.asarray(cat["fwhm"], float) * pixel_scale
    x, y = np.asarray(cat["x"], float), np.asarray(cat["y"], float)
    ra, dec = np.asarray(cat["ra"], float), np.asarray(cat["dec"], float)
    flags = np.asarray(cat["flags"], int)
    rows = []
    for i in range(len(cat)):
        row = {name: _finite(arr, i) for name, arr in cols.items()}
        row.update(
            production_id=production_id,
            band=band,
            x=float(x[i]),
            y=float(y[i]),
            ra=float(ra[i]),
            dec=float(dec[i]),
            healpix=int(hp[i]),
            fwhm=_finite(fwhm, i),
            flags=int(flags[i]),
        )
        rows.append(row)
    return rows


def _finite(arr: np.ndarray | None, i: int) -> float | None:
    if arr is None or not np.isfinite(arr[i]):
        return None
    return float(arr[i])
