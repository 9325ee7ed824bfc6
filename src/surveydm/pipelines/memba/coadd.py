"""The ``forced_coadd`` task: co-add the forced measurements of a chunk of reference sources,
in the bands a run's new images touched (seed 000 section 6.1 item 3: "parallelized in chunks of
objects of the selected catalog and operates only at database level").

Only measurements without a flag (``flag`` 0, or only the informational
:data:`~surveydm.reduction.forced_photometry.FLAG_BLENDED`, whose subtracted neighbour light is
in the error) are combined, by
:func:`surveydm.reduction.flux_coadd.coadd_fluxes`. The chunk's ``forced_aperture_coadd`` rows
are replaced in the transaction that marks the job done: a re-run after a new night recomputes
the touched sources from all their measurements and never duplicates a row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from surveydm.db.models.multiepoch import DeepRefSource, ForcedAperture, ForcedApertureCoadd
from surveydm.db.spatial import healpix_index
from surveydm.orchestration import JobContext, Task, register_task
from surveydm.reduction.flux_coadd import coadd_fluxes
from surveydm.reduction.forced_photometry import FLAG_BLENDED


@register_task
class ForcedCoadd(Task):
    """Inverse-variance weighted co-add, per band, of the forced fluxes of a chunk of sources."""

    name = "forced_coadd"
    description = "memba co-add of forced fluxes for a chunk of reference sources"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        ref_ids = [int(r) for r in ctx.config["ref_ids"]]
        bands = [str(b) for b in ctx.config["bands"]]
        pid = ctx.production_id
        with ctx.registry.session(write=False) as s:
            meas = s.execute(
                select(ForcedAperture.ref_id, ForcedAperture.band, ForcedAperture.flux,
                       ForcedAperture.flux_error)
                .where(ForcedAperture.production_id == pid, ForcedAperture.ref_id.in_(ref_ids),
                       ForcedAperture.band.in_(bands), ForcedAperture.flag.in_([0, FLAG_BLENDED]),
                       ForcedAperture.flux.is_not(None))
            ).all()  # fmt: skip
            pos = dict(
                (r, (ra, dec))
                for r, ra, dec in s.execute(
                    select(DeepRefSource.ref_id, DeepRefSource.ra, DeepRefSource.dec).where(
                        DeepRefSource.refcat_id == ctx.config["refcat_id"],
                        DeepRefSource.ref_id.in_(ref_ids),
                    )
                )
            )
        rows = coadd_rows(meas, pos, pid, int(ctx.config.get("run", 1)))

        def record(session: Session) -> None:
            session.execute(
                delete(ForcedApertureCoadd).where(
                    ForcedApertureCoadd.production_id == pid,
                    ForcedApertureCoadd.ref_id.in_(ref_ids),
                    ForcedApertureCoadd.band.in_(bands),
                )
            )
            if rows:
                session.execute(insert(ForcedApertureCoadd), rows)

        ctx.on_commit(record)
        return {"n_sources": len(ref_ids), "n_rows": len(rows), "n_measurements": len(meas)}


def coadd_rows(
    meas: list[Any], pos: dict[int, tuple[float, float]], production_id: int | None, run: int
) -> list[dict[str, Any]]:
    """``forced_aperture_coadd`` rows from (ref_id, band, flux, flux_error) measurements."""
    if not meas:
        return []
    ref = np.array([m[0] for m in meas], np.int64)
    bands = np.array([m[1] for m in meas])
    names, band_idx = np.unique(bands, return_inverse=True)
    flux = np.array([m[2] for m in meas], float)
    err = np.array([np.nan if m[3] is None else m[3] for m in meas], float)
    res = coadd_fluxes(ref * len(names) + band_idx, flux, err)
    rows = []
    for k, label in enumerate(res.group):
        r, b = divmod(int(label), len(names))
        ra, dec = pos.get(r, (np.nan, np.nan))
        rows.append(
            {
                "production_id": production_id,
                "ref_id": r,
                "band": str(names[b]),
                "healpix": int(healpix_index(ra, dec)) if np.isfinite(ra) else -1,
                "flux": _opt(res.flux[k]),
                "flux_error": _opt(res.flux_err[k]),
                "chi2": _opt(res.chi2[k]),
                "n_coadd": int(res.n_coadd[k]),
                "n_rejected": int(res.n_rejected[k]),
                "run": run,
            }  # fmt: skip
        )
    return rows


def _opt(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None
