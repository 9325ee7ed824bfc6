"""Five-line scripts over the registry (seed 003's ``Awe>`` prompt): reduced images as an
astropy Table, and beside each the calibration it used, through the lineage, with that frame's
QC figures, so that a question like "the sky noise of every r-band image of a night against
the residual RMS of the master flat each used" is a few lines:

>>> survey = Survey(registry)
>>> images = survey.images(night="2026-11-20", band="r")
>>> images = survey.with_calibration(images, "flat", stat="residual_rms")
>>> images["ccd", "bkg_std", "flat_product_id", "flat_residual_rms"].pprint()
ccd bkg_std flat_product_id flat_residual_rms
--- ------- --------------- -----------------
  1    11.0              10             0.002
  2    12.0              10             0.002
>>> print(len(images), images["flat_night"][0], images["validity"][0])
2 2026-11-20 ok

(``registry`` is a :class:`surveydm.db.Registry`; the figures are those of the test graph in
``tests/lineage_support.py``.)
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from sqlalchemy import select

from surveydm.db import Registry
from surveydm.db.models.calibration import CalibrationFrame
from surveydm.db.models.production import Product, ProductInput
from surveydm.db.models.raw import Image, Mosaic, ObsSet

#: Image columns :meth:`Survey.images` returns (with ``image_id``, ``product_id``,
#: ``obs_set``, ``night``, ``mosaic_id`` and ``ccd``).
IMAGE_COLUMNS = ("filter", "bkg_std", "psf_fwhm", "zp_nightly", "astro_rms", "transparency")


class Survey:
    """Read-only navigation of a registry's products, answering with astropy Tables.

    Args:
        registry: the registry to read.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def images(
        self, *, night: str | None = None, band: str | None = None, obs_set: str | None = None
    ) -> Table:
        """Reduced CCD images (one row per ``image`` row with a product), optionally of one
        night (``YYYY-MM-DD``), band and obs set, ordered by exposure and CCD.

        Columns: ``image_id``, ``product_id``, ``obs_set``, ``night``, ``mosaic_id`` (the
        reduced mosaic), ``ccd``, ``quality``, ``validity`` and :data:`IMAGE_COLUMNS`
        (``bkg_std`` e-/pixel, ``psf_fwhm`` arcsec, ``zp_nightly`` mag, ``astro_rms`` arcsec).
        """
        cols = [getattr(Image, c) for c in IMAGE_COLUMNS]
        stmt = (
            select(Image.id, Image.product_id, ObsSet.obs_set, ObsSet.night, Image.mosaic_id,
                   Image.ccd_num, Product.quality, Product.validity, *cols)
            .join(Product, Product.id == Image.product_id)
            .join(Mosaic, Mosaic.id == Image.mosaic_id)
            .join(ObsSet, ObsSet.id == Mosaic.obs_set_id)
            .order_by(Image.mosaic_id, Image.ccd_num, Image.id)
        )  # fmt: skip
        if night is not None:
            stmt = stmt.where(ObsSet.night == np.datetime64(night).astype(object))
        if band is not None:
            stmt = stmt.where(Image.filter == band)
        if obs_set is not None:
            stmt = stmt.where(ObsSet.obs_set == obs_set)
        with self.registry.session(write=False) as s:
            rows = s.execute(stmt).all()
        names = ["image_id", "product_id", "obs_set", "night", "mosaic_id", "ccd", "quality",
                 "validity", *IMAGE_COLUMNS]  # fmt: skip
        table = Table(rows=[tuple(r) for r in rows], names=names) if rows else Table(names=names)
        if rows:
            table["night"] = [str(n) for n in table["night"]]
        return table

    def with_calibration(self, images: Table, role: str, *, stat: str | None = None) -> Table:
        """``images`` with the calibration each used in ``role`` (``bias``, ``flat``,
        ``fringe``) read from its lineage: ``{role}_product_id``, ``{role}_night``, and with
        ``stat`` the frame's QC figure for that CCD (``calibration_frame.stats``, e.g.
        ``residual_rms`` of a master flat) as ``{role}_{stat}``; missing values are masked.
        """
        ids = [int(p) for p in images["product_id"]]
        stmt = (
            select(ProductInput.product_id, CalibrationFrame.product_id, CalibrationFrame.night,
                   CalibrationFrame.stats)
            .join(CalibrationFrame, CalibrationFrame.product_id == ProductInput.input_id)
            .where(ProductInput.product_id.in_(ids), ProductInput.role == role)
        )  # fmt: skip
        with self.registry.session(write=False) as s:
            used = {r[0]: r[1:] for r in s.execute(stmt)}
        out = images.copy()
        found = [used.get(p) for p in ids]
        out[f"{role}_product_id"] = np.ma.masked_array(
            [f[0] if f else 0 for f in found], mask=[f is None for f in found]
        )
        out[f"{role}_night"] = [f[1] if f else "" for f in found]
        if stat is not None:
            values = [
                (f[2] or {}).get(str(ccd), {}).get(stat) if f else None
                for f, ccd in zip(found, images["ccd"], strict=True)
            ]
            out[f"{role}_{stat}"] = np.ma.masked_array(
                [np.nan if v is None else float(v) for v in values],
                mask=[v is None for v in values],
            )
        return out
