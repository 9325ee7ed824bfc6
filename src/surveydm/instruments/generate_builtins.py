"""Regenerate the built-in instrument files in ``data/`` (developer tool, not used at run time).

The PAUCam description has 72 amplifiers with individual gains, read noises, bias levels,
non-linearity and 12 crosstalk terms per CCD, so it is written by this script rather than by
hand. The per-amplifier values are drawn from a fixed seed, so rerunning it reproduces the
committed files exactly::

    python -m surveydm.instruments.generate_builtins

Sources: PAUCam (Padilla et al. 2019, PASP 131, 065001; seed 000 section 1): 18 CCDs of
2k x 4k 15-um pixels at 0.265 arcsec/pixel, 4 amplifiers each, 40 narrow bands of ~13 nm from
455 to 845 nm on the 8 inner CCDs in 5 trays, 6 broad-band trays. T80Cam (Marin-Franch et al.
2015; seed 001): one 9.2k x 9.2k CCD, 16 amplifiers, 0.55 arcsec/pixel, the 12 J-PLUS filters.
Zero-points (AB mag giving 1 e-/s) follow from the collecting area and a ~40-50 % system
throughput: 5.48e10 * (width/wavelength) photons/s/m^2 at AB = 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DATA_DIR = Path(__file__).parent / "data"


def _zeropoint(wavelength_nm: float, width_nm: float, area_m2: float, throughput: float) -> float:
    """AB magnitude giving 1 e-/s for a top-hat passband (see module doc)."""
    rate = 5.48e10 * (width_nm / wavelength_nm) * area_m2 * throughput
    return round(2.5 * math.log10(rate), 3)


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    return float(np.interp(x, xs, ys))


# Dark-sky brightness (AB mag/arcsec^2) and extinction (mag/airmass) vs wavelength, La Palma
# and Javalambre are similar (King 1985; Benn & Ellison 1998).
_SKY_WL = [350.0, 480.0, 620.0, 760.0, 880.0, 1000.0]
_SKY_MAG = [22.2, 22.0, 21.0, 20.2, 19.4, 18.5]
_EXT = [0.48, 0.17, 0.09, 0.05, 0.04, 0.03]


def _filter(
    name: str, kind: str, wl: float, width: float, area: float, thr: float
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "wavelength_nm": wl,
        "width_nm": width,
        "zeropoint": _zeropoint(wl, width, area, thr),
        "extinction": round(_interp(wl, _SKY_WL, _EXT), 3),
        "sky_mag": round(_interp(wl, _SKY_WL, _SKY_MAG), 2),
        "fringing": wl >= 760.0,
    }


def _amps(
    rng: np.random.Generator,
    ccd_shape: tuple[int, int],
    n_x: int,
    n_y: int,
    prescan: int,
    overscan: int,
    gain: tuple[float, float],
    read_noise: tuple[float, float],
    saturation: float,
    bias: tuple[float, float],
    nonlin_c1: float,
    letters: str = "ABCDEFGHIJKLMNOP",
) -> list[dict[str, Any]]:
    """Amplifiers tiling the CCD in an n_x by n_y grid, numbered row by row from the bottom.

    Each amplifier reads out from the corner nearest the CCD edge: the right half of the grid
    has ``flip_x``, the top row ``flip_y``. Raw layout in readout order: prescan, data, overscan.
    """
    ny, nx = ccd_shape
    ay, ax = ny // n_y, nx // n_x
    amps = []
    num = 0
    for iy in range(n_y):
        for ix in range(n_x):
            num += 1
            x1, y1 = ix * ax + 1, iy * ay + 1
            amp: dict[str, Any] = {
                "num": num,
                "name": letters[num - 1],
                "raw_shape": [ay, prescan + ax + overscan],
                "datasec": f"[{prescan + 1}:{prescan + ax},1:{ay}]",
                "biassec": f"[{prescan + ax + 1}:{prescan + ax + overscan},1:{ay}]",
            }
            if prescan:
                amp["prescan"] = f"[1:{prescan},1:{ay}]"
            amp.update(
                {
                    "ccdsec": f"[{x1}:{x1 + ax - 1},{y1}:{y1 + ay - 1}]",
                    "flip_x": ix >= n_x / 2,
                    "flip_y": iy >= n_y / 2 and n_y > 1,
                    "gain": round(float(rng.uniform(*gain)), 3),
                    "read_noise": round(float(rng.uniform(*read_noise)), 2),
                    "saturation": float(round(saturation * rng.uniform(0.97, 1.03))),
                    "bias_level": float(round(rng.uniform(*bias))),
                    "nonlinearity": [
                        float(f"{nonlin_c1 * rng.uniform(0.7, 1.3):.3e}"),
                        float(f"{nonlin_c1 * 1e-6 * rng.uniform(0.5, 1.5):.3e}"),
                    ],
                }
            )
            amps.append(amp)
    return amps


def _crosstalk(rng: np.random.Generator, n_amps: int) -> list[dict[str, Any]]:
    """Every ordered pair of amplifiers of a CCD, coefficients 1e-4..1e-3 (log-uniform)."""
    out = []
    for s in range(1, n_amps + 1):
        for v in range(1, n_amps + 1):
            if s != v:
                coeff = 10 ** rng.uniform(-4, -3) * (1 if rng.random() > 0.15 else -1)
                out.append({"source": s, "victim": v, "coeff": float(f"{coeff:.3e}")})
    return out


def _paucam_layout() -> list[tuple[float, float, float]]:
    """(x_mm, y_mm, rotation_deg) of the 18 CCDs: 1-8 the inner 4x2 block (2k wide, 4k tall),
    9-14 horizontal CCDs in rows above and below it, 15-18 vertical pairs left and right."""
    w, h, gap = 30.72, 61.44, 1.0
    out = []
    for iy in (1, -1):  # inner block: top row first
        for ix in range(4):
            out.append(((ix - 1.5) * (w + gap), iy * (h + gap) / 2, 0.0))
    y_out = (h + gap) + (w + gap) / 2
    for iy in (1, -1):
        for ix in (-1, 0, 1):
            out.append((ix * (h + gap), iy * y_out, 90.0))
    x_side = 2 * (w + gap) + (w + gap) / 2
    for ix in (-1, 1):
        for iy in (1, -1):
            out.append((ix * x_side, iy * (h + gap) / 2, 0.0))
    return out


_PAUCAM_BB = [  # name, central wavelength, width (nm)
    ("u", 360.0, 60.0),
    ("g", 475.0, 140.0),
    ("r", 625.0, 140.0),
    ("i", 765.0, 150.0),
    ("z", 880.0, 110.0),
    ("Y", 1000.0, 100.0),
]


def _paucam_header() -> dict[str, Any]:
    kw = {
        "obstype": {"keyword": "OBSTYPE"},
        "exptime": {"keyword": "EXPTIME"},
        "date_obs": {"keyword": "DATE-OBS"},
        "mjd_obs": {"keyword": "MJD-OBS"},
        "filter_tray": {"keyword": "FILTRAY"},
        "ra": {"keyword": "RA", "unit": "deg"},
        "dec": {"keyword": "DEC", "unit": "deg"},
        "airmass": {"keyword": "AIRMASS", "required": False},
        "object": {"keyword": "OBJECT", "required": False, "default": ""},
        "ambient_temp": {"keyword": "AMBTEMP", "required": False},
        "humidity": {"keyword": "HUMIDITY", "required": False},
        "pressure": {"keyword": "PRESSURE", "required": False},
        "wind_speed": {"keyword": "WINDSPD", "required": False},
        "wind_dir": {"keyword": "WINDDIR", "required": False},
        "ccd_num": {"keyword": "CCDNUM"},
        "amp_num": {"keyword": "AMPNUM"},
        "obstype_values": {
            "BIAS": "bias",
            "ZERO": "bias",
            "FLAT": "flat",
            "DOMEFLAT": "flat",
            "SKYFLAT": "flat",
            "SCIENCE": "science",
            "TARGET": "science",
            "OBJECT": "science",
            "TEST": "test",
            "FOCUS": "focus",
            "DARK": "dark",
        },
    }
    return kw


def paucam(mini: bool) -> dict[str, Any]:
    """The PAUCam description; ``mini`` bins pixels 3x3 (same footprint, 1/9 the pixels)."""
    rng = np.random.default_rng(2015 + mini)
    factor = 3 if mini else 1
    shape = (1364, 682) if mini else (4096, 2048)
    area, thr = 12.0, 0.42  # WHT 4.2 m, prime-focus corrector + filter + CCD
    filters = [
        _filter(f"NB{wl}", "narrow", float(wl), 13.0, area, thr) for wl in range(455, 850, 10)
    ]
    filters += [_filter(n, "broad", wl, w, area, thr) for n, wl, w in _PAUCAM_BB]
    inner, outer = list(range(1, 9)), list(range(9, 19))
    outer_bb = ["g", "r", "i", "z"]
    trays = []
    for k in range(5):
        first = 455 + 80 * k
        mapping = {c: f"NB{first + 10 * i}" for i, c in enumerate(inner)}
        mapping.update({c: outer_bb[i % 4] for i, c in enumerate(outer)})
        trays.append({"name": f"NB{first}-{first + 70}", "filters": mapping})
    for name, _, _ in _PAUCAM_BB:
        trays.append({"name": name, "filters": {c: name for c in inner + outer}})
    ccds = []
    for num, (x, y, rot) in enumerate(_paucam_layout(), start=1):
        ccds.append(
            {
                "num": num,
                "name": f"CCD{num:02d}",
                "shape": list(shape),
                "center_mm": [round(x, 3), round(y, 3)],
                "rotation_deg": rot,
                "dark_current": round(0.002 * factor**2, 4),
                "amplifiers": _amps(
                    rng,
                    shape,
                    2,
                    2,
                    prescan=24 // factor,
                    overscan=96 // factor,
                    gain=(3.0, 4.0),
                    read_noise=(4.0, 6.0),
                    saturation=60000.0,
                    bias=(1000.0, 2000.0),
                    nonlin_c1=-2.0e-7,
                ),
                "crosstalk": _crosstalk(rng, 4),
            }
        )
    return {
        "name": "paucam-mini" if mini else "paucam",
        "description": (
            "PAUCam at the WHT prime focus: 18 CCDs of 2k x 4k, 4 amplifiers each (72 raw "
            "extensions). CCDs 1-8 are the inner block carrying the narrow bands."
            + (
                " Mini version: 3x3-binned pixels (same footprint, 1/9 the pixels) so a whole "
                "night simulates and reduces in seconds."
                if mini
                else ""
            )
        ),
        "telescope": "WHT 4.2m",
        "pixel_scale_arcsec": round(0.265 * factor, 4),
        "pixel_size_um": 15.0 * factor,
        "distortion_radial": [4.0e-3],
        "ccds": ccds,
        "filters": filters,
        "trays": trays,
        "header": _paucam_header(),
    }


_JPLUS = [  # name, kind, central wavelength, FWHM (nm); Cenarro et al. 2019, table 2
    ("u", "broad", 348.5, 50.8),
    ("J0378", "narrow", 378.5, 16.8),
    ("J0395", "narrow", 395.0, 10.0),
    ("J0410", "narrow", 410.0, 20.0),
    ("J0430", "narrow", 430.0, 20.0),
    ("g", "broad", 480.3, 140.9),
    ("J0515", "narrow", 515.0, 20.0),
    ("r", "broad", 625.4, 138.8),
    ("J0660", "narrow", 660.0, 13.8),
    ("i", "broad", 766.8, 153.5),
    ("J0861", "narrow", 861.0, 40.0),
    ("z", "broad", 911.4, 140.9),
]


def t80cam(mini: bool) -> dict[str, Any]:
    """T80Cam on JAST/T80; ``mini`` bins 2x2 (4608^2 pixels of 1.1 arcsec, 4 amplifiers)."""
    rng = np.random.default_rng(8080 + mini)
    n = 4608 if mini else 9216
    area, thr = 0.40, 0.45
    filters = [_filter(name, kind, wl, w, area, thr) for name, kind, wl, w in _JPLUS]
    header = _paucam_header()
    header["obstype"] = {"keyword": "IMAGETYP"}
    header["filter_tray"] = {"keyword": "FILTER"}
    header["ra"] = {"keyword": "RA", "unit": "hourangle"}
    header["dec"] = {"keyword": "DEC", "unit": "deg"}
    header["obstype_values"] = {
        "BIAS": "bias",
        "ZERO": "bias",
        "FLAT": "flat",
        "SKYFLAT": "flat",
        "DOMEFLAT": "flat",
        "SCIENCE": "science",
        "LIGHT": "science",
        "OBJECT": "science",
        "TEST": "test",
        "FOCUS": "focus",
        "DARK": "dark",
    }
    n_x, n_y = (2, 2) if mini else (8, 2)
    return {
        "name": "t80cam-mini" if mini else "t80cam",
        "description": (
            "T80Cam on the JAST/T80 (OAJ): one 9.2k x 9.2k CCD (9216 x 9216 used) with 16 "
            "amplifiers and the 12 J-PLUS filters, each in its own one-filter position."
            + (" Mini version: 2x2-binned pixels, 4 amplifiers, same footprint." if mini else "")
        ),
        "telescope": "JAST/T80 0.83m",
        "pixel_scale_arcsec": 1.1 if mini else 0.55,
        "pixel_size_um": 20.0 if mini else 10.0,
        "distortion_radial": [1.0e-3],
        "ccds": [
            {
                "num": 1,
                "name": "CCD01",
                "shape": [n, n],
                "center_mm": [0.0, 0.0],
                "rotation_deg": 0.0,
                "dark_current": 0.001 * (4 if mini else 1),
                "amplifiers": _amps(
                    rng,
                    (n, n),
                    n_x,
                    n_y,
                    prescan=8 // (2 if mini else 1),
                    overscan=64 // (2 if mini else 1),
                    gain=(1.4, 1.8),
                    read_noise=(3.0, 4.5),
                    saturation=62000.0,
                    bias=(400.0, 900.0),
                    nonlin_c1=-1.5e-7,
                ),
                "crosstalk": _crosstalk(rng, n_x * n_y) if mini else _t80_crosstalk(rng),
            }
        ],
        "filters": filters,
        "trays": [{"name": name, "filters": {1: name}} for name, *_ in _JPLUS],
        "header": header,
    }


def _t80_crosstalk(rng: np.random.Generator) -> list[dict[str, Any]]:
    """16 amplifiers: crosstalk only between neighbours in the same row (the readout chain)."""
    out = []
    for row in (0, 8):
        for i in range(8):
            for j in (i - 1, i + 1):
                if 0 <= j < 8:
                    coeff = 10 ** rng.uniform(-4, -3)
                    out.append(
                        {
                            "source": row + i + 1,
                            "victim": row + j + 1,
                            "coeff": float(f"{coeff:.3e}"),
                        }
                    )
    return out


class _Dumper(yaml.SafeDumper):
    """Writes lists of scalars (shapes, positions, coefficients) inline."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(v, dict | list) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _dump(doc: dict[str, Any], path: Path) -> None:
    header = (
        f"# {doc['name']}: generated by `python -m surveydm.instruments.generate_builtins`.\n"
        "# Format: see docs/instruments.md and surveydm/instruments/model.py.\n"
    )
    path.write_text(header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100))


def main() -> None:
    """Write paucam, t80cam, dcam and mosaicam and their -mini variants into ``data/``."""
    from surveydm.instruments.builtin_layouts import dcam, mosaicam

    DATA_DIR.mkdir(exist_ok=True)
    docs = [paucam(False), paucam(True), t80cam(False), t80cam(True)]
    docs += [make(mini, _filter) for make in (dcam, mosaicam) for mini in (False, True)]
    for doc in docs:
        _dump(doc, DATA_DIR / f"{doc['name']}.yaml")


if __name__ == "__main__":
    main()
