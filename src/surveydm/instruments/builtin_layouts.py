"""Built-in cameras in the raw layouts other than PAUCam's (developer tool, used by
:mod:`surveydm.instruments.generate_builtins`; fixed seeds).

* ``dcam`` / ``dcam-mini``: DECam-style (Flaugher et al. 2015): one extension per CCD holding
  two amplifiers, described by per-amplifier keywords (``DATASECA``/``BIASSECA``/
  ``DATASECB``/...; amplifier B reads from the high-x end, written as reversed ranges),
  CCDs named by an integer ``CCDNUM``, one filter named by ``FILTER``, sexagesimal RA.
* ``mosaicam`` / ``mosaicam-mini``: NOAO Mosaic-style (Jacoby et al. 1998): one extension per
  amplifier, CCDs named by a string ``DETPOS`` (``N1``, ``S1``) and amplifiers by ``AMPNAME``
  (``L``, ``R``), the right amplifier mirrored (reversed ``CCDSEC``), ``DATE-OBS`` holding the
  date only with the time in ``UT``, one filter named by ``FILTER``.

The ``-mini`` variants bin 3x3 (same footprint, 1/9 the pixels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_OBSTYPES = {
    "ZERO": "bias", "BIAS": "bias", "DOME FLAT": "flat", "DOMEFLAT": "flat", "FLAT": "flat",
    "OBJECT": "science", "SCIENCE": "science", "TEST": "test", "FOCUS": "focus", "DARK": "dark",
}  # fmt: skip
_BANDS = [("g", 475.0, 150.0), ("r", 635.0, 150.0), ("i", 775.0, 150.0), ("z", 925.0, 150.0)]


def _electronics(rng: np.random.Generator, mini: bool) -> dict[str, Any]:
    return {
        "gain": round(float(rng.uniform(3.5, 4.5)), 3),
        "read_noise": round(float(rng.uniform(5.0, 7.0)), 2),
        "saturation": float(round(60000 * rng.uniform(0.97, 1.03))),
        "bias_level": float(round(rng.uniform(1500.0, 3000.0))),
        "nonlinearity": [float(f"{-2.0e-7 * rng.uniform(0.7, 1.3):.3e}")],
    }


def _xtalk(rng: np.random.Generator) -> list[dict[str, Any]]:
    return [
        {"source": s, "victim": v, "coeff": float(f"{10 ** rng.uniform(-4, -3):.3e}")}
        for s, v in ((1, 2), (2, 1))
    ]


def _header(**changes: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "obstype": {"keyword": "OBSTYPE"},
        "exptime": {"keyword": "EXPTIME"},
        "date_obs": {"keyword": "DATE-OBS"},
        "mjd_obs": {"keyword": "MJD-OBS", "required": False},
        "filter_tray": {"keyword": "FILTER"},
        "ra": {"keyword": "RA", "unit": "hourangle"},
        "dec": {"keyword": "DEC", "unit": "deg"},
        "airmass": {"keyword": "AIRMASS", "required": False},
        "object": {"keyword": "OBJECT", "required": False, "default": ""},
        "obstype_values": dict(_OBSTYPES),
    }
    kw.update(changes)
    return kw


def dcam(mini: bool, filter_fn: Any) -> dict[str, Any]:
    """The DECam-style camera: 6 CCDs of 4096 x 2048 in 2 rows of 3, 2 amplifiers each in one
    extension per CCD; ``filter_fn(name, kind, wl, width, area, throughput)`` makes a filter."""
    rng = np.random.default_rng(4000 + mini)
    f = 3 if mini else 1
    ny, nx = 4096 // f, 2048 // f
    half, over = nx // 2, 48 // f
    ccds = []
    for num in range(1, 7):
        row, col = divmod(num - 1, 3)
        x_mm = (col - 1) * (nx * f * 0.015 + 1.0)
        y_mm = (row - 0.5) * (ny * f * 0.015 + 1.0)
        a_data = f"[{over + 1}:{over + half},1:{ny}]"
        b_data = f"[{over + 2 * half}:{over + half + 1},1:{ny}]"  # read from the high-x end
        amps = [
            {"num": 1, "name": "A", "datasec": a_data, "biassec": f"[1:{over},1:{ny}]",
             "ccdsec": f"[1:{half},1:{ny}]", **_electronics(rng, mini)},
            {"num": 2, "name": "B", "datasec": b_data,
             "biassec": f"[{2 * over + 2 * half}:{over + 2 * half + 1},1:{ny}]",
             "ccdsec": f"[{2 * half}:{half + 1},1:{ny}]", **_electronics(rng, mini)},
        ]  # fmt: skip
        ccds.append({
            "num": num, "name": f"S{num}", "shape": [ny, nx],
            "center_mm": [round(x_mm, 3), round(y_mm, 3)], "rotation_deg": 0.0,
            "dark_current": 0.001 * f * f, "amplifiers": amps, "crosstalk": _xtalk(rng),
        })  # fmt: skip
    area, thr = 10.0, 0.45  # Blanco 4 m
    return {
        "name": "dcam-mini" if mini else "dcam",
        "description": "DECam-style camera: 6 CCDs, one extension per CCD holding amplifiers "
        "A and B (DATASECA/DATASECB...; B read from the high-x end), one filter per exposure."
        + (" Mini version: 3x3-binned pixels." if mini else ""),
        "telescope": "Blanco-like 4m",
        "pixel_scale_arcsec": round(0.263 * f, 4),
        "pixel_size_um": 15.0 * f,
        "distortion_radial": [2.0e-3],
        "ccds": ccds,
        "filters": [filter_fn(n, "broad", wl, w, area, thr) for n, wl, w in _BANDS],
        "header": _header(),
        "layout": {
            "extensions": "ccd",
            "ccd": {"keyword": "CCDNUM"},
            "keywords": {"saturation": "SATURAT{amp}"},
        },
    }


def mosaicam(mini: bool, filter_fn: Any) -> dict[str, Any]:
    """The NOAO Mosaic-style camera: 2 CCDs of 4096 x 2048 named N1 and S1, amplifiers L and
    R (R mirrored), one extension per amplifier named by strings."""
    rng = np.random.default_rng(5000 + mini)
    f = 3 if mini else 1
    ny, nx = 4096 // f, 2048 // f
    half, pre, over = nx // 2, 8 // f or 1, 48 // f
    raw = [ny, pre + half + over]
    ccds = []
    for num, pos, y_mm in ((1, "N1", 0.5), (2, "S1", -0.5)):
        common = {
            "raw_shape": raw, "prescan": f"[1:{pre},1:{ny}]",
            "datasec": f"[{pre + 1}:{pre + half},1:{ny}]",
            "biassec": f"[{pre + half + 1}:{pre + half + over},1:{ny}]",
        }  # fmt: skip
        amps = [
            {"num": 1, "name": "L", **common, "ccdsec": f"[1:{half},1:{ny}]",
             **_electronics(rng, mini)},
            {"num": 2, "name": "R", **common, "ccdsec": f"[{2 * half}:{half + 1},1:{ny}]",
             **_electronics(rng, mini)},  # mirrored: IRAF reversed range
        ]  # fmt: skip
        ccds.append({
            "num": num, "name": pos, "shape": [ny, nx],
            "center_mm": [0.0, round(y_mm * (ny * f * 0.015 + 1.0), 3)], "rotation_deg": 0.0,
            "dark_current": 0.001 * f * f, "amplifiers": amps, "crosstalk": _xtalk(rng),
        })  # fmt: skip
    area, thr = 10.0, 0.42  # Mayall 4 m
    return {
        "name": "mosaicam-mini" if mini else "mosaicam",
        "description": "NOAO Mosaic-style camera: 2 CCDs named N1 and S1 (DETPOS), amplifiers "
        "L and R (AMPNAME, R mirrored), one extension per amplifier, one filter per exposure."
        + (" Mini version: 3x3-binned pixels." if mini else ""),
        "telescope": "Mayall-like 4m",
        "pixel_scale_arcsec": round(0.26 * f, 4),
        "pixel_size_um": 15.0 * f,
        "distortion_radial": [2.0e-3],
        "ccds": ccds,
        "filters": [filter_fn(n, "broad", wl, w, area, thr) for n, wl, w in _BANDS[:3]],
        "header": _header(time_obs={"keyword": "UT"}),
        "layout": {
            "extensions": "amplifier",
            "ccd": {"keyword": "DETPOS", "values": {"N1": 1, "S1": 2}},
            "amp": {"keyword": "AMPNAME"},
        },
    }
