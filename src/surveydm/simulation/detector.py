"""The instrumental signature: static detector maps (bias structure, pixel response, dark
current with hot pixels and bad columns, fringe patterns) and the per-exposure effects
(cosmic rays, saturation with bleed trails, gain, non-linearity, crosstalk, read noise,
16-bit digitisation), applied in electrons and converted per amplifier to raw ADU.

The static maps are drawn from ``config.detector_seed`` so every night sees the same camera
(flats taken one night correct the next); they are cached when the camera is small.
Conventions follow :mod:`surveydm.instruments.model` (sections, flips, crosstalk in readout
order on ADU above bias, non-linearity on ADU above bias).
"""

from __future__ import annotations

import math
import zlib
from functools import cached_property

import numpy as np

from surveydm.instruments.geometry import ccd_placement, field_radius_deg
from surveydm.instruments.model import CCD, Amplifier, Filter, Instrument
from surveydm.simulation.config import SimulationConfig

_CACHE_LIMIT_PIXELS = 60_000_000  # cache static maps below this many camera pixels


def _smooth_field(rng: np.random.Generator, ny: int, nx: int, n_modes: int = 6) -> np.ndarray:
    """A smooth random field of rms ~1 from a few low-frequency cosine modes, (ny, nx)."""
    y = np.linspace(0, 1, ny, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, nx, dtype=np.float32)[None, :]
    out = np.zeros((ny, nx), np.float32)
    for _ in range(n_modes):
        kx, ky = rng.uniform(0.3, 2.5, 2)
        px, py = rng.uniform(0, 2 * np.pi, 2)
        out += np.cos(2 * np.pi * kx * x + px) * np.cos(2 * np.pi * ky * y + py)
    return out * np.float32(2.0 / math.sqrt(n_modes))


