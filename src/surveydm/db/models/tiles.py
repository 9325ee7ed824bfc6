"""Sky tilings, co-added tiles and their catalogs in the registry (seed 002: tiles, tile
co-adds with depth and QC, single- and dual-mode catalogs; seed 004 section 3.5: skycells).

* ``tiling``: a named grid configured per survey (tile size, pixel scale, overlap).
* ``tile``: one tile (centre, size, TAN projection, pixel grid, HEALPix coverage).
* ``tile_image``: one co-added tile and band of a production, with its depth, PSF, area and
  QC; its files and lineage are those of its ``coadd_sci`` product.
* ``tile_source``: one source of a tile catalog in one band, single mode (detected in that
  band) or dual mode (detected in the reference band, measured on PSF-homogenised images);
  aperture fluxes are array columns on PostgreSQL and JSON arrays on SQLite.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from surveydm.db.base import Base, BigIntPK, utcnow

#: An array of floats: ``double precision[]`` on PostgreSQL, a JSON array on SQLite.
FloatArray = JSON().with_variant(ARRAY(Float), "postgresql")


class Tiling(Base):
    """A named sky tiling (e.g. J-PLUS-like 1.4 deg tiles, or small tiles for a mini camera)."""

    __tablename__ = "tiling"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, comment="tiling name")
    size_deg: Mapped[float] = mapped_column(Float, comment="tile side, deg")
    pixel_scale: Mapped[float] = mapped_column(Float, comment="arcsec/pixel of the tiles")
    overlap_deg: Mapped[float] = mapped_column(Float, default=0.0, comment="min overlap, deg")
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Tile(Base):
    """One tile of a tiling: a TAN projection centred on (ra, dec), north up."""

    __tablename__ = "tile"
    __table_args__ = (Index(None, "healpix"), Index(None, "dec", "ra"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tiling_id: Mapped[int] = mapped_column(ForeignKey("tiling.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, comment="<tiling>-<ring>-<n>")
    ra: Mapped[float] = mapped_column(Float, comment="centre, deg ICRS")
    dec: Mapped[float] = mapped_column(Float, comment="centre, deg ICRS")
    size_deg: Mapped[float] = mapped_column(Float, comment="side, deg")
    pixel_scale: Mapped[float] = mapped_column(Float, comment="arcsec/pixel")
    naxis1: Mapped[int] = mapped_column(Integer, comment="columns")
    naxis2: Mapped[int] = mapped_column(Integer, comment="rows")
    projection: Mapped[str] = mapped_column(String(8), default="TAN", comment="FITS projection")
    healpix: Mapped[int] = mapped_column(BigInteger, comment="nested HEALPix, order 16, centre")
    coverage: Mapped[dict[str, Any]] = mapped_column(
        default=dict, comment="{'order': k, 'cells': [nested HEALPix cells touched]}"
    )
    created: Mapped[datetime] = mapped_column(default=utcnow)

    tiling: Mapped[Tiling] = relationship()


class TileImage(Base):
    """A co-added tile in one band, made by one production."""

    __tablename__ = "tile_image"
    __table_args__ = (UniqueConstraint("tile_id", "band", "production_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tile_id: Mapped[int] = mapped_column(ForeignKey("tile.id", ondelete="CASCADE"), index=True)
    band: Mapped[str] = mapped_column(String(32), comment="filter name")
    production_id: Mapped[int | None] = mapped_column(ForeignKey("production.id"), index=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("product.id"), unique=True, comment="the coadd_sci product (files, lineage)"
    )
    n_inputs: Mapped[int] = mapped_column(Integer, comment="reduced CCD images combined")
    zp: Mapped[float] = mapped_column(Float, comment="AB mag for 1 unit of the co-add")
    psf_fwhm: Mapped[float | None] = mapped_column(Float, comment="PSF FWHM, arcsec")
    depth: Mapped[float | None] = mapped_column(
        Float, comment="5-sigma limiting AB mag in depth_aperture"
    )
    depth_aperture: Mapped[float] = mapped_column(Float, comment="aperture diameter, arcsec")
    area_fraction: Mapped[float] = mapped_column(
        Float, comment="fraction of the tile in the tile area (exposure > fraction of the max)"
    )
    exptime_max: Mapped[float] = mapped_column(Float, comment="max summed exposure time, s")
    rejected_fraction: Mapped[float] = mapped_column(
        Float, comment="input pixels rejected / input pixels with data"
    )
    completeness: Mapped[dict[str, Any] | None] = mapped_column(
        comment="{'mag': [...], 'fraction': [...]} from injected point sources"
    )
    n_sources: Mapped[int] = mapped_column(Integer, default=0, comment="single-mode sources")
    quality: Mapped[str] = mapped_column(String(16), default="pass", comment="worst QC result")
    created: Mapped[datetime] = mapped_column(default=utcnow)

    tile: Mapped[Tile] = relationship()


class TileSource(Base):
    """One source of a tile catalog measured in one band (fluxes in co-add units: AB mag =
    ``tile_image.zp - 2.5 log10(flux)``)."""

    __tablename__ = "tile_source"
    __table_args__ = (Index(None, "tile_id", "mode", "band"), Index(None, "healpix"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tile_id: Mapped[int] = mapped_column(ForeignKey("tile.id", ondelete="CASCADE"))
    production_id: Mapped[int | None] = mapped_column(ForeignKey("production.id"), index=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("product.id"), index=True, comment="the catalog product it belongs to"
    )
    mode: Mapped[str] = mapped_column(String(8), comment="single or dual")
    band: Mapped[str] = mapped_column(String(32), comment="band measured")
    detection_band: Mapped[str] = mapped_column(String(32), comment="band detected in")
    number: Mapped[int] = mapped_column(Integer, comment="source number in its catalog (1..n)")
    x: Mapped[float] = mapped_column(Float, comment="tile pixel, 0-based column")
    y: Mapped[float] = mapped_column(Float, comment="tile pixel, 0-based row")
    ra: Mapped[float] = mapped_column(Float, comment="deg, ICRS")
    dec: Mapped[float] = mapped_column(Float, comment="deg, ICRS")
    healpix: Mapped[int] = mapped_column(BigInteger, comment="nested HEALPix index, order 16")
    a: Mapped[float] = mapped_column(Float, comment="semi-major axis, pixels")
    b: Mapped[float] = mapped_column(Float, comment="semi-minor axis, pixels")
    theta: Mapped[float] = mapped_column(Float, comment="position angle, rad")
    kron_radius: Mapped[float] = mapped_column(Float, comment="units of a")
    aper_diameters: Mapped[list[float]] = mapped_column(FloatArray, comment="arcsec")
    flux_aper: Mapped[list[float | None]] = mapped_column(FloatArray, comment="per aperture")
    flux_err_aper: Mapped[list[float | None]] = mapped_column(FloatArray)
    flux_auto: Mapped[float | None] = mapped_column(Float, comment="Kron flux")
    flux_err_auto: Mapped[float | None] = mapped_column(Float)
    flux_psf: Mapped[float | None] = mapped_column(Float, comment="PSF-fit flux")
    flux_err_psf: Mapped[float | None] = mapped_column(Float)
    mag_auto: Mapped[float | None] = mapped_column(Float, comment="AB mag, Kron")
    mag_psf: Mapped[float | None] = mapped_column(Float, comment="AB mag, PSF fit")
    flags: Mapped[int] = mapped_column(Integer, default=0, comment="sep flags | FLAG_* bits")
