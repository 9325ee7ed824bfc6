"""The ``nightly`` task: plans an observation set's reduction as sub-jobs with dependencies.

master bias -> one master flat per filter tray (after the bias) -> the bad-pixel mask (after
the flats: hot pixels from the night's darks, dead pixels from the flats) and one master fringe
per science tray with fringing filters (after its flat) -> one single epoch per science mosaic
(after the bad-pixel mask and the master flat, and fringe frame, of its tray). Its epilog
counts how the sub-jobs ended.
"""

from __future__ import annotations

from surveydm.config import load_settings
from surveydm.db.models.raw import Mosaic
from surveydm.instruments import Instrument
from surveydm.orchestration import JobContext, Task, register_task
from surveydm.orchestration.tasks import SubJobRef
from surveydm.pipelines.base.connections import archive, mosaics, obs_set
from surveydm.pipelines.instrument_versions import obs_set_instrument

#: Raw kinds taken as closed-shutter darks (the ``bad_pixel_mask`` task reads them).
DARK_KINDS = ("dark", "test")


def fringing_ccds(instrument: Instrument, tray: str) -> list[int]:
    """CCDs that the tray covers with a filter needing fringe correction."""
    return [
        num
        for num, name in instrument.tray(tray).filters.items()
        if instrument.filter(name).fringing
    ]


@register_task
class Nightly(Task):
    """Master bias -> master flats per tray -> single epoch per science mosaic."""

    name = "nightly"
    description = "nightly reduction of an observation set"

    def prolog(self, ctx: JobContext) -> None:
        cfg = ctx.config
        with ctx.registry.session(write=False) as s:
            obs = obs_set(s, cfg["obs_set"])
            biases = mosaics(s, obs.id, "bias")
            flats = mosaics(s, obs.id, "flat")
            science = mosaics(s, obs.id, "science")
            darks = [m for kind in DARK_KINDS for m in mosaics(s, obs.id, kind)]
            instrument = obs_set_instrument(s, obs)
        after_bias = []
        if biases:
            after_bias = [
                ctx.add_subjob("master_bias", name=f"master bias {obs.obs_set}", config=cfg)
            ]
        flat_refs = {
            tray: ctx.add_subjob(
                "master_flat",
                name=f"master flat {obs.obs_set} {tray}",
                config={**cfg, "filter_tray": tray},
                after=after_bias,
            )
            for tray in sorted({m.filter_tray for m in flats if m.filter_tray})
        }
        fringe_refs = self._fringe_jobs(ctx, obs.obs_set, instrument, science, flat_refs,
                                        after_bias)  # fmt: skip
        bpm = []
        if darks or flat_refs:
            bpm = [
                ctx.add_subjob(
                    "bad_pixel_mask",
                    name=f"bad-pixel mask {obs.obs_set}",
                    config=cfg,
                    after=list(flat_refs.values()) or after_bias,
                )
            ]
        for m in science:
            after = [flat_refs[m.filter_tray]] if m.filter_tray in flat_refs else after_bias
            if m.filter_tray in fringe_refs:
                after = [*after, fringe_refs[m.filter_tray]]
            after = [*after, *bpm]
            ctx.add_subjob(
                "single_epoch",
                name=f"single epoch {m.filename}",
                config={**cfg, "mosaic_id": m.id},
                after=after,
            )
        missing = sorted({m.filter_tray for m in science} - set(flat_refs))
        ctx.log(
            f"{len(biases)} bias, {len(flats)} flats in {len(flat_refs)} trays, "
            f"{len(darks)} darks, "
            f"{len(science)} science mosaics"
            + (f"; no flats tonight for trays {missing}: nearest valid master flat" if missing
               else "")
        )  # fmt: skip

    @staticmethod
    def _fringe_jobs(
        ctx: JobContext,
        obs_name: str,
        instrument: Instrument,
        science: list[Mosaic],
        flat_refs: dict[str, SubJobRef],
        after_bias: list[SubJobRef],
    ) -> dict[str, SubJobRef]:
        """One master_fringe sub-job per science tray with fringing CCDs."""
        refs: dict[str, SubJobRef] = {}
        for tray in sorted({m.filter_tray for m in science if m.filter_tray}):
            if fringing_ccds(instrument, tray):
                refs[tray] = ctx.add_subjob(
                    "master_fringe",
                    name=f"master fringe {obs_name} {tray}",
                    config={**ctx.config, "filter_tray": tray},
                    after=[flat_refs[tray]] if tray in flat_refs else after_bias,
                )
        return refs

    def epilog(self, ctx: JobContext) -> None:
        """Count how the sub-jobs ended, and remove the temporary files that pilots killed
        while writing this obs set's products left behind (their writers are gone)."""
        counts: dict[str, int] = {}
        for j in ctx.subjobs():
            counts[f"{j.task}:{j.status}"] = counts.get(f"{j.task}:{j.status}", 0) + 1
        store = archive()
        red_dir = store.red_path(load_settings().release, ctx.config["obs_set"], "").rstrip("/")
        removed = store.clean_temporaries(red_dir)
        if removed:
            ctx.log(f"removed {len(removed)} temporary file(s) of killed writers in {red_dir}")
        ctx.output = {**(ctx.output or {}), "subjobs": counts, "temporaries_removed": len(removed)}
