"""A small lineage graph written straight into a registry (no pixels): two nights, each with
raw biases and flats, a master bias and a master flat (with validity ranges) and two reduced
CCDs of one science exposure that used them, plus a reference catalog and detections. The
rows are those the nightly pipeline records (`pipelines/base/recording.py`), so the lineage
queries see what they see after a real night; the end-to-end case is
tests/test_lineage_night.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from surveydm.db import Registry
from surveydm.db.models.calibration import CalibrationFrame, Detection
from surveydm.db.models.jobs import Job
from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic, ObsSet
from surveydm.pipelines.calibrations import night_window
from surveydm.pipelines.productions import add_product, get_or_create_production, raw_product

INSTRUMENT = "mosaicam-mini"
#: QC figures of every synthetic master frame, per CCD (as ``calibration_frame.stats``).
_STATS = {str(c): {"residual_rms": 0.002, "level": 0.0} for c in (1, 2)}


@dataclass
class Night:
    """Product ids of one synthetic night."""

    raw_bias: list[int] = field(default_factory=list)
    raw_flat: list[int] = field(default_factory=list)
    raw_science: int = 0
    mosaic_id: int = 0
    bias: int = 0
    flat: int = 0
    images: list[int] = field(default_factory=list)  # reduced_sci per CCD
    image_rows: list[int] = field(default_factory=list)
    detection: int = 0


@dataclass
class Graph:
    production_id: int
    refcat: int
    nights: list[Night]


def _raw(s, obs: ObsSet, kind: str, n: int, when: datetime) -> tuple[int, int]:  # noqa: ANN001
    path = f"raw/{obs.night}/{obs.obs_set}/{kind}{n}.fits"
    f = ArchiveFile(path=path, size=1, adler32="00000001")
    s.add(f)
    s.flush()
    m = Mosaic(obs_set_id=obs.id, kind=kind, filename=path.rsplit("/", 1)[1],
               archive_file_id=f.id, date_obs=when, filter_tray="r")  # fmt: skip
    s.add(m)
    s.flush()
    return raw_product(s, f.id, {"mosaic_id": m.id}).id, m.id


def _job(s, task: str, name: str, production_id: int, config: dict) -> int:  # noqa: ANN001
    job = Job(task=task, name=name, status="done", production_id=production_id, config=config,
              worker="pilot-1", host="node1")  # fmt: skip
    s.add(job)
    s.flush()
    return job.id


def _master(s, kind: str, night: str, obs: ObsSet, prod: int, inputs: dict) -> int:  # noqa: ANN001
    config = {"obs_set": obs.obs_set, "filter_tray": "r" if kind == "master_flat" else None}
    job = _job(s, kind, f"{kind} {obs.obs_set}", prod, config)
    f = ArchiveFile(path=f"red/dev/{obs.obs_set}/{kind}.fits", size=1, adler32="00000001")
    s.add(f)
    s.flush()
    p = add_product(s, kind, data_id={"obs_set": obs.obs_set}, production_id=prod, job_id=job,
                    file_id=f.id, inputs=inputs)  # fmt: skip
    start, end = night_window(night)
    tray = "r" if kind == "master_flat" else None
    s.add(CalibrationFrame(kind=kind, instrument=INSTRUMENT, night=night, obs_set_id=obs.id,
                           filter_tray=tray, valid_from=start, valid_until=end, n_input=3,
                           product_id=p.id, stats=_STATS))  # fmt: skip
    return p.id


def build_graph(registry: Registry) -> Graph:
    """Write the two-night graph; returns its ids."""
    prod = get_or_create_production(registry, "nightly", "dev", {"refcat": "pixelsim"})
    nights = []
    with registry.session() as s:
        refcat = add_product(s, "refcat", data_id={"refcat": "pixelsim"}, production_id=None,
                             job_id=None).id  # fmt: skip
        for k, night in enumerate(("2026-11-20", "2026-11-21")):
            n = Night()
            day = datetime.fromisoformat(night).date()
            obs = ObsSet(obs_set=f"{night.replace('-', '')}_001", night=day, instrument=INSTRUMENT)
            s.add(obs)
            s.flush()
            t0 = datetime.fromisoformat(night).replace(hour=20, tzinfo=UTC)
            n.raw_bias = [_raw(s, obs, "bias", i, t0)[0] for i in range(3)]
            n.raw_flat = [_raw(s, obs, "flat", i, t0)[0] for i in range(3)]
            n.raw_science, n.mosaic_id = _raw(s, obs, "science", 0, t0 + timedelta(hours=2))
            n.bias = _master(s, "master_bias", night, obs, prod, {"raw": n.raw_bias})
            n.flat = _master(s, "master_flat", night, obs, prod,
                             {"raw": n.raw_flat, "bias": [n.bias]})  # fmt: skip
            red = Mosaic(obs_set_id=obs.id, kind="red_science", filename="red",
                         parent_id=n.mosaic_id, production_id=prod)  # fmt: skip
            s.add(red)
            s.flush()
            for ccd in (1, 2):
                cfg = {"mosaic_id": n.mosaic_id, "ccd_num": ccd, "reduced_mosaic_id": red.id}
                job = _job(s, "single_epoch_ccd", f"science0 CCD0{ccd}", prod, cfg)
                data_id = {"obs_set": obs.obs_set, "mosaic_id": n.mosaic_id, "ccd": ccd}
                sci = add_product(s, "reduced_sci", data_id=data_id, production_id=prod, job_id=job,
                                  inputs={"raw": [n.raw_science], "bias": [n.bias],
                                          "flat": [n.flat], "refcat": [refcat]})  # fmt: skip
                image = Image(mosaic_id=red.id, ccd_num=ccd, product_id=sci.id, filter="r",
                              bkg_std=10.0 + ccd + 5 * k)  # fmt: skip
                s.add(image)
                s.flush()
                n.images.append(sci.id)
                n.image_rows.append(image.id)
                det = Detection(image_id=image.id, production_id=prod, band="r", x=1.0, y=2.0,
                                ra=10.0 + k, dec=-5.0, healpix=1)  # fmt: skip
                s.add(det)
                s.flush()
                n.detection = det.id
            nights.append(n)
    return Graph(prod, refcat, nights)


def product_ids(registry: Registry, product_type: str) -> list[int]:
    from sqlalchemy import select

    with registry.session(write=False) as s:
        return list(
            s.scalars(
                select(Product.id).where(Product.product_type == product_type).order_by(Product.id)
            )
        )
