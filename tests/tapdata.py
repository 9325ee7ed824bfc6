"""A small registry for the TAP tests and the taplint run: detections at known positions."""

from __future__ import annotations

from datetime import date

import numpy as np

from surveydm.db import Registry
from surveydm.db.models.calibration import Detection
from surveydm.db.models.raw import Image, Mosaic, ObsSet
from surveydm.db.models.refcat import RefCat, RefCatSource
from surveydm.db.spatial import healpix_index

CENTER = (150.0, 2.0)  # deg
N_CLUSTER = 12  # detections within 30 arcsec of CENTER
N_FAR = 8  # detections 1 deg away


def _positions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    r = rng.uniform(0, 25 / 3600, N_CLUSTER)
    pa = rng.uniform(0, 2 * np.pi, N_CLUSTER)
    ra = CENTER[0] + r * np.sin(pa) / np.cos(np.radians(CENTER[1]))
    dec = CENTER[1] + r * np.cos(pa)
    ra = np.concatenate([ra, CENTER[0] + 1.0 + rng.uniform(0, 0.1, N_FAR)])
    dec = np.concatenate([dec, CENTER[1] + rng.uniform(0, 0.1, N_FAR)])
    return ra, dec


def fill_registry(registry: Registry) -> Registry:
    """Add an obs set, a reduced exposure, one CCD image, detections around CENTER and 1 deg
    away, and a reference catalog of 5 sources (the first 5 detections' positions)."""
    ra, dec = _positions()
    hp = healpix_index(ra, dec)
    with registry.session() as s:
        obs = ObsSet(obs_set="20261120_001", night=date(2026, 11, 20), instrument="tiny")
        s.add(obs)
        s.flush()
        m = Mosaic(
            obs_set_id=obs.id,
            kind="red_science",
            filename="red_001.fits",
            ra=CENTER[0],
            dec=CENTER[1],
            healpix=int(healpix_index(*CENTER)),
            mjd_obs=61000.1,
            exptime=60.0,
        )
        s.add(m)
        s.flush()
        img = Image(
            mosaic_id=m.id,
            ccd_num=1,
            filter="r",
            ra_min=149.9,
            ra_max=151.2,
            dec_min=1.9,
            dec_max=2.2,
        )
        s.add(img)
        s.flush()
        for i in range(len(ra)):
            s.add(
                Detection(
                    image_id=img.id,
                    band="r" if i % 2 else "g",
                    x=float(i),
                    y=1.0,
                    ra=float(ra[i]),
                    dec=float(dec[i]),
                    healpix=int(hp[i]),
                    mag=18.0 + 0.1 * i,
                    flags=0,
                )
            )
        cat = RefCat(name="gaia-sim", bands="G")
        s.add(cat)
        s.flush()
        for i in range(5):
            s.add(
                RefCatSource(
                    refcat_id=cat.id,
                    source_id=1000 + i,
                    ra=float(ra[i]),
                    dec=float(dec[i]),
                    healpix=int(hp[i]),
                )
            )
    return registry
