"""Helpers for the transfer / register / ingest tests (no tests here): a tiny camera derived
from ``paucam-mini`` (same header mapping, filters and trays; 2 CCDs x 4 amplifiers of 48 x 64
raw pixels so files are ~60 kB), a raw multi-extension FITS writer following the instrument's
header mapping (uint16 pixels, BZERO 32768) and a manifest writer (adler32 of the bytes)."""

from __future__ import annotations

import zlib
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from astropy.io import fits

from surveydm.instruments import Instrument, load_instrument

NIGHT = date(2026, 11, 20)
TRAY = "NB455-525"


def tiny_instrument(path: Path) -> Path:
    """Write the tiny paucam-derived instrument YAML to ``path`` and return it."""
    base = load_instrument("paucam-mini").model_dump(mode="json")
    keep = (1, 9)
    ccds = []
    for num in keep:
        src = next(c for c in base["ccds"] if c["num"] == num)
        amps = []
        for i, a in enumerate(src["amplifiers"][:4]):
            x0, y0 = (i % 2) * 36, (i // 2) * 64
            amps.append(
                {
                    **a,
                    "raw_shape": [64, 48],
                    "prescan": "[1:4,1:64]",
                    "datasec": "[5:40,1:64]",
                    "biassec": "[41:48,1:64]",
                    "ccdsec": f"[{x0 + 1}:{x0 + 36},{y0 + 1}:{y0 + 64}]",
                }
            )
        ccds.append({**src, "shape": [128, 72], "amplifiers": amps, "crosstalk": []})
    base["ccds"] = ccds
    base["name"] = "paucam-tiny"
    base["trays"] = [
        {**t, "filters": {n: t["filters"][str(n)] for n in keep}}
        if isinstance(next(iter(t["filters"])), str)
        else {**t, "filters": {n: t["filters"][n] for n in keep}}
        for t in base["trays"]
    ]
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    load_instrument(path)  # validate
    return path


def adler32(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def write_raw(
    path: Path,
    inst: Instrument,
    kind: str,
    *,
    tray: str = TRAY,
    exptime: float = 10.0,
    when: datetime | None = None,
    ra: float = 150.1,
    dec: float = 2.2,
    seed: int = 0,
    drop_keyword: str | None = None,
    signal: float | None = None,
) -> Path:
    """Write a raw mosaic of ``kind`` (bias, flat, science, test, focus) for ``inst``.

    Pixels: each amplifier's bias level + read noise everywhere, plus ``signal`` ADU (default:
    0 for bias/test, 20000 for flats, 500 for science) in the data section. ``drop_keyword``
    removes that keyword from the primary header.
    """
    rng = np.random.default_rng(seed)
    when = when or datetime(2026, 11, 21, 1, 0, 0) + timedelta(minutes=seed)
    obstype = {"bias": "BIAS", "flat": "FLAT", "science": "SCIENCE", "test": "TEST"}.get(
        kind, kind.upper()
    )
    if signal is None:
        signal = {"flat": 20000.0, "science": 500.0}.get(kind, 0.0)
    h = inst.header
    primary = fits.Header()
    primary[h.obstype.keyword] = obstype
    primary[h.exptime.keyword] = 0.0 if kind == "bias" else exptime
    primary[h.date_obs.keyword] = when.isoformat(timespec="milliseconds")
    primary[h.mjd_obs.keyword] = 61000.0 + seed / 1440
    primary[h.filter_tray.keyword] = tray
    primary[h.ra.keyword] = ra
    primary[h.dec.keyword] = dec
    primary["AIRMASS"] = 1.2
    primary["OBJECT"] = "COSMOS" if kind == "science" else kind
    primary["AMBTEMP"] = 8.5
    primary["HUMIDITY"] = 40.0
    if drop_keyword:
        del primary[drop_keyword]
    hdus: list[Any] = [fits.PrimaryHDU(header=primary)]
    for ccd in inst.ccds:
        for amp in ccd.amplifiers:
            ny, nx = amp.raw_shape
            data = amp.bias_level + rng.normal(0, amp.read_noise / amp.gain, (ny, nx))
            dy, dx = amp.data_slices
            data[dy, dx] += signal
            hdr = fits.Header()
            hdr["CCDNUM"] = ccd.num
            hdr["AMPNUM"] = amp.num
            hdr["DATASEC"] = amp.datasec
            hdr["BIASSEC"] = amp.biassec
            hdr["CCDSEC"] = amp.ccdsec
            hdr["GAIN"] = amp.gain
            hdr["RDNOISE"] = amp.read_noise
            hdus.append(fits.ImageHDU(np.clip(data, 0, 65535).astype(np.uint16), header=hdr))
    fits.HDUList(hdus).writeto(path)
    return path


def write_manifest(
    directory: Path,
    files: list[tuple[str, str]],
    *,
    instrument: str,
    obs_set: str | None = None,
    night: date = NIGHT,
    project: str = "PAUS",
    sizes: dict[str, int] | None = None,
    checksums: dict[str, str] | None = None,
) -> Path:
    """Write ``manifest.yaml`` listing ``files`` [(name, kind)] with their real size and
    adler32 unless ``sizes`` / ``checksums`` override them (for names absent on disk give
    both)."""
    entries = []
    for name, kind in files:
        p = directory / name
        size = (sizes or {}).get(name, p.stat().st_size if p.exists() else None)
        adler = (checksums or {}).get(name, adler32(p) if p.exists() else None)
        entries.append({"name": name, "kind": kind, "size": size, "adler32": adler})
    doc = {
        "obs_set": obs_set or directory.name,
        "night": night.isoformat(),
        "instrument": instrument,
        "operator": "tester",
        "project": project,
        "comments": "clear night",
        "mjd_start": 61000.0,
        "mjd_stop": 61000.4,
        "files": entries,
    }
    path = directory / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def make_obs_set(
    buffer: Path,
    obs_set: str,
    instrument_path: Path,
    kinds: tuple[str, ...] = ("bias", "bias", "flat", "science"),
    *,
    manifest: bool = True,
) -> Path:
    """An obs set directory with one raw file per kind and its manifest. Returns the dir."""
    inst = load_instrument(instrument_path)
    d = buffer / obs_set
    d.mkdir(parents=True)
    files = []
    for i, kind in enumerate(kinds, 1):
        name = f"{obs_set}_{i:04d}.fits"
        write_raw(d / name, inst, kind, seed=i + zlib.crc32(obs_set.encode()) % 1000)
        files.append((name, kind))
    if manifest:
        write_manifest(d, files, instrument=str(instrument_path))
    return d
