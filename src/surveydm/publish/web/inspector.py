"""The aperture inspector's data (seed 000 section 7.5): find reference sources by id, by
position or by a flux cut; an object's co-added fluxes per band with the band's wavelength and
width; the forced measurements behind one band with their exposure's conditions; and the
pictures (the fluxes against wavelength, the image around the object with the aperture and
annulus drawn). Read-only."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from surveydm.db.models.multiepoch import DeepRefSource, ForcedAperture, ForcedApertureCoadd
from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic
from surveydm.db.spatial import cone_ranges

#: Most objects a search lists.
MAX_RESULTS = 200


@dataclass(frozen=True)
class Found:
    """A reference source a search found: id, position (deg), r magnitude, bands co-added."""

    ref_id: int
    ra: float
    dec: float
    mag_r: float | None
    n_bands: int


@dataclass(frozen=True)
class BandFlux:
    """A co-added flux (nJy) with the band's wavelength and width (nm) and kind."""

    band: str
    wavelength_nm: float | None
    width_nm: float | None
    narrow: bool
    flux: float | None
    flux_error: float | None
    chi2: float | None
    n_coadd: int


@dataclass(frozen=True)
class Measurement:
    """One forced measurement with its image's conditions."""

    id: int
    image_id: int
    filename: str
    ccd: int
    date_obs: datetime | None
    mjd: float | None
    seeing: float | None
    airmass: float | None
    flux: float | None
    flux_error: float | None
    aperture_a: float
    aperture_b: float
    aperture_theta: float
    annulus_median: float | None
    annulus_sigma: float | None
    flag: int


def search(
    session: Session,
    *,
    ref_id: int | None = None,
    ra: float | None = None,
    dec: float | None = None,
    radius_arcsec: float = 10.0,
    band: str | None = None,
    min_flux: float | None = None,
) -> list[Found]:
    """Reference sources matching an id, a cone (ra, dec, radius) and/or a co-added flux
    cut (``min_flux`` nJy in ``band``), at most :data:`MAX_RESULTS`, by id."""
    n_bands = (
        select(func.count())
        .where(ForcedApertureCoadd.ref_id == DeepRefSource.ref_id)
        .correlate(DeepRefSource)
        .scalar_subquery()
    )
    q = select(DeepRefSource.ref_id, DeepRefSource.ra, DeepRefSource.dec, DeepRefSource.mag_r,
               n_bands)  # fmt: skip
    if ref_id is not None:
        q = q.where(DeepRefSource.ref_id == ref_id)
    if ra is not None and dec is not None:
        r = radius_arcsec / 3600
        q = q.where(or_(*(DeepRefSource.healpix.between(lo, hi)
                          for lo, hi in cone_ranges(ra, dec, r))))  # fmt: skip
    if band and min_flux is not None:
        q = q.where(
            DeepRefSource.ref_id.in_(
                select(ForcedApertureCoadd.ref_id).where(
                    ForcedApertureCoadd.band == band, ForcedApertureCoadd.flux >= min_flux
                )
            )
        )
    rows = session.execute(q.order_by(DeepRefSource.ref_id).limit(MAX_RESULTS * 4))
    out = [Found(int(i), float(a), float(d), m, int(n)) for i, a, d, m, n in rows]
    if ra is not None and dec is not None:
        cosd = math.cos(math.radians(dec))
        out = [f for f in out
               if math.hypot((f.ra - ra) * cosd, f.dec - dec) * 3600 <= radius_arcsec]  # fmt: skip
    return out[:MAX_RESULTS]


def band_fluxes(session: Session, ref_id: int) -> list[BandFlux]:
    """The object's co-added fluxes, by wavelength (the band's, from its images and camera)."""
    rows = session.execute(
        select(ForcedApertureCoadd).where(ForcedApertureCoadd.ref_id == ref_id)
    ).scalars()
    out = []
    for c in rows:
        wl, kind, instrument = session.execute(
            select(Image.wavelength, Image.waveband, Mosaic.instrument)
            .join(Mosaic, Mosaic.id == Image.mosaic_id)
            .where(Image.filter == c.band)
            .limit(1)
        ).one_or_none() or (None, None, None)
        out.append(BandFlux(c.band, wl, _width(instrument, c.band), kind == "narrow", c.flux,
                            c.flux_error, c.chi2, c.n_coadd))  # fmt: skip
    return sorted(out, key=lambda b: (b.wavelength_nm is None, b.wavelength_nm or 0, b.band))


