"""Sky tilings in the registry: define a tiling over a region (or over the reduced images
registered so far), and read tiles back as :class:`~surveydm.reduction.coadd.TileSpec`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from surveydm.db import Registry
from surveydm.db.models.raw import Image, Mosaic
from surveydm.db.models.tiles import Tile, Tiling
from surveydm.db.spatial import healpix_index
from surveydm.errors import SurveydmError
from surveydm.reduction.coadd.tiling import COVERAGE_ORDER, TileSpec, make_tiling


class TilingError(SurveydmError):
    """A tiling or tile that does not exist, or a definition that cannot be made."""


@dataclass(frozen=True)
class TilingPreset:
    """A survey's tiling: tile side (deg), pixel scale (arcsec/pixel), overlap (deg)."""

    size_deg: float
    pixel_scale: float
    overlap_deg: float


#: Tilings of the surveys surveydm knows (J-PLUS: 1.4 deg tiles, T80Cam's 0.55 arcsec pixels,
#: Cenarro et al. 2019; ``mini``: tiles for the mini cameras of the simulator).
PRESETS = {
    "jplus": TilingPreset(1.4, 0.55, 0.05),
    "mini": TilingPreset(0.1, 0.5, 0.005),
}


def reduced_footprint(session: Session) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(ra_min, ra_max), (dec_min, dec_max) of the reduced CCD images (deg), or None."""
    row = session.execute(
        select(
            func.min(Image.ra_min),
            func.max(Image.ra_max),
            func.min(Image.dec_min),
            func.max(Image.dec_max),
        )
        .join(Mosaic, Image.mosaic_id == Mosaic.id)
        .where(Mosaic.kind == "red_science", Image.amp_num.is_(None), Image.ra_min.is_not(None))
    ).one()
    if row[0] is None:
        return None
    return (float(row[0]), float(row[1])), (float(row[2]), float(row[3]))


def define_tiling(
    registry: Registry,
    name: str,
    preset: TilingPreset,
    *,
    ra_range: tuple[float, float] | None = None,
    dec_range: tuple[float, float] | None = None,
) -> list[str]:
    """Register the tiles of tiling ``name`` whose centres fall within the region, or, without
    a region, within half a tile of the reduced images registered so far. Tiles already
    registered are kept (a tiling is fixed once defined: the same name, size and scale).

    Returns:
        The names of the tiles added.

    Raises:
        TilingError: the name exists with another geometry, or there is no region and no
            reduced image to cover.
    """
    with registry.session() as s:
        tiling = s.scalar(select(Tiling).where(Tiling.name == name))
        if tiling is not None and (tiling.size_deg, tiling.pixel_scale) != (
            preset.size_deg,
            preset.pixel_scale,
        ):
            raise TilingError(
                f"tiling {name!r} exists with {tiling.size_deg} deg tiles of "
                f"{tiling.pixel_scale} arcsec pixels: choose another name"
            )
        if ra_range is None or dec_range is None:
            foot = reduced_footprint(s)
            if foot is None:
                raise TilingError("no region given and no reduced image to cover")
            pad = preset.size_deg / 2
            ra_range = ra_range or (foot[0][0] - pad, foot[0][1] + pad)
            dec_range = dec_range or (foot[1][0] - pad, foot[1][1] + pad)
        if tiling is None:
            tiling = Tiling(
                name=name,
                size_deg=preset.size_deg,
                pixel_scale=preset.pixel_scale,
                overlap_deg=preset.overlap_deg,
            )
            s.add(tiling)
            s.flush()
        specs = make_tiling(
            name,
            size_deg=preset.size_deg,
            pixel_scale=preset.pixel_scale,
            overlap_deg=preset.overlap_deg,
            ra_range=ra_range,
            dec_range=dec_range,
        )
        known = set(s.scalars(select(Tile.name).where(Tile.tiling_id == tiling.id)))
        added = [t for t in specs if t.name not in known]
        s.add_all(tile_row(tiling.id, t) for t in added)
    return [t.name for t in added]


def tile_row(tiling_id: int, spec: TileSpec) -> Tile:
    """The ``tile`` row of a :class:`TileSpec`."""
    return Tile(
        tiling_id=tiling_id,
        name=spec.name,
        ra=spec.ra,
        dec=spec.dec,
        size_deg=spec.size_deg,
        pixel_scale=spec.pixel_scale,
        naxis1=spec.naxis1,
        naxis2=spec.naxis2,
        projection="TAN",
        healpix=int(healpix_index(spec.ra, spec.dec)),
        coverage={"order": COVERAGE_ORDER, "cells": spec.coverage()},
    )


def tile_spec(tile: Tile) -> TileSpec:
    """The :class:`TileSpec` of a ``tile`` row."""
    return TileSpec(
        tile.name, tile.ra, tile.dec, tile.size_deg, tile.pixel_scale, tile.naxis1, tile.naxis2
    )


def get_tiles(session: Session, names: Sequence[str] = (), tiling: str | None = None) -> list[Tile]:
    """Tiles by name (all of ``tiling``, or of every tiling, when no name is given).

    Raises:
        TilingError: a named tile or the tiling is not registered.
    """
    q = select(Tile).order_by(Tile.name)
    if tiling is not None:
        tid = session.scalar(select(Tiling.id).where(Tiling.name == tiling))
        if tid is None:
            raise TilingError(f"tiling {tiling!r} is not defined: run `surveydm tiles define`")
        q = q.where(Tile.tiling_id == tid)
    if names:
        q = q.where(Tile.name.in_(list(names)))
    tiles = list(session.scalars(q))
    missing = sorted(set(names) - {t.name for t in tiles})
    if missing:
        raise TilingError(f"unknown tile(s): {', '.join(missing)}")
    return tiles
