"""Multi-epoch products in the registry: the memba pipeline's forced photometry (seed 000
section 6.1 item 3, table .3: ``forced_aperture``, ``forced_aperture_coadd``,
``memba_ref_cat``) with the deep reference catalog it measures at, and the DVO-like
detection-to-object association (seed 004 sections 2.4-2.5: Average, SecFilt, Measure).

Every row belongs to a production; forced measurements name the image they come from, so a
co-added flux can be traced back to its exposures. Positions carry the nested HEALPix index
(:mod:`surveydm.db.spatial`, order 16).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from surveydm.db.base import Base, BigIntPK


class DeepRefSource(Base):
    """One source of a deep reference catalog for forced photometry (COSMOS-like): position,
    half-light ellipse and r magnitude. The catalog itself is a ``refcat`` row."""

    __tablename__ = "deep_ref_source"
    __table_args__ = (
        UniqueConstraint("refcat_id", "ref_id"),
        Index(None, "refcat_id", "healpix"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    refcat_id: Mapped[int] = mapped_column(ForeignKey("refcat.id", ondelete="CASCADE"))
    ref_id: Mapped[int] = mapped_column(BigInteger, comment="identifier in the catalog")
    ra: Mapped[float] = mapped_column(Float, comment="deg, ICRS")
    dec: Mapped[float] = mapped_column(Float, comment="deg, ICRS")
    healpix: Mapped[int] = mapped_column(BigInteger, comment="nested HEALPix index, order 16")
    a: Mapped[float] = mapped_column(Float, comment="half-light semi-major axis, arcsec")
    b: Mapped[float] = mapped_column(Float, comment="half-light semi-minor axis, arcsec")
    theta: Mapped[float] = mapped_column(Float, comment="position angle, deg east of north")
    mag_r: Mapped[float | None] = mapped_column(Float, comment="r AB magnitude")
    magerr_r: Mapped[float | None] = mapped_column(Float, comment="mag")
    point_source: Mapped[bool] = mapped_column(Boolean, default=False, comment="star flag")


class MembaRefCat(Base):
    """The reference catalog a memba production measures at (seed 000 ``memba_ref_cat``)."""

    __tablename__ = "memba_ref_cat"

    production_id: Mapped[int] = mapped_column(ForeignKey("production.id"), primary_key=True)
    refcat_id: Mapped[int] = mapped_column(ForeignKey("refcat.id"))
    ref_cat: Mapped[str] = mapped_column(String(64), comment="reference catalog name")


class ForcedAperture(Base):
    """One forced aperture measurement of a reference source on one reduced CCD image (seed 000
    ``forced_aperture``). Pixel quantities are 0-based in the image; fluxes are calibrated
    with the image's zero-point, in nJy (AB mag = 31.4 - 2.5 log10 flux)."""

    __tablename__ = "forced_aperture"
    __table_args__ = (
        UniqueConstraint("production_id", "image_id", "ref_id"),
        Index(None, "production_id", "ref_id", "band"),
        Index(None, "healpix"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    production_id: Mapped[int] = mapped_column(ForeignKey("production.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    ref_id: Mapped[int] = mapped_column(BigInteger, comment="reference source identifier")
    band: Mapped[str] = mapped_column(String(32), comment="filter name")
    healpix: Mapped[int] = mapped_column(BigInteger, comment="nested HEALPix index, order 16")
    aperture_x: Mapped[float] = mapped_column(Float, comment="centre column, pixel")
    aperture_y: Mapped[float] = mapped_column(Float, comment="centre row, pixel")
    aperture_a: Mapped[float] = mapped_column(Float, comment="semi-major axis, pixel")
    aperture_b: Mapped[float] = mapped_column(Float, comment="semi-minor axis, pixel")
    aperture_theta: Mapped[float] = mapped_column(Float, comment="angle from +x, deg")
    annulus_a_in: Mapped[float] = mapped_column(Float, comment="pixel")
    annulus_a_out: Mapped[float] = mapped_column(Float, comment="pixel")
    annulus_b_in: Mapped[float] = mapped_column(Float, comment="pixel")
    annulus_b_out: Mapped[float] = mapped_column(Float, comment="pixel")
    annulus_median: Mapped[float | None] = mapped_column(Float, comment="background, e-/pixel")
    annulus_samples: Mapped[int] = mapped_column(Integer, comment="annulus pixels used")
    annulus_sigma: Mapped[float | None] = mapped_column(Float, comment="robust rms, e-/pixel")
    aperture_correction: Mapped[float] = mapped_column(Float, comment="multiplied into flux")
    flux: Mapped[float | None] = mapped_column(Float, comment="nJy")
    flux_error: Mapped[float | None] = mapped_column(Float, comment="nJy")
    flag: Mapped[int] = mapped_column(Integer, default=0, comment="OR of mask bits | forced flags")


class ForcedApertureCoadd(Base):
    """Per reference source and band, the combination of its forced measurements (seed 000
    ``forced_aperture_coadd``): inverse-variance weighted mean after outlier rejection."""

    __tablename__ = "forced_aperture_coadd"
    __table_args__ = (
        UniqueConstraint("production_id", "ref_id", "band"),
        Index(None, "healpix"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    production_id: Mapped[int] = mapped_column(ForeignKey("production.id"))
    ref_id: Mapped[int] = mapped_column(BigInteger, comment="reference source identifier")
    band: Mapped[str] = mapped_column(String(32), comment="filter name")
    healpix: Mapped[int] = mapped_column(BigInteger, comment="nested HEALPix index, order 16")
    flux: Mapped[float | None] = mapped_column(Float, comment="nJy")
    flux_error: Mapped[float | None] = mapped_column(Float, comment="nJy")
    chi2: Mapped[float | None] = mapped_column(Float, comment="of the kept measurements")
    n_coadd: Mapped[int] = mapped_column(Integer, comment="measurements combined")
    n_rejected: Mapped[int] = mapped_column(Integer, default=0, comment="outliers rejected")
    run: Mapped[int] = mapped_column(Integer, default=1, comment="memba run that computed it")


class DvoObject(Base):
    """An object of the detection-to-object association (seed 004 DVO ``Average``): the mean
    position of its detections, with proper motion when the time baseline allows."""

    __tablename__ = "dvo_object"
    __table_args__ = (Index(None, "production_id", "partition"), Index(None, "healpix"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    production_id: Mapped[int] = mapped_column(ForeignKey("production.id"))
    partition: Mapped[int] = mapped_column(BigInteger, comment="HEALPix sky partition (nested)")
    ra: Mapped[float] = mapped_column(Float, comment="mean, deg")
    dec: Mapped[float] = mapped_column(Float, comment="mean, deg")
    healpix: Mapped[int] = mapped_column(BigInteger, comment="nested HEALPix index, order 16")
    ra_error: Mapped[float | None] = mapped_column(Float, comment="arcsec (times cos dec)")
    dec_error: Mapped[float | None] = mapped_column(Float, comment="arcsec")
    pmra: Mapped[float | None] = mapped_column(Float, comment="mas/yr, times cos dec")
    pmdec: Mapped[float | None] = mapped_column(Float, comment="mas/yr")
    n_detections: Mapped[int] = mapped_column(Integer)
    flags: Mapped[int] = mapped_column(Integer, default=0, comment="OR of detection flags")


class DvoObjectBand(Base):
    """Per object and band, the mean calibrated magnitude (seed 004 DVO ``SecFilt``)."""

    __tablename__ = "dvo_object_band"

    object_id: Mapped[int] = mapped_column(
        ForeignKey("dvo_object.id", ondelete="CASCADE"), primary_key=True
    )
    band: Mapped[str] = mapped_column(String(32), primary_key=True)
    n_measurements: Mapped[int] = mapped_column(Integer)
    mag: Mapped[float | None] = mapped_column(Float, comment="weighted mean AB mag")
    mag_error: Mapped[float | None] = mapped_column(Float, comment="mag")


class DvoMeasure(Base):
    """The object a detection belongs to (seed 004 DVO ``Measure``)."""

    __tablename__ = "dvo_measure"

    detection_id: Mapped[int] = mapped_column(
        ForeignKey("detection.id", ondelete="CASCADE"), primary_key=True
    )
    object_id: Mapped[int] = mapped_column(
        ForeignKey("dvo_object.id", ondelete="CASCADE"), primary_key=True, index=True
    )
