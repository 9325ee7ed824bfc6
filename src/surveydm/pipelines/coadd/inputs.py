"""The inputs of a tile co-add, selected in the registry (seed 002 tile coadding step 1:
"select individual images" overlapping the tile, good quality and valid)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from surveydm.archive import Archive
from surveydm.db.models.production import Product, Production
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic
from surveydm.db.models.tiles import Tile
from surveydm.orchestration import QualityFailure
from surveydm.orchestration.qc import QCResult
from surveydm.pipelines.fitsio import RawFileError
from surveydm.reduction.coadd.stack import CoaddInput


@dataclass(frozen=True)
class InputRef:
    """One reduced CCD image selected for a co-add.

    Attributes:
        image_id: ``image.id``; sci, wht, msk: product ids of its science, weight and mask
        files; paths: their archive paths; zp: AB mag for 1 e-/s; exptime: s; name: file name;
        psf_fwhm: single-epoch PSF FWHM, arcsec (None: measured by the co-add).
    """

    image_id: int
    sci: int
    wht: int
    msk: int | None
    sci_path: str
    wht_path: str
    msk_path: str | None
    zp: float
    exptime: float
    name: str
    psf_fwhm: float | None = None


def _box(tile: Tile) -> tuple[float, float, float, float]:
    """RA/Dec bounds (deg) of the tile's circumscribed box."""
    half = tile.size_deg / np.sqrt(2.0)
    dra = half / max(np.cos(np.radians(min(abs(tile.dec) + half, 89.9))), 1e-3)
    return tile.ra - dra, tile.ra + dra, tile.dec - half, tile.dec + half


def select_inputs(session: Session, tile: Tile, band: str, release: str | None) -> list[InputRef]:
    """Reduced CCD images of ``band`` whose sky bounds overlap the tile, from nightly
    productions of ``release`` (any release when None), whose science product is valid and did
    not fail QC, whose exposure did not fail QC, and that have a zero-point and an exposure time.
    Where a CCD was reduced by several productions, the newest product is taken.
    (Boxes crossing RA = 0 are not handled.)"""
    ra0, ra1, dec0, dec1 = _box(tile)
    wht, msk = aliased(Product), aliased(Product)
    fsci, fwht, fmsk = aliased(ArchiveFile), aliased(ArchiveFile), aliased(ArchiveFile)
    q = (
        select(Image, Mosaic, Product, fsci.path, wht.id, fwht.path, msk.id, fmsk.path)
        .join(Mosaic, Image.mosaic_id == Mosaic.id)
        .join(Product, Image.product_id == Product.id)
        .join(fsci, Product.file_id == fsci.id)
        .join(wht, (wht.job_id == Product.job_id) & (wht.product_type == "reduced_wht"))
        .join(fwht, wht.file_id == fwht.id)
        .outerjoin(msk, (msk.job_id == Product.job_id) & (msk.product_type == "reduced_msk"))
        .outerjoin(fmsk, msk.file_id == fmsk.id)
        .where(
            Mosaic.kind == "red_science",
            Image.amp_num.is_(None),
            Image.filter == band,
            Image.zp_nightly.is_not(None),
            Mosaic.exptime > 0,
            Product.valid.is_(True),
            Product.quality != QCResult.FAIL,
            or_(Mosaic.qc_status.is_(None), Mosaic.qc_status != QCResult.FAIL),
            Image.ra_max >= ra0,
            Image.ra_min <= ra1,
            Image.dec_max >= dec0,
            Image.dec_min <= dec1,
        )
        .order_by(Product.id.desc())
    )
    if release is not None:
        q = q.join(Production, Product.production_id == Production.id).where(
            Production.release == release
        )
    seen: set[tuple[int | None, int]] = set()
    refs = []
    for img, mos, prod, sci_path, wid, wpath, mid, mpath in session.execute(q):
        key = (mos.parent_id, img.ccd_num)
        if key in seen:
            continue
        seen.add(key)
        refs.append(
            InputRef(
                img.id,
                prod.id,
                wid,
                mid,
                sci_path,
                wpath,
                mpath,
                float(img.zp_nightly),
                float(mos.exptime),
                Path(sci_path).name,
                float(img.psf_fwhm) if img.psf_fwhm else None,
            )
        )
    return sorted(refs, key=lambda r: r.sci)


def read_input(store: Archive, ref: InputRef) -> CoaddInput:
    """The arrays and WCS of a selected input, native float32.

    Raises:
        QualityFailure: a file is unreadable, or the science file has no celestial WCS.
    """
    try:
        with fits.open(store.abspath(ref.sci_path), memmap=False) as hdul:
            image = np.asarray(hdul[0].data, np.float32)
            wcs = WCS(hdul[0].header).celestial
        with fits.open(store.abspath(ref.wht_path), memmap=False) as hdul:
            weight = np.asarray(hdul[0].data, np.float32)
        mask = None
        if ref.msk_path:
            with fits.open(store.abspath(ref.msk_path), memmap=False) as hdul:
                mask = np.asarray(hdul[0].data).astype(np.int32)
    except (OSError, ValueError, TypeError, IndexError, RawFileError) as exc:
        raise QualityFailure(f"{ref.name}: cannot read co-add input ({exc})") from exc
    if not wcs.has_celestial:
        raise QualityFailure(f"{ref.name}: no celestial WCS in the science file")
    return CoaddInput(image, weight, mask, wcs, ref.zp, ref.exptime, ref.name, ref.psf_fwhm)


@dataclass(frozen=True)
class StaleTile:
    """A recorded co-add made from an input that is now invalid or failed QC.

    Attributes:
        tile: tile name; band; production_id; product_id: its ``coadd_sci`` product;
        bad_inputs: product ids of the reduced inputs that are no longer good.
    """

    tile: str
    band: str
    production_id: int | None
    product_id: int
    bad_inputs: tuple[int, ...]


def stale_tiles(session: Session, production_id: int | None = None) -> list[StaleTile]:
    """Co-adds (of one production, or all) with a reduced input that a human flagged invalid
    or whose QC failed since (seed 002: "flagging images as invalid in DB will trigger the
    reprocessing of any tile that have used it"): the ``bad_input`` / ``failed_input`` causes
    of :func:`surveydm.pipelines.lineage.stale.bad_inputs`, by tile name and band.
    """
    from surveydm.db.models.tiles import TileImage
    from surveydm.pipelines.lineage.stale import bad_inputs

    coadds = select(TileImage.product_id)
    if production_id is not None:
        coadds = coadds.where(TileImage.production_id == production_id)
    bad = bad_inputs(session, coadds, role="reduced")
    rows = session.execute(
        select(Tile.name, TileImage)
        .join(TileImage, TileImage.tile_id == Tile.id)
        .where(TileImage.product_id.in_(list(bad)))
        .order_by(Tile.name, TileImage.band)
    )
    return [
        StaleTile(
            name,
            ti.band,
            ti.production_id,
            ti.product_id,
            tuple(c.source_id for c in bad[ti.product_id]),
        )  # fmt: skip
        for name, ti in rows
    ]
