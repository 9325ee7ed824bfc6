"""Nightly products in the registry: calibration frames with validity ranges and detections
(seed 000 tables .1 and .2; Astro-WISE calibration timestamps, seed 003).

A calibration frame is a :class:`~surveydm.db.models.production.Product` with a validity range:
its quality (QC), human validity flag, production and job are those of its product, recorded
once there. The nightly zero-point of a reduced CCD is a column of its ``image`` row
(``zp_nightly``), with the reference catalog it was measured against in the image product's
lineage (role ``refcat``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from surveydm.db.base import Base, BigIntPK, utcnow
from surveydm.db.models.production import Product


class CalibrationFrame(Base):
    """A master calibration (bias, flat, dark, fringe) with its validity time range.

    A science exposure at time t uses the best frame of its kind (and filter tray, for flats)
    whose product neither failed QC nor was invalidated by a human (``product.quality``,
    ``product.valid``): one whose range covers t (same night by default), else the nearest
    valid one in time (:func:`surveydm.pipelines.calibrations.find_calibration`).
    """

    __tablename__ = "calibration_frame"
    __table_args__ = (Index(None, "kind", "instrument", "filter_tray", "valid_from"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), comment="master_bias, master_flat, ...")
    instrument: Mapped[str] = mapped_column(String(64))
    filter_tray: Mapped[str | None] = mapped_column(String(32), comment="for flats")
    night: Mapped[str] = mapped_column(String(10), comment="YYYY-MM-DD it was made for")
    obs_set_id: Mapped[int | None] = mapped_column(ForeignKey("obs_set.id"), index=True)
    valid_from: Mapped[datetime] = mapped_column(comment="start of validity (UTC)")
    valid_until: Mapped[datetime] = mapped_column(comment="end of validity (UTC)")
    n_input: Mapped[int] = mapped_column(Integer, comment="number of raw frames combined")
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict, comment="QC figures per CCD")
    product_id: Mapped[int] = mapped_column(
        ForeignKey("product.id"),
        unique=True,
        comment="the frame's product: file, production, job, quality and validity",
    )
    created: Mapped[datetime] = mapped_column(default=utcnow)

    product: Mapped[Product] = relationship()


class Detection(Base):
    """A source measured on a reduced CCD image by the nightly pipeline (seed 000 ``detection``)."""

    __tablename__ = "detection"
    __table_args__ = (Index(None, "healpix"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    production_id: Mapped[int | None] = mapped_column(ForeignKey("production.id"))
    band: Mapped[str] = mapped_column(String(32), comment="filter name")
    x: Mapped[float] = mapped_column(Float, comment="pixel, 0-based column")
    y: Mapped[float] = mapped_column(Float, comment="pixel, 0-based row")
    ra: Mapped[float] = mapped_column(Float, comment="deg, ICRS")
    dec: Mapped[float] = mapped_column(Float, comment="deg, ICRS")
    healpix: Mapped[int] = mapped_column(BigInteger, comment="nested HEALPix index, order 16")
    flux_auto: Mapped[float | None] = mapped_column(Float, comment="Kron flux, e-")
    flux_err_auto: Mapped[float | None] = mapped_column(Float, comment="e-")
    flux_psf: Mapped[float | None] = mapped_column(Float, comment="PSF-fit flux, e-")
    flux_err_psf: Mapped[float | None] = mapped_column(Float, comment="e-")
    flux_aper: Mapped[float | None] = mapped_column(Float, comment="aperture flux, e-")
    flux_err_aper: Mapped[float | None] = mapped_column(Float, comment="e-")
    mag: Mapped[float | None] = mapped_column(
        Float, comment="calibrated AB mag (PSF-fit flux, else Kron)"
    )
    mag_err: Mapped[float | None] = mapped_column(Float)
    background: Mapped[float | None] = mapped_column(Float, comment="e-/pixel")
    fwhm: Mapped[float | None] = mapped_column(Float, comment="arcsec")
    elongation: Mapped[float | None] = mapped_column(Float, comment="a/b")
    class_star: Mapped[float | None] = mapped_column(Float, comment="stellarity 0..1")
    snr: Mapped[float | None] = mapped_column(Float)
    flags: Mapped[int] = mapped_column(Integer, default=0, comment="sep flags | mask bits")
