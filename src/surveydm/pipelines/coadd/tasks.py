"""The co-add pipeline as job-system tasks (seed 002 tile coadding; seed 004 sections
3.5-3.7), in the task shape of the nightly pipeline::

    coadd (prolog: one coadd_tile per tile and band with inputs, then one tile_catalog per
           tile after its bands; epilog: sub-job counts)
      coadd_tile   (select -> read -> reduction.coadd.coadd_tile -> single-mode catalog,
                    completeness in the reference band -> files, tile_image, tile_source)
      tile_catalog (the tile's co-adds -> reduction.coadd.catalog.dual_mode -> catalog file,
                    tile_source rows in dual mode)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.config import load_settings
from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile
from surveydm.db.models.tiles import Tile, TileImage, TileSource
from surveydm.orchestration import JobContext, QualityFailure, Task, register_task
from surveydm.orchestration.qc import QCResult
from surveydm.orchestration.records import job_key
from surveydm.pipelines.base.connections import archive
from surveydm.pipelines.base.recording import Lineage, RowsWriter, publish
from surveydm.pipelines.coadd.catalogs import BandCatalog, catalog_table, source_rows
from surveydm.pipelines.coadd.files import catalog_file, coadd_files
from surveydm.pipelines.coadd.inputs import InputRef, read_input, select_inputs
from surveydm.pipelines.coadd.qc import coadd_checks
from surveydm.pipelines.coadd.tiles import get_tiles, tile_spec
from surveydm.reduction.coadd.catalog import CatalogConfig, dual_mode, single_mode
from surveydm.reduction.coadd.completeness import Completeness, completeness
from surveydm.reduction.coadd.depth import bright_star_mask
from surveydm.reduction.coadd.psf import PSFModel, stamp_fwhm
from surveydm.reduction.coadd.stack import StackConfig, TileCoadd, coadd_tile
from surveydm.reduction.coadd.tiling import TileSpec

#: Default detection band of dual-mode catalogs and of the completeness curve.
REFERENCE_BAND = "r"
#: Default magnitude limit of the bright-star masks, AB mag (J-PLUS masks stars of r < 14-16
#: in 1.4 deg tiles; small simulated tiles have few such stars).
BRIGHT_MAG = 17.0


def catalog_config(cfg: dict[str, Any]) -> CatalogConfig:
    """The :class:`CatalogConfig` of a job configuration's ``catalog`` mapping."""
    values = cfg.get("catalog") or {}
    known = {k: v for k, v in values.items() if k in CatalogConfig.__dataclass_fields__}
    if "apertures_arcsec" in known:
        known["apertures_arcsec"] = tuple(known["apertures_arcsec"])
    return CatalogConfig(**known)


@register_task
class Coadd(Task):
    """Plan the co-adds of a set of tiles: one coadd_tile per tile and band, then a dual-mode
    tile_catalog per tile."""

    name = "coadd"
    description = "co-add tiles and measure their catalogs"

    def prolog(self, ctx: JobContext) -> None:
        cfg = ctx.config
        with ctx.registry.session(write=False) as s:
            tiles = get_tiles(s, cfg.get("tiles") or (), cfg.get("tiling"))
            plan = {t.name: self._bands(s, t, cfg) for t in tiles}
        ref = cfg.get("reference_band", REFERENCE_BAND)
        for tile, bands in plan.items():
            refs = [
                ctx.add_subjob(
                    "coadd_tile",
                    name=f"coadd {tile} {band}",
                    config={**cfg, "tile": tile, "band": band},
                    key=job_key(tile=tile, band=band, production=ctx.production_id),
                )
                for band in bands
            ]
            if ref in bands:
                ctx.add_subjob(
                    "tile_catalog",
                    name=f"dual-mode catalog {tile}",
                    config={**cfg, "tile": tile, "bands": bands},
                    after=refs,
                    key=job_key(tile=tile, production=ctx.production_id),
                )
        ctx.log(f"{sum(map(len, plan.values()))} tile-band co-adds over {len(plan)} tiles")

    @staticmethod
    def _bands(s: Session, tile: Tile, cfg: dict[str, Any]) -> list[str]:
        """Bands of the configuration (or every band) with inputs overlapping the tile."""
        from surveydm.db.models.raw import Image

        bands = cfg.get("bands") or sorted(
            b for b in s.scalars(select(Image.filter).distinct()) if b is not None
        )
        return [b for b in bands if select_inputs(s, tile, b, cfg.get("input_release"))]

    def epilog(self, ctx: JobContext) -> None:
        counts: dict[str, int] = {}
        for j in ctx.subjobs():
            counts[f"{j.task}:{j.status}"] = counts.get(f"{j.task}:{j.status}", 0) + 1
        ctx.output = {**(ctx.output or {}), "subjobs": counts}


