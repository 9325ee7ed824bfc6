"""``surveydm coadd``: the co-add production, its job tree, and local pilots to run it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from surveydm.config import Settings, settings_environment
from surveydm.db import Registry
from surveydm.db.migrate import upgrade
from surveydm.db.models.tiles import Tile, TileImage
from surveydm.orchestration import DuplicateJobError, JobManager, load_task_modules, run_local
from surveydm.orchestration.records import job_key
from surveydm.pipelines import TASK_MODULES
from surveydm.pipelines.coadd.tiles import get_tiles
from surveydm.pipelines.productions import get_or_create_production


@dataclass(frozen=True)
class CoaddRequest:
    """What to co-add: tiles (all of ``tiling`` when empty), bands (all with inputs when
    empty), the output release, the dual-mode reference band, the bright-star mask limit (AB
    mag) and the stack and catalog knobs."""

    tiles: tuple[str, ...] = ()
    bands: tuple[str, ...] = ()
    tiling: str | None = None
    release: str = ""
    reference_band: str = "r"
    bright_mag: float = 17.0
    stack: dict[str, Any] = field(default_factory=dict)
    catalog: dict[str, Any] = field(default_factory=dict)

    def config(self, release: str) -> dict[str, Any]:
        """The production configuration (identifies the production with the release)."""
        return {
            "tiles": sorted(self.tiles), "bands": sorted(self.bands), "tiling": self.tiling,
            "release": release, "input_release": release, "reference_band": self.reference_band,
            "bright_mag": self.bright_mag,
            "stack": self.stack, "catalog": self.catalog,
        }  # fmt: skip


@dataclass(frozen=True)
class CoaddSummary:
    """What a ``surveydm coadd`` run did: the production, the root job, job counts, and one
    line per tile image recorded in it (tile, band, inputs, depth, PSF FWHM arcsec,
    rejected fraction, quality)."""

    production_id: int
    root_job_id: int
    counts: dict[str, int]
    tiles: list[tuple[str, str, int, float | None, float | None, float, str]]

    @property
    def failures(self) -> int:
        """Jobs that failed (faults or quality)."""
        return sum(v for k, v in self.counts.items() if k.startswith("failed"))


def submit_coadd(registry: Registry, request: CoaddRequest, release: str) -> tuple[int, int]:
    """Open (or reuse) the co-add production and submit its ``coadd`` job (or find the one
    already submitted for the same request); returns (production id, root job id).

    Raises:
        TilingError: a requested tile or tiling does not exist.
    """
    load_task_modules(TASK_MODULES)
    with registry.session(write=False) as s:
        names = [t.name for t in get_tiles(s, request.tiles, request.tiling)]
    config = request.config(release)
    production_id = get_or_create_production(registry, "coadd", release, config)
    key = job_key(tiles=",".join(names)[:200], production=production_id)
    try:
        root = JobManager(registry).submit(
            "coadd", key=key, name=f"coadd {len(names)} tile(s)", config={**config, "tiles": names},
            production_id=production_id,
        )  # fmt: skip
    except DuplicateJobError as dup:
        root = dup.job_id
    return production_id, root


def summarize(registry: Registry, production_id: int, root: int) -> CoaddSummary:
    """The :class:`CoaddSummary` of a production's job tree."""
    summary = JobManager(registry).summary(root)
    with registry.session(write=False) as s:
        rows = s.execute(
            select(Tile.name, TileImage)
            .join(TileImage, TileImage.tile_id == Tile.id)
            .where(TileImage.production_id == production_id)
            .order_by(Tile.name, TileImage.band)
        ).all()
        tiles = [
            (name, ti.band, ti.n_inputs, ti.depth, ti.psf_fwhm, ti.rejected_fraction, ti.quality)
            for name, ti in rows
        ]
    return CoaddSummary(production_id, root, dict(summary.counts), tiles)


def run_coadd(settings: Settings, request: CoaddRequest, *, processes: int = 1) -> CoaddSummary:
    """Submit the co-adds of ``request`` and run them with local pilot processes.

    Raises:
        TilingError: a requested tile or tiling does not exist.
    """
    url = settings.resolved_database_url
    upgrade(url)
    registry = Registry(url)
    release = request.release or settings.release
    production_id, root = submit_coadd(registry, request, release)
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.update(settings_environment(settings))
    run_local(url, root_job_id=root, processes=processes, env=env)
    out = summarize(registry, production_id, root)
    registry.dispose()
    return out


__all__ = ["CoaddRequest", "CoaddSummary", "run_coadd", "submit_coadd", "summarize"]
