"""Registration tasks: ``register`` (one ``register_file`` sub-job per archived file of an
observation set, then the ``nightly`` job) and ``register_file``."""

from __future__ import annotations

from typing import Any

from surveydm.instruments import InstrumentError
from surveydm.orchestration import JobContext, QualityFailure, Task, register_task
from surveydm.pipelines.base.connections import archive
from surveydm.pipelines.instrument_versions import InstrumentVersionConflict, pin_instrument
from surveydm.pipelines.register import RegistrationError, obs_set_files, register_file


@register_task
class RegisterObsSet(Task):
    """Register every file of an archived observation set, then start its nightly job."""

    name = "register"
    description = "register an observation set (one sub-job per file), then run nightly"

    def prolog(self, ctx: JobContext) -> None:
        try:
            files = obs_set_files(ctx.registry, ctx.config["obs_set"])
        except RegistrationError as exc:
            raise QualityFailure(str(exc)) from exc
        if not files:
            raise QualityFailure(f"observation set {ctx.config['obs_set']!r} has no files")
        try:  # every sub-job and later task reads the camera from the registry
            pin_instrument(ctx.registry, ctx.config["obs_set"])
        except (InstrumentError, InstrumentVersionConflict) as exc:
            raise QualityFailure(str(exc)) from exc
        for name, _path, file_id in files:
            if file_id is None:
                ctx.log(f"{name}: listed in the manifest but not archived")
                continue
            ctx.add_subjob(
                "register_file",
                name=f"register {name}",
                config={"obs_set": ctx.config["obs_set"], "archive_file_id": file_id},
            )
        ctx.log(f"{len(files)} files to register")

    def epilog(self, ctx: JobContext) -> None:
        subs = ctx.subjobs()
        if not ctx.config.get("nightly", True) or any(j.task == "nightly" for j in subs):
            return
        failed = [j.name for j in subs if j.status != "done"]
        if failed:
            ctx.log(f"{len(failed)} files not registered: {', '.join(failed[:10])}")
        ctx.add_subjob(
            "nightly",
            name=f"nightly {ctx.config['obs_set']}",
            config={k: v for k, v in ctx.config.items() if k != "nightly"},
        )


@register_task
class RegisterFile(Task):
    """Register one archived raw file: mosaic, CCD and amplifier rows with pixel statistics."""

    name = "register_file"
    description = "register one raw file (headers + quick pixel statistics)"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        try:
            result = register_file(ctx.registry, archive(), ctx.config["archive_file_id"])
        except RegistrationError as exc:  # bad header or unreadable FITS: the data is bad
            raise QualityFailure(str(exc)) from exc
        return {"mosaic_id": result.mosaic_id, "kind": result.kind}