@dataclass(frozen=True)
class TileQuantum:
    """What one coadd_tile job works on: the tile row id, its spec, the band and inputs."""

    tile_id: int
    spec: TileSpec
    band: str
    inputs: list[InputRef]


@register_task
class CoaddTile(Task):
    """Co-add one tile in one band; single-mode catalog; completeness in the reference band."""

    name = "coadd_tile"
    description = "co-add of one tile and band"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        store = archive()
        q = self.quantum(ctx)
        inputs = [read_input(store, r) for r in q.inputs]
        stack = StackConfig.from_mapping(ctx.config.get("stack"))
        result = coadd_tile(inputs, q.spec.wcs(), q.spec.shape, q.spec.pixel_scale, stack)
        ccfg = catalog_config(ctx.config)
        single = None
        if result.psf is not None:
            det, phot = single_mode(
                result.coadd.image, result.coadd.weight, result.psf, q.spec.pixel_scale, ccfg
            )
            single = BandCatalog(
                "single", q.band, q.band, det, phot, result.zp, ccfg.apertures_arcsec
            )
        comp = None
        if q.band == ctx.config.get("reference_band", REFERENCE_BAND) and result.psf is not None:
            comp = self.completeness(result, ccfg)
        release = ctx.config.get("release") or load_settings().release
        bright = self.bright_mask(result, single, ctx.config.get("bright_mag", BRIGHT_MAG))
        files = coadd_files(
            store, release, q.spec, q.band, result, [r.name for r in q.inputs], bright
        )
        if single is not None:
            files.append(
                catalog_file(
                    release, q.spec.name, q.band, "single", catalog_table([single], q.spec.wcs())
                )
            )
        lineage = Lineage(
            products={
                "reduced": [r.sci for r in q.inputs],
                "weight": [r.wht for r in q.inputs],
                "mask": [r.msk for r in q.inputs if r.msk is not None],
            }
        )
        published = publish(
            ctx,
            store,
            files,
            lineage,
            coadd_checks(result),
            rows=self._rows(ctx, q, result, single, comp, stack),
        )
        return {
            "tile": q.spec.name,
            "band": q.band,
            "n_inputs": len(inputs),
            "depth": result.depth.mag_lim,
            "rejected_fraction": result.coadd.rejected_fraction,
            "n_sources": len(single.detections) if single else 0,
            "files": published.paths,
            "quality": published.quality,
        }

    def quantum(self, ctx: JobContext) -> TileQuantum:
        """The tile and the good reduced images of the band overlapping it.

        Raises:
            QualityFailure: no such image.
        """
        cfg = ctx.config
        with ctx.registry.session(write=False) as s:
            tile = get_tiles(s, [cfg["tile"]])[0]
            refs = select_inputs(s, tile, cfg["band"], cfg.get("input_release"))
            tq = TileQuantum(tile.id, tile_spec(tile), cfg["band"], refs)
        if not refs:
            raise QualityFailure(f"no good reduced image in {cfg['band']} overlaps {cfg['tile']}")
        return tq

    @staticmethod
    def bright_mask(
        result: TileCoadd, single: BandCatalog | None, mag_limit: float
    ) -> np.ndarray | None:
        """Discs around the single-mode sources brighter than ``mag_limit`` (Kron mag), of
        radius 3 PSF FWHM at the limit growing with the square root of the flux."""
        if single is None or result.psf is None:
            return None
        det, flux = single.detections, single.photometry.flux_auto
        with np.errstate(all="ignore"):
            mag = np.where(flux > 0, result.zp - 2.5 * np.log10(flux), np.inf)
        return bright_star_mask(
            result.coadd.image.shape,
            det.x,
            det.y,
            mag,
            mag_limit=mag_limit,
            radius_at_limit=3 * result.psf.fwhm,
        )

    @staticmethod
    def completeness(result: TileCoadd, ccfg: CatalogConfig) -> Completeness:
        """Completeness from 2 mag above to 1 mag below the 5-sigma depth, 0.25 mag steps."""
        lim = result.depth.mag_lim if np.isfinite(result.depth.mag_lim) else 24.0
        mags = np.arange(lim - 2.0, lim + 1.01, 0.25)
        return completeness(
            result.coadd.image, result.coadd.weight, result.psf.stamp, result.zp, mags, config=ccfg
        )

    @staticmethod
    def _rows(
        ctx: JobContext,
        q: TileQuantum,
        result: TileCoadd,
        single: BandCatalog | None,
        comp: Completeness | None,
        stack: StackConfig,
    ) -> RowsWriter:
        """The ``tile_image`` row and the single-mode ``tile_source`` rows."""
        psf = result.psf
        rows = source_rows(single, q.spec.wcs(), q.tile_id, ctx.production_id) if single else []

        def write(session: Session, products: dict[str, Product], quality: QCResult) -> None:
            session.add(
                TileImage(
                    tile_id=q.tile_id,
                    band=q.band,
                    production_id=ctx.production_id,
                    product_id=products["coadd_sci"].id,
                    n_inputs=result.n_inputs,
                    zp=result.zp,
                    psf_fwhm=psf.fwhm * q.spec.pixel_scale if psf is not None else None,
                    depth=result.depth.mag_lim if np.isfinite(result.depth.mag_lim) else None,
                    depth_aperture=stack.depth_aperture_arcsec,
                    area_fraction=result.area_fraction,
                    exptime_max=float(result.coadd.exptime.max()),
                    rejected_fraction=result.coadd.rejected_fraction,
                    completeness=None
                    if comp is None
                    else {
                        "mag": [float(m) for m in comp.mag],
                        "fraction": [float(f) for f in np.nan_to_num(comp.fraction)],
                    },
                    n_sources=len(rows),
                    quality=quality,
                )
            )
            if rows:
                pid = products["coadd_cat_single"].id
                session.execute(
                    TileSource.__table__.insert(), [{**r, "product_id": pid} for r in rows]
                )

        return write