class DetectorModel:
    """Static maps of one camera for the simulator (see module doc)."""

    def __init__(self, instrument: Instrument, config: SimulationConfig) -> None:
        self.instrument = instrument
        self.config = config
        n_pix = sum(c.shape[0] * c.shape[1] for c in instrument.ccds)
        self._cache_enabled = n_pix <= _CACHE_LIMIT_PIXELS
        self._cache: dict[tuple, np.ndarray] = {}
        self._medians: dict[tuple, float] = {}

    def _rng(self, *key: int | str) -> np.random.Generator:
        ints = [zlib.crc32(str(k).encode()) for k in key]
        return np.random.default_rng([self.config.detector_seed, *ints])

    def _cached(self, key: tuple, make) -> np.ndarray:
        if not self._cache_enabled:
            return make()
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @cached_property
    def field_radius_deg(self) -> float:
        return field_radius_deg(self.instrument)

    def focal_plane_xy(self, ccd: CCD) -> tuple[np.ndarray, np.ndarray]:
        """Distorted tangent-plane offsets (deg) of every pixel over the field radius, i.e.
        normalised focal-plane coordinates in [-1, 1] at the field edge, each (ny, nx)."""
        place = ccd_placement(self.instrument, ccd, 0.0)
        ny, nx = ccd.shape
        x = np.arange(nx, dtype=np.float32)[None, :]
        y = np.arange(ny, dtype=np.float32)[:, None]
        m = place.matrix.astype(np.float32)
        dx, dy = x - np.float32(place.center_pix[0]), y - np.float32(place.center_pix[1])
        r = np.float32(1.0 / self.field_radius_deg)
        fx = (m[0, 0] * dx + m[0, 1] * dy + np.float32(place.center_deg[0])) * r
        fy = (m[1, 0] * dx + m[1, 1] * dy + np.float32(place.center_deg[1])) * r
        return fx, fy

    # --- static maps -------------------------------------------------------------------------
    def prnu(self, ccd: CCD) -> np.ndarray:
        """Pixel response non-uniformity times smooth QE variations, (ny, nx), mean ~1, with the
        dead (low-response) bad columns; the part of the response every illumination sees."""

        def make() -> np.ndarray:
            rng = self._rng("prnu", ccd.num)
            ny, nx = ccd.shape
            out = rng.standard_normal((ny, nx), dtype=np.float32)
            out *= np.float32(self.config.prnu_rms)
            out += np.float32(1.0)
            out *= 1 + np.float32(self.config.prnu_large_scale) * _smooth_field(rng, ny, nx)
            for col, y0, y1, kind in self.bad_columns(ccd):
                if kind == "dead":
                    out[y0:y1, col] *= np.float32(0.1)
            return out

        return self._cached(("prnu", ccd.num), make)

    def bad_columns(self, ccd: CCD) -> list[tuple[int, int, int, str]]:
        """Bad columns of a CCD: (x, y0, y1, kind) with kind ``dead`` (10 % response) or
        ``hot`` (extra dark current), rows y0:y1 (numpy, assembled CCD)."""
        rng = self._rng("badcol", ccd.num)
        ny, nx = ccd.shape
        out = []
        for i in range(self.config.bad_columns_per_ccd):
            col = int(rng.integers(5, nx - 5))
            y0 = int(rng.integers(0, ny // 2))
            out.append(
                (
                    col,
                    y0,
                    ny if i % 2 == 0 else int(rng.integers(y0 + 10, ny)),
                    "dead" if i % 2 == 0 else "hot",
                )
            )
        return out

    def dark_map(self, ccd: CCD) -> np.ndarray:
        """Dark current, e-/s per pixel, (ny, nx): the CCD's uniform dark current plus hot
        pixels (log-uniform rates) and hot columns."""

        def make() -> np.ndarray:
            rng = self._rng("dark", ccd.num)
            ny, nx = ccd.shape
            out = np.full((ny, nx), ccd.dark_current, np.float32)
            n_hot = rng.poisson(self.config.hot_pixel_fraction * ny * nx)
            lo, hi = self.config.hot_pixel_dark_e_s
            ys = rng.integers(0, ny, n_hot)
            xs = rng.integers(0, nx, n_hot)
            out[ys, xs] += 10 ** rng.uniform(math.log10(lo), math.log10(hi), n_hot)
            for col, y0, y1, kind in self.bad_columns(ccd):
                if kind == "hot":
                    out[y0:y1, col] += np.float32(hi / 10)
            return out

        return self._cached(("dark", ccd.num), make)

    def defect_mask(self, ccd: CCD) -> np.ndarray:
        """True where a pixel is hot (dark > 0.5 e-/s above the CCD's) or in a bad column."""
        mask = self.dark_map(ccd) > ccd.dark_current + 0.25
        for col, y0, y1, _ in self.bad_columns(ccd):
            mask[y0:y1, col] = True
        return mask

    def illumination(self, ccd: CCD, flt: Filter) -> np.ndarray:
        """Vignetting (falls by ``vignetting_edge`` at the field edge, quadratically) times a
        per-filter linear illumination gradient across the focal plane, (ny, nx)."""

        def make() -> np.ndarray:
            fx, fy = self.focal_plane_xy(ccd)
            rng = self._rng("illum", flt.name)
            ang = rng.uniform(0, 2 * np.pi)
            amp = self.config.illumination_gradient * rng.uniform(0.3, 1.0)
            vig = 1 - np.float32(self.config.vignetting_edge) * (fx * fx + fy * fy)
            grad = 1 + np.float32(amp) * (
                np.float32(math.cos(ang)) * fx + np.float32(math.sin(ang)) * fy
            )
            return (vig * grad).astype(np.float32)

        return make()  # not cached: only response() uses it, and that is cached

    def response(self, ccd: CCD, flt: Filter) -> np.ndarray:
        """Total pixel response in filter ``flt``: prnu * illumination, (ny, nx). Sky, objects
        and dome flats all see it, so dividing by a normalised master flat removes it."""
        return self._cached(
            ("resp", ccd.num, flt.name), lambda: self.prnu(ccd) * self.illumination(ccd, flt)
        )

    def median_response(self, ccd: CCD, flt: Filter) -> float:
        """Median of :meth:`response` (always cached: one number per CCD and filter)."""
        key = ("median", ccd.num, flt.name)
        if key not in self._medians:
            self._medians[key] = float(np.median(self.response(ccd, flt)))
        return self._medians[key]

    def fringe(self, ccd: CCD) -> np.ndarray:
        """Fringe pattern (interference of night-sky lines in the thin silicon): zero mean,
        rms 1, (ny, nx); its amplitude scales with the sky in fringing filters."""

        def make() -> np.ndarray:
            rng = self._rng("fringe", ccd.num)
            ny, nx = ccd.shape
            y = np.arange(ny, dtype=np.float32)[:, None]
            x = np.arange(nx, dtype=np.float32)[None, :]
            scale = 40.0 * (self.instrument.pixel_scale_arcsec / 0.265) ** -1
            phase = _smooth_field(rng, ny, nx, 4) * np.float32(3.0)
            kx, ky = rng.normal(0, 1, 2)
            out = np.sin(
                np.float32(2 * np.pi / scale) * (np.float32(kx) * x + np.float32(ky) * y) + phase
            )
            out -= out.mean()
            out /= out.std()
            return out.astype(np.float32)

        return self._cached(("fringe", ccd.num), make)

    def bias_pattern(self, ccd: CCD, amp: Amplifier) -> np.ndarray:
        """Bias structure of one amplifier, raw ADU, ``amp.raw_shape``: level, a slope along
        the rows, a fixed column pattern in the serial register (data and prescan) and an
        amplifier glow in the first rows/columns read; the overscan shares the row slope."""

        def make() -> np.ndarray:
            rng = self._rng("bias", ccd.num, amp.num)
            ny, nx = amp.raw_shape
            cfg = self.config
            y = np.arange(ny, dtype=np.float32)[:, None]
            x = np.arange(nx, dtype=np.float32)[None, :]
            slope = rng.uniform(-1, 1) * cfg.bias_row_gradient_adu
            out = np.full((ny, nx), amp.bias_level, np.float32) + np.float32(slope / ny) * y
            cols = rng.normal(0, cfg.bias_column_pattern_adu, nx).astype(np.float32)
            sy, sx = amp.bias_slices
            cols[sx] *= 0.2  # virtual overscan pixels: little column structure
            out += cols[None, :]
            glow = (
                np.float32(cfg.bias_glow_adu)
                * np.exp(-y / np.float32(max(ny / 20, 5)))
                * np.exp(-x / np.float32(max(nx / 10, 5)))
            )
            out += glow
            return out.astype(np.float32)

        return self._cached(("bias", ccd.num, amp.num), make)

    def full_well_e(self, ccd: CCD) -> float:
        """Full-well capacity (e-): the smallest over the CCD's amplifiers of the charge that
        reaches the saturation ADU."""
        return min((a.saturation - a.bias_level) * a.gain for a in ccd.amplifiers)


def add_cosmic_rays(
    image: np.ndarray,
    rng: np.random.Generator,
    exposure_s: float,
    pixel_size_um: float,
    config: SimulationConfig,
    hits: np.ndarray | None = None,
) -> int:
    """Add cosmic-ray tracks (electrons) in place; returns their number.

    Rate ``config.cosmic_ray_rate_cm2_s`` per cm^2 of silicon; zenith angles follow cos^2
    (muons), the projected track length is thickness * tan(theta) and the charge
    ``cosmic_ray_charge_e_um`` per um of path with 30 % lognormal fluctuations along the track.
    ``hits``, a (ny, nx) bool array, gets True on every pixel a track deposits charge in (the
    per-pixel truth mask; the random draws are the same with or without it).
    """
    ny, nx = image.shape
    area_cm2 = ny * nx * (pixel_size_um * 1e-4) ** 2
    n = int(rng.poisson(config.cosmic_ray_rate_cm2_s * area_cm2 * exposure_s))
    if n == 0:
        return 0
    # cos^2 zenith distribution: cos(theta) = u^(1/3)
    cos_t = rng.random(n) ** (1 / 3)
    tan_t = np.sqrt(1 - cos_t**2) / np.maximum(cos_t, 0.05)
    length_um = np.minimum(config.ccd_thickness_um * tan_t, 60 * pixel_size_um)
    path_um = np.hypot(length_um, config.ccd_thickness_um)
    charge = config.cosmic_ray_charge_e_um * path_um
    length_px = length_um / pixel_size_um
    phi = rng.uniform(0, 2 * np.pi, n)
    x0 = rng.uniform(0, nx, n)
    y0 = rng.uniform(0, ny, n)
    steps = np.maximum(np.ceil(length_px * 4).astype(int), 1)
    idx = np.repeat(np.arange(n), steps)
    frac = (np.arange(idx.size) - np.repeat(np.cumsum(steps) - steps, steps) + 0.5) / np.repeat(
        steps, steps
    )
    xs = (x0[idx] + frac * length_px[idx] * np.cos(phi[idx])).astype(int)
    ys = (y0[idx] + frac * length_px[idx] * np.sin(phi[idx])).astype(int)
    q = charge[idx] / steps[idx] * rng.lognormal(0, 0.3, idx.size)
    ok = (xs >= 0) & (xs < nx) & (ys >= 0) & (ys < ny)
    np.add.at(image, (ys[ok], xs[ok]), q[ok].astype(image.dtype))
    if hits is not None:
        hits[ys[ok], xs[ok]] = True
    return n


#: Codes of the per-pixel truth masks (``truth_masks.parquet``).
TRUTH_COSMIC_RAY = 1
TRUTH_SATURATED = 2
TRUTH_SATELLITE = 4


def truth_mask_rows(
    file: str,
    ccd_num: int,
    cosmic_rays: np.ndarray,
    saturated: np.ndarray,
    satellite: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Sparse rows of one CCD's truth mask: ``file, ccd_num, y, x, code`` arrays, one row per
    pixel hit by a cosmic ray (code 1), at full well after bleeding (code 2) or given >= 2 e- by
    a satellite trail (code 4; :mod:`surveydm.simulation.satellites`)."""
    pairs = [(cosmic_rays, TRUTH_COSMIC_RAY), (saturated, TRUTH_SATURATED)]
    if satellite is not None:
        pairs.append((satellite, TRUTH_SATELLITE))
    parts = [(np.nonzero(m), code) for m, code in pairs]
    y = np.concatenate([p[0][0] for p in parts]).astype(np.int32)
    x = np.concatenate([p[0][1] for p in parts]).astype(np.int32)
    code = np.concatenate([np.full(len(p[0]), c, np.int8) for p, c in parts])
    return {
        "file": np.full(len(y), file),
        "ccd_num": np.full(len(y), ccd_num, np.int32),
        "y": y,
        "x": x,
        "code": code,
    }


def truth_mask(table, file: str, ccd_num: int, shape: tuple[int, int]) -> np.ndarray:
    """(ny, nx) uint8 truth mask of one CCD (OR of the codes) from the rows of
    ``truth_masks.parquet`` (an astropy Table or a dict of arrays)."""
    f = np.asarray(table["file"])
    sel = (f == file) & (np.asarray(table["ccd_num"]) == ccd_num)
    out = np.zeros(shape, np.uint8)
    np.bitwise_or.at(
        out,
        (np.asarray(table["y"])[sel], np.asarray(table["x"])[sel]),
        np.asarray(table["code"])[sel].astype(np.uint8),
    )
    return out


def bleed(image: np.ndarray, full_well: float) -> int:
    """Saturate at ``full_well`` (e-) and spread the excess charge along the column (the
    parallel-transfer direction, numpy axis 0), half up and half down from each saturated
    run, filling pixels to full well: bleed trails. In place; returns the saturated pixel count.
    Charge that runs off the CCD is lost."""
    fw = np.float32(full_well)
    over = image > fw
    cols = np.nonzero(over.any(axis=0))[0]
    ny = image.shape[0]
    n_sat = 0
    for c in cols:
        col = image[:, c]
        o = col > fw
        edges = np.diff(np.concatenate([[0], o.astype(np.int8), [0]]))
        starts, stops = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
        for i0, i1 in zip(starts, stops, strict=True):
            excess = float((col[i0:i1] - fw).sum())
            col[i0:i1] = fw
            for direction in (1, -1):
                rem = excess / 2
                seg = col[i1:] if direction == 1 else col[:i0][::-1]
                if seg.size == 0 or rem <= 0:
                    continue
                cap = np.maximum(fw - seg, 0).astype(np.float64)
                cum = np.cumsum(cap)
                k = int(np.searchsorted(cum, rem))
                seg[:k] = fw
                if k < seg.size:
                    seg[k] += np.float32(rem - (cum[k - 1] if k > 0 else 0.0))
        n_sat += int((col >= fw).sum())
    del ny
    return n_sat


def amp_view(ccd_image: np.ndarray, amp: Amplifier) -> np.ndarray:
    """The amplifier's CCDSEC of an assembled image in readout order (flips applied)."""
    region = ccd_image[amp.ccd_slices]
    if amp.flip_x:
        region = region[:, ::-1]
    if amp.flip_y:
        region = region[::-1, :]
    return region


def electrons_to_raw(
    ccd: CCD,
    electrons: np.ndarray,
    detector: DetectorModel,
    rng: np.random.Generator,
    bias_offsets: dict[int, float],
    full_well_e: float,
) -> dict[int, np.ndarray]:
    """Convert a CCD's electron image (after noise, cosmic rays and bleeding) to raw uint16
    amplifier arrays ``{amp_num: (ny, nx) raw_shape}``.

    Per amplifier: divide by the gain, apply the non-linearity ``adu * (1 + c1 adu + c2
    adu^2)``, then crosstalk ``victim += coeff * min(source, saturation - bias)`` in readout
    order (saturated sources count as ``saturation - bias_level``), add the bias structure +
    ``bias_offsets`` drift and Gaussian read noise (``read_noise / gain`` ADU) on every raw
    pixel; pixels at ``full_well_e`` read exactly the saturation ADU; clip to 0..65535.
    """
    signal: dict[int, np.ndarray] = {}
    saturated: dict[int, np.ndarray] = {}
    for amp in ccd.amplifiers:
        raw = np.zeros(amp.raw_shape, np.float32)
        view = amp_view(electrons, amp)
        saturated[amp.num] = view >= np.float32(full_well_e * (1 - 1e-6))
        adu = view * np.float32(1.0 / amp.gain)
        if amp.nonlinearity:
            poly = np.ones_like(adu)
            for k, c in enumerate(amp.nonlinearity, start=1):
                poly += np.float32(c) * adu**k
            adu = adu * poly
        raw[amp.data_slices] = adu
        signal[amp.num] = raw
    if ccd.crosstalk:
        clipped = {}
        for a in ccd.amplifiers:
            top = np.float32(a.saturation - a.bias_level)
            c = np.minimum(signal[a.num], top)
            c[a.data_slices][saturated[a.num]] = top
            clipped[a.num] = c
        for xt in ccd.crosstalk:
            signal[xt.victim] += np.float32(xt.coeff) * clipped[xt.source]
    out = {}
    for amp in ccd.amplifiers:
        raw = signal[amp.num]
        raw += detector.bias_pattern(ccd, amp)
        raw += np.float32(bias_offsets.get(amp.num, 0.0))
        noise = rng.standard_normal(raw.shape, dtype=np.float32)
        noise *= np.float32(amp.read_noise / amp.gain)
        raw += noise
        # a pixel at full well reads out at the saturation level
        raw[amp.data_slices][saturated[amp.num]] = amp.saturation
        np.clip(raw, 0, min(amp.saturation, 65535.0), out=raw)
        out[amp.num] = np.rint(raw).astype(np.uint16)
    return out