def _width(instrument: str | None, band: str) -> float | None:
    if not instrument:
        return None
    try:
        from surveydm.instruments import load_instrument

        return float(load_instrument(instrument).filter(band).width_nm)
    except Exception:  # noqa: BLE001 (an unknown camera or band only loses the bar width)
        return None


def measurements(session: Session, ref_id: int, band: str) -> list[Measurement]:
    """Every forced measurement of the object in ``band``, by time."""
    rows = session.execute(
        select(ForcedAperture, Image.ccd_num, Image.psf_fwhm, Mosaic.filename, Mosaic.date_obs,
               Mosaic.mjd_obs, Mosaic.airmass)
        .join(Image, Image.id == ForcedAperture.image_id)
        .join(Mosaic, Mosaic.id == Image.mosaic_id)
        .where(ForcedAperture.ref_id == ref_id, ForcedAperture.band == band)
        .order_by(Mosaic.mjd_obs, ForcedAperture.id)
    ).all()  # fmt: skip
    return [
        Measurement(
            f.id,
            f.image_id,
            name,
            ccd,
            when,
            mjd,
            seeing,
            airmass,
            f.flux,
            f.flux_error,
            f.aperture_a,
            f.aperture_b,
            f.aperture_theta,
            f.annulus_median,
            f.annulus_sigma,
            f.flag,
        )  # fmt: skip
        for f, ccd, seeing, name, when, mjd, airmass in rows
    ]


def sed_png(bands: list[BandFlux], ref_id: int) -> bytes:
    """Fluxes against wavelength: narrow bands as points with error bars, broad bands as
    horizontal bars over the filter width (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    for b in bands:
        if b.wavelength_nm is None or b.flux is None:
            continue
        err = b.flux_error or 0.0
        if b.narrow:
            ax.errorbar(b.wavelength_nm, b.flux, yerr=err, fmt="o", color="tab:blue", ms=4)
        else:
            half = (b.width_nm or 100.0) / 2
            ax.errorbar(b.wavelength_nm, b.flux, xerr=half, yerr=err, fmt="none",
                        color="tab:orange", lw=2)  # fmt: skip
            ax.annotate(b.band, (b.wavelength_nm, b.flux), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
    ax.set_xlabel("wavelength (nm)")
    ax.set_ylabel("co-added flux (nJy)")
    ax.set_title(f"reference source {ref_id}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def cutout_png(session: Session, archive_root: Path, forced_id: int, half: int = 20) -> bytes:
    """The reduced image around a forced measurement with its aperture (green) and annulus
    (yellow) drawn (PNG), or raises LookupError when the measurement or its file is gone."""
    row = session.execute(
        select(ForcedAperture, ArchiveFile.path)
        .join(Image, Image.id == ForcedAperture.image_id)
        .join(Product, Product.id == Image.product_id)
        .join(ArchiveFile, ArchiveFile.id == Product.file_id)
        .where(ForcedAperture.id == forced_id)
    ).one_or_none()
    if row is None:
        raise LookupError(f"no forced measurement {forced_id}")
    f, rel = row
    path = Path(archive_root) / rel
    if not path.is_file():
        raise LookupError(f"the image file of measurement {forced_id} is not in the archive")
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        data = hdul[0].data
        x0, y0 = int(round(f.aperture_x)), int(round(f.aperture_y))
        ys = slice(max(y0 - half, 0), min(y0 + half + 1, data.shape[0]))
        xs = slice(max(x0 - half, 0), min(x0 + half + 1, data.shape[1]))
        stamp = np.asarray(data[ys, xs], float)
    return _stamp_png(stamp, f, xs.start, ys.start)


def _stamp_png(stamp: np.ndarray, f: ForcedAperture, x_off: int, y_off: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    lo, hi = np.nanpercentile(stamp, [5, 99.5]) if stamp.size else (0, 1)
    fig, ax = plt.subplots(figsize=(3.2, 3.2), dpi=100)
    ax.imshow(stamp, origin="lower", cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
    cx, cy = f.aperture_x - x_off, f.aperture_y - y_off
    for a, b, colour in [(f.aperture_a, f.aperture_b, "lime"),
                         (f.annulus_a_in, f.annulus_b_in, "yellow"),
                         (f.annulus_a_out, f.annulus_b_out, "yellow")]:  # fmt: skip
        ax.add_patch(Ellipse((cx, cy), 2 * a, 2 * b, angle=f.aperture_theta, fill=False,
                             color=colour, lw=1.2))  # fmt: skip
    ax.set_axis_off()
    fig.tight_layout(pad=0.1)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