@dataclass(frozen=True)
class BandCoadd:
    """A recorded co-add read back for the dual-mode catalog."""

    band: str
    product_ids: list[int]
    image: np.ndarray
    weight: np.ndarray
    psf: PSFModel
    zp: float


@register_task
class TileCatalog(Task):
    """Dual-mode catalog of one tile: detection in the reference band, photometry in every
    band on PSF-homogenised co-adds."""

    name = "tile_catalog"
    description = "dual-mode catalog of one tile"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        cfg = ctx.config
        ref = cfg.get("reference_band", REFERENCE_BAND)
        store = archive()
        with ctx.registry.session(write=False) as s:
            tile = get_tiles(s, [cfg["tile"]])[0]
            spec, tile_id = tile_spec(tile), tile.id
            coadds = self.read(s, store, tile_id, ctx.production_id)
        if ref not in coadds:
            raise QualityFailure(f"no co-add of the reference band {ref} for {spec.name}")
        ccfg = catalog_config(cfg)
        dual = dual_mode(
            {b: c.image for b, c in coadds.items()},
            {b: c.weight for b, c in coadds.items()},
            {b: c.psf for b, c in coadds.items()},
            spec.pixel_scale,
            reference=ref,
            config=ccfg,
        )
        cats = [
            BandCatalog("dual", b, ref, dual.detections, p, coadds[b].zp, ccfg.apertures_arcsec)
            for b, p in sorted(dual.photometry.items())
        ]
        wcs = spec.wcs()
        rows = [r for c in cats for r in source_rows(c, wcs, tile_id, ctx.production_id)]

        def write(session: Session, products: dict[str, Product], quality: QCResult) -> None:
            if rows:
                pid = products["coadd_cat_dual"].id
                session.execute(
                    TileSource.__table__.insert(), [{**r, "product_id": pid} for r in rows]
                )

        lineage = Lineage(products={"coadd": [i for c in coadds.values() for i in c.product_ids]})
        published = publish(
            ctx,
            store,
            [
                catalog_file(
                    cfg.get("release") or load_settings().release,
                    spec.name,
                    ref,
                    "dual",
                    catalog_table(cats, wcs),
                )
            ],
            lineage,
            rows=write,
        )
        return {
            "tile": spec.name,
            "n_sources": len(dual.detections),
            "target_fwhm_arcsec": dual.target_fwhm * spec.pixel_scale,
            "files": published.paths,
        }

    @staticmethod
    def read(s: Session, store, tile_id: int, production_id: int | None) -> dict[str, BandCoadd]:  # noqa: ANN001
        """The tile's co-adds of this production with a PSF: image, weight, PSF per band."""
        out = {}
        for ti in s.scalars(
            select(TileImage).where(
                TileImage.tile_id == tile_id, TileImage.production_id == production_id
            )
        ):
            sci = s.get(Product, ti.product_id)
            prods = {
                p.product_type: p
                for p in s.scalars(
                    select(Product).where(
                        Product.job_id == sci.job_id,
                        Product.product_type.in_(["coadd_sci", "coadd_wht", "coadd_psf"]),
                    )
                )
            }
            paths = {t: s.get(ArchiveFile, p.file_id).path for t, p in prods.items()}
            data = {}
            for t, path in paths.items():
                with fits.open(store.abspath(path), memmap=False) as hdul:
                    data[t] = np.asarray(hdul[0].data, np.float32)
            stamp = data["coadd_psf"]
            if stamp.shape[0] < 3:
                continue  # no PSF: the band cannot be homogenised
            image = np.where(data["coadd_wht"] > 0, data["coadd_sci"], np.nan)
            out[ti.band] = BandCoadd(
                ti.band,
                [p.id for p in prods.values()],
                image,
                data["coadd_wht"],
                PSFModel(stamp, stamp_fwhm(stamp), 0),
                ti.zp,
            )
        return out
