"""A processed demo night for the portal tests, built through the public APIs of the other layers.

:func:`build_demo_night` fills a registry and an archive with what one night of operations
leaves behind:

* the archive (:class:`surveydm.archive.Archive`): raw exposure files under
  ``raw/<night>/<obs_set>/``, reduced CCD images (FITS with a TAN WCS) under
  ``red/<release>/<obs_set>/`` and a QC plot;
* the registry: project, obs set, raw and reduced mosaics with the nightly metrics (seeing,
  transparency, sky, zero-point, astrometric RMS), per-CCD images linked to their product files,
  a production, and ``archive_file`` rows;
* the job system (:mod:`surveydm.orchestration`): a register job, a nightly super-job whose
  prolog creates one single-epoch sub-job per exposure (one crashes with a traceback, one is a
  quality failure, one warns), and a calibration job whose own QC check fails; all run with
  :func:`surveydm.orchestration.run_local`.

The test task types are registered here (``demo_*``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from surveydm.archive import Archive, StoredFile
from surveydm.db import Registry
from surveydm.db.models.production import Product, Production
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic, ObsSet, Project
from surveydm.orchestration import (
    JobContext,
    QualityFailure,
    Task,
    register_task,
    run_local,
    submit,
)

NIGHT = date(2026, 11, 20)
OBS_SET = "20261120_001"
RELEASE = "dev"
N_EXPOSURES = 8
CCDS = (1, 2, 3, 4)
CCD_SHAPE = (160, 200)  # (ny, nx) pixels
PIXEL_SCALE = 0.26  # arcsec / pixel
FAILING_EXPOSURE = 3  # its single-epoch job crashes
TRACEBACK_MARK = "simulated read error in CCD 3 of exposure 3"
QC_PLOT = f"red/{RELEASE}/{OBS_SET}/qc_seeing.png"

# Per exposure: (seeing arcsec, transparency, sky e-/s/pix, zero-point mag, astro RMS arcsec,
# airmass). Exposures 2 (seeing), 5 (transparency) and 7 (astrometry) fail the default cuts.
METRICS = [
    (0.9, 0.93, 21.0, 25.91, 0.08, 1.12),
    (2.6, 0.91, 22.5, 25.88, 0.09, 1.15),
    (1.1, 0.90, 20.1, 25.86, 0.07, 1.19),
    (1.0, 0.89, 19.8, 25.85, 0.10, 1.24),
    (1.2, 0.41, 35.0, 25.02, 0.11, 1.31),
    (1.3, 0.88, 23.0, 25.84, 0.09, 1.40),
    (1.1, 0.90, 24.2, 25.87, 0.55, 1.52),
    (1.0, 0.92, 25.7, 25.90, 0.08, 1.67),
]


@register_task
class DemoRegister(Task):
    """Registers an obs set (stand-in): records QC checks that all pass."""

    name = "demo_register"
    max_attempts = 1

    def run(self, ctx: JobContext) -> dict[str, Any]:
        ctx.log(f"registering {ctx.config['obs_set']}")
        ctx.qc("n_files", ctx.config["n_files"], min=1, description="files registered")
        return {"registered": ctx.config["n_files"]}


@register_task
class DemoSingleEpoch(Task):
    """Reduces one exposure (stand-in): crashes, fails quality or warns as configured."""

    name = "demo_single_epoch"
    max_attempts = 1

    def run(self, ctx: JobContext) -> dict[str, Any]:
        exp = ctx.config["exp_num"]
        ctx.log(f"reducing exposure {exp} of {ctx.config['obs_set']}")
        if ctx.config.get("crash"):
            _read_ccd(exp)
        seeing = float(ctx.config["seeing"])
        result = ctx.qc(
            "psf_fwhm", seeing, max=2.5, warn_max=1.25, units="arcsec",
            description="PSF FWHM of bright unsaturated stars", plot_file=ctx.config.get("plot"),
        )  # fmt: skip
        if result == "fail":
            raise QualityFailure(f"PSF FWHM {seeing} arcsec above 2.5")
        return {"exp_num": exp, "psf_fwhm": seeing}


def _read_ccd(exp: int) -> None:
    raise OSError(f"{TRACEBACK_MARK} (exposure {exp})")


@register_task
class DemoNightly(Task):
    """Nightly super-job (stand-in): one single-epoch sub-job per exposure, then a summary."""

    name = "demo_nightly"
    max_attempts = 1

    def prolog(self, ctx: JobContext) -> None:
        for k, m in enumerate(METRICS, start=1):
            ctx.add_subjob(
                "demo_single_epoch",
                name=f"single_epoch {OBS_SET} #{k}",
                config={
                    "obs_set": ctx.config["obs_set"],
                    "exp_num": k,
                    "seeing": m[0],
                    "crash": k == FAILING_EXPOSURE,
                    "plot": QC_PLOT if k == 1 else None,
                },
            )

    def epilog(self, ctx: JobContext) -> None:
        subs = ctx.subjobs()
        done = sum(s.status == "done" for s in subs)
        ctx.qc(
            "done_fraction", done / len(subs), min=0.5, warn_min=0.99,
            description="fraction of exposures reduced", plot_file=QC_PLOT,
        )  # fmt: skip
        ctx.output = {"done": done, "total": len(subs)}


@register_task
class DemoCalibration(Task):
    """Master-flat job (stand-in) whose own QC check fails (red flag) without raising."""

    name = "demo_calibration"
    max_attempts = 1

    def run(self, ctx: JobContext) -> dict[str, Any]:
        ctx.qc("flat_uniformity", 0.12, max=0.05, units="fraction",
               description="rms of the normalised master flat")  # fmt: skip
        return {"tray": ctx.config.get("tray")}


@dataclass
class DemoNight:
    """Identifiers of what :func:`build_demo_night` created."""

    night: date = NIGHT
    obs_set: str = OBS_SET
    release: str = RELEASE
    register_job: int = 0
    nightly_job: int = 0
    calibration_job: int = 0
    rereduce_job: int = 0  # top-level, QC warning (yellow)
    failed_subjob: int = 0
    quality_failed_subjob: int = 0
    raw_mosaics: list[int] = field(default_factory=list)
    reduced_mosaics: list[int] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)  # archive path -> archive_file.id
    production_id: int = 0
    failing_exposures: list[int] = field(default_factory=list)  # exp_num failing default cuts


def _fits_writer(data: np.ndarray, header: fits.Header):  # noqa: ANN202
    def write(path: Path) -> None:
        fits.PrimaryHDU(data=data, header=header).writeto(path)

    return write


def _ccd_image(rng: np.random.Generator, sky: float, seeing: float) -> np.ndarray:
    ny, nx = CCD_SHAPE
    img = rng.normal(sky, np.sqrt(sky), size=CCD_SHAPE).astype(np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx]
    sigma = seeing / PIXEL_SCALE / 2.355
    for _ in range(12):
        x0, y0 = rng.uniform(10, nx - 10), rng.uniform(10, ny - 10)
        flux = rng.uniform(2e3, 5e4)
        img += (flux / (2 * np.pi * sigma**2) * np.exp(
            -((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))).astype(np.float32)  # fmt: skip
    return img


def _ccd_header(ra: float, dec: float, ccd: int) -> fits.Header:
    ny, nx = CCD_SHAPE
    col, row = (ccd - 1) % 2, (ccd - 1) // 2
    gap = 20  # pixels
    dx = (col - 0.5) * (nx + gap) * PIXEL_SCALE / 3600  # deg on the sky
    dy = (row - 0.5) * (ny + gap) * PIXEL_SCALE / 3600
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"] = ra + dx / np.cos(np.radians(dec))
    h["CRVAL2"] = dec + dy
    h["CRPIX1"], h["CRPIX2"] = (nx + 1) / 2, (ny + 1) / 2
    h["CD1_1"], h["CD1_2"] = -PIXEL_SCALE / 3600, 0.0
    h["CD2_1"], h["CD2_2"] = 0.0, PIXEL_SCALE / 3600
    h["CCDNUM"] = ccd
    h["BUNIT"] = "electron"
    return h


def _add_file(session: Any, stored: StoredFile) -> ArchiveFile:
    row = ArchiveFile(path=stored.path, size=stored.size, adler32=stored.adler32, md5=stored.md5)
    session.add(row)
    session.flush()
    return row


def _qc_plot_png(path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(range(1, N_EXPOSURES + 1), [m[0] for m in METRICS], "o-")
    ax.set_xlabel("exposure")
    ax.set_ylabel("seeing, arcsec")
    fig.savefig(path, format="png")


def build_demo_night(registry: Registry, archive_root: Path, *, seed: int = 7) -> DemoNight:
    """Fill ``registry`` and the archive at ``archive_root`` with a processed demo night.

    Returns the identifiers tests need. Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    archive = Archive(archive_root)
    demo = DemoNight()
    t0 = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
    ra0, dec0 = 150.1, 2.2
    with registry.session() as s:
        project = Project(name="demo survey", description="portal test data")
        s.add(project)
        s.flush()
        obs = ObsSet(
            obs_set=OBS_SET, night=NIGHT, instrument="paucam-mini", project_id=project.id,
            mjd_start=61364.875, mjd_stop=61365.2, n_files=N_EXPOSURES + 1,
        )  # fmt: skip
        s.add(obs)
        prod = Production(
            pipeline="nightly", release=RELEASE, software_version="0.1.0",
            config={"detrend": True}, config_hash="a" * 64, comments="demo production",
        )  # fmt: skip
        s.add(prod)
        s.flush()
        demo.production_id = prod.id
        # A bias exposure (not science).
        bias = archive.write_product(
            archive.raw_path(NIGHT, OBS_SET, "bias_0001.fits"),
            _fits_writer(np.zeros((8, 8), np.float32), fits.Header()),
        )
        bias_file = _add_file(s, bias)
        demo.files[bias.path] = bias_file.id
        s.add(Mosaic(obs_set_id=obs.id, kind="bias", filename="bias_0001.fits",
                     archive_file_id=bias_file.id, exp_num=0, date_obs=t0))  # fmt: skip
        for k, (seeing, transp, sky, zp, arms, airmass) in enumerate(METRICS, start=1):
            when = t0 + timedelta(minutes=20 * k)
            fname = f"sci_{k:04d}.fits"
            raw_stored = archive.write_product(
                archive.raw_path(NIGHT, OBS_SET, fname),
                _fits_writer(rng.normal(1000, 5, (16, 16)).astype(np.float32), fits.Header()),
            )
            raw_file = _add_file(s, raw_stored)
            demo.files[raw_stored.path] = raw_file.id
            common = dict(
                obs_set_id=obs.id, filename=fname, exp_num=k, date_obs=when,
                mjd_obs=61364.875 + k * 20 / 1440, exptime=60.0, filter_tray="NB455-525",
                object=f"W{k % 3 + 1}", ra=ra0 + 0.3 * k, dec=dec0, airmass=airmass,
            )  # fmt: skip
            raw = Mosaic(kind="science", archive_file_id=raw_file.id, **common)
            s.add(raw)
            s.flush()
            demo.raw_mosaics.append(raw.id)
            if k == FAILING_EXPOSURE:
                continue  # its reduction crashed: no reduced mosaic
            red = Mosaic(
                kind="red_science", parent_id=raw.id, production_id=prod.id,
                median_psf_fwhm=seeing, zp_nightly=zp, transparency=transp, sky_background=sky,
                astro_rms=arms, astro_nstars=80, astro_status="ok", photo_status="ok",
                detrend_status="ok", qc_status="pass", **common,
            )  # fmt: skip
            s.add(red)
            s.flush()
            demo.reduced_mosaics.append(red.id)
            for ccd in CCDS:
                data = _ccd_image(rng, sky * 60.0, seeing)
                header = _ccd_header(ra0 + 0.3 * k, dec0, ccd)
                stored = archive.write_product(
                    archive.red_path(RELEASE, OBS_SET, f"sci_{k:04d}.ccd{ccd:02d}.sci.fits"),
                    _fits_writer(data, header),
                )
                f = _add_file(s, stored)
                demo.files[stored.path] = f.id
                product = Product(
                    product_type="red_science_ccd", production_id=prod.id, file_id=f.id,
                    data_id={"obs_set": OBS_SET, "exp_num": k, "ccd": ccd},
                )  # fmt: skip
                s.add(product)
                s.flush()
                s.add(
                    Image(
                        mosaic_id=red.id,
                        ccd_num=ccd,
                        image_num=0,
                        filter="NB455",
                        naxis1=CCD_SHAPE[1],
                        naxis2=CCD_SHAPE[0],
                        psf_fwhm=seeing + 0.05 * ccd,
                        zp_nightly=zp,
                        zp_nightly_err=0.01,
                        transparency=transp,
                        astro_rms=arms,
                        product_id=product.id,
                    )  # fmt: skip
                )
        plot = archive.write_product(QC_PLOT, _qc_plot_png)
        demo.files[plot.path] = _add_file(s, plot).id
    demo.failing_exposures = [2, 5, 7]

    url = registry.url
    demo.register_job = submit(
        registry, "demo_register", name=f"register {OBS_SET}",
        config={"obs_set": OBS_SET, "n_files": N_EXPOSURES + 1},
    )  # fmt: skip
    demo.calibration_job = submit(
        registry, "demo_calibration", name="master flat NB455-525", config={"tray": "NB455-525"}
    )
    demo.nightly_job = submit(
        registry, "demo_nightly", name=f"nightly {OBS_SET}", config={"obs_set": OBS_SET}
    )
    demo.rereduce_job = submit(
        registry, "demo_single_epoch", name="re-reduce sci_0006",
        config={"obs_set": OBS_SET, "exp_num": 6, "seeing": METRICS[5][0]},
    )  # fmt: skip
    for root in (demo.register_job, demo.calibration_job, demo.nightly_job, demo.rereduce_job):
        report = run_local(url, root, processes=0, timeout=120, poll_interval=0.02)
        assert report.finished, f"demo job {root} did not finish"
    from sqlalchemy import select

    from surveydm.db.models.jobs import Job

    with registry.session(write=False) as s:
        subs = {j.config["exp_num"]: j for j in s.scalars(
            select(Job).where(Job.parent_id == demo.nightly_job))}  # fmt: skip
        demo.failed_subjob = subs[FAILING_EXPOSURE].id
        demo.quality_failed_subjob = subs[2].id
    return demo
