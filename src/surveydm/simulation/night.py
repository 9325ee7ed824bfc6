"""``simulate_night``: one observing night written as the camera's data-acquisition system
would (seed 000, section 3: one directory per observation set with multi-extension FITS
mosaics and a YAML manifest written last), plus the truth beside it.

File formats are documented in docs/simulate.md.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.time import Time

from surveydm.instruments import Instrument, load_instrument
from surveydm.instruments.geometry import ccd_placement, ccd_wcs, field_radius_deg
from surveydm.simulation.config import SimulationConfig, SimulationError
from surveydm.simulation.detector import (
    DetectorModel,
    add_cosmic_rays,
    bleed,
    electrons_to_raw,
    truth_mask_rows,
)
from surveydm.simulation.headers import primary_header
from surveydm.simulation.layout import ccd_hdus, ccd_header, ccd_pixels
from surveydm.simulation.plan import (
    Exposure,
    ExposureCounts,
    default_trays,
    julian_year,
    plan_night,
)
from surveydm.simulation.render import render_galaxies, render_stars
from surveydm.simulation.satellites import (
    SatelliteTrail,
    draw_trails,
    render_trail,
    trail_e_per_pixel,
    trail_line_pixels,
)
from surveydm.simulation.sky import SkyModel, make_sky, refcat_table, write_refcat
from surveydm.simulation.truth import exposures_table, read_parquet, write_parquet

KINDS = ("bias", "flat", "science", "test", "focus")
_OBSSET_RE = re.compile(r"^(\d{8})_(\d{3})$")
JAVALAMBRE = (40.0418, -1.0163)


@dataclass(frozen=True)
class SimulatedFile:
    """One raw file written: absolute path, kind (bias|flat|science|test|focus), obs set,
    exposure number, size (bytes) and adler32 (8 lower-case hex digits)."""

    path: Path
    kind: str
    obs_set: str
    expnum: int
    size: int
    adler32: str


@dataclass
class SimulatedNight:
    """What :func:`simulate_night` wrote."""

    instrument: str
    night: str
    out_dir: Path
    obs_sets: list[str]
    files: list[SimulatedFile]
    manifests: list[Path]
    truth_dir: Path
    refcat: Path
    objects: Path
    exposures: Path
    elapsed_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def obs_set(self) -> str:
        """The (first) observation set id."""
        return self.obs_sets[0]

    @property
    def refcat_path(self) -> Path:
        """Alias of ``refcat``: the reference catalog file (``refcat.fits``)."""
        return self.refcat

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def files_of(self, kind: str) -> list[SimulatedFile]:
        """The files of one kind, in exposure order."""
        return [f for f in self.files if f.kind == kind]


def _next_obs_set(out_dir: Path, yyyymmdd: str) -> tuple[str, int, float]:
    """Next obs set id of the night, the next exposure number and the end (MJD) of the
    night's previous obs sets (from their manifests; 0 when there are none)."""
    counter, expnum, last_mjd = 0, 0, 0.0
    if out_dir.is_dir():
        for d in out_dir.iterdir():
            m = _OBSSET_RE.match(d.name)
            if d.is_dir() and m and m.group(1) == yyyymmdd:
                counter = max(counter, int(m.group(2)))
                try:
                    stop = yaml.safe_load((d / "manifest.yaml").read_text()).get("mjd_stop")
                    last_mjd = max(last_mjd, float(stop or 0.0))
                except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
                    pass
                for f in d.glob(f"*.{yyyymmdd}.*.fits"):
                    try:
                        expnum = max(expnum, int(f.name.split(".")[-2]))
                    except ValueError:
                        continue
    return f"{yyyymmdd}_{counter + 1:03d}", expnum + 1, last_mjd


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class _NightSimulator:
    def __init__(self, instrument: Instrument, cfg: SimulationConfig, seed: int) -> None:
        self.inst = instrument
        self.cfg = cfg
        self.seed = seed
        self.detector = DetectorModel(instrument, cfg)
        self.pix_area = instrument.pixel_scale_arcsec**2
        self.field_radius = field_radius_deg(instrument)
        self.truth_rows: list[dict] = []
        self.mask_rows: list[dict] = []
        self.trail_rows: list[dict] = []

    def _psf_fwhm(self, e: Exposure, ccd, flt, x=None, y=None):
        """PSF FWHM (arcsec): seeing x airmass^0.6 x (lambda/500 nm)^-0.2 with a mild
        quadratic growth towards the field edge, at the CCD centre or at pixels (x, y)."""
        if x is None:
            r = math.hypot(*ccd.center_mm) * self.inst.plate_scale_arcsec_per_mm / 3600
        else:
            xi, eta = ccd_placement(self.inst, ccd, 0.0).pixel_to_distorted(x, y)
            r = np.hypot(xi, eta)
        edge = 1 + self.cfg.psf_field_variation * (r / self.field_radius) ** 2
        return e.seeing * e.airmass**0.6 * (flt.wavelength_nm / 500.0) ** -0.2 * edge

    def _render_focus_sequence(self, image, x, y, flux, fwhm_arcsec) -> None:
        """A stacked focus frame: ``focus_steps`` images of the stars, each with 1/steps of the
        exposure, shifted by ``focus_shift_arcsec`` along the columns between steps (charge
        shuffled) while the focus runs through best focus; the defocus adds in quadrature to
        the FWHM, up to ``focus_defocus_arcsec`` at the ends."""
        cfg = self.cfg
        n = max(1, cfg.focus_steps)
        shift = cfg.focus_shift_arcsec / self.inst.pixel_scale_arcsec
        for k in range(n):
            defocus = cfg.focus_defocus_arcsec * (k - (n - 1) / 2) / max((n - 1) / 2, 1)
            fwhm = np.hypot(fwhm_arcsec, defocus) / self.inst.pixel_scale_arcsec
            render_stars(image, x, y + k * shift, flux / n, fwhm, cfg.psf_beta)

    def _render_ccd(
        self,
        e: Exposure,
        ccd,
        sky: SkyModel | None,
        rng: np.random.Generator,
        row: dict,
    ) -> np.ndarray:
        """Expected electrons of one CCD (before noise), and fill the truth row."""
        ny, nx = ccd.shape
        det = self.detector
        flt = self.inst.filter(self.inst.tray(e.tray).filters[ccd.num])
        row["filter"] = flt.name
        if e.kind == "bias":
            return np.zeros((ny, nx), np.float32)
        dark = det.dark_map(ccd) * np.float32(e.exptime)
        if e.kind == "test":
            return dark.copy()
        resp = det.response(ccd, flt)
        med_resp = det.median_response(ccd, flt)
        if e.kind == "flat":
            img = resp * np.float32(self.cfg.flat_level_e * rng.uniform(0.97, 1.03))
            img += dark
            row["median_response"] = med_resp
            return img
        # science / focus
        zp = flt.zeropoint - flt.extinction * e.airmass + 2.5 * math.log10(e.transparency)
        sky_rate = 10 ** (-0.4 * (flt.sky_mag - flt.zeropoint)) * self.pix_area * e.sky_factor
        fwhm = self._psf_fwhm(e, ccd, flt)
        fwhm_pix = fwhm / self.inst.pixel_scale_arcsec
        w = ccd_wcs(self.inst, ccd.num, e.ra, e.dec, e.rotation, distortion=True)
        objects = np.zeros((ny, nx), np.float32)
        n_stars = n_gal = 0
        if sky is not None:
            n_stars, n_gal = self._render_objects(objects, e, ccd, flt, sky, w, zp, fwhm_pix)
        img = objects
        sky_img = np.float32(sky_rate * e.exptime)
        if flt.fringing:
            img += sky_img * (1 + np.float32(self.cfg.fringe_amplitude) * det.fringe(ccd))
        else:
            img += sky_img
        img *= resp
        img += dark
        row.update(
            seeing_arcsec=fwhm,
            fwhm_pix=fwhm_pix,
            psf_beta=self.cfg.psf_beta,
            transparency=e.transparency,
            sky=sky_rate * med_resp,
            zeropoint=zp + 2.5 * math.log10(med_resp),
            median_response=med_resp,
            wcs_header=w.to_header(relax=True).tostring(sep="\n"),
            n_stars=n_stars,
            n_galaxies=n_gal,
        )
        return img

    def _render_objects(
        self,
        objects: np.ndarray,
        e: Exposure,
        ccd,
        flt,
        sky: SkyModel,
        w,
        zp: float,
        fwhm_pix: float,
    ) -> tuple[int, int]:
        """Add the stars and galaxies of ``sky`` that fall on the CCD (electrons) to
        ``objects``; return how many stars and galaxies were drawn."""
        nx, ny = ccd.shape[1], ccd.shape[0]
        n_stars = n_gal = 0
        # cheap pre-selection around the CCD centre, then the true WCS
        cra, cdec = w.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
        half_diag = math.hypot(nx, ny) / 2 * self.inst.pixel_scale_arcsec / 3600 + 0.02
        dd = np.abs(sky.dec - cdec) < half_diag
        cosd = math.cos(math.radians(cdec))
        dra = np.abs(((sky.ra - cra + 180) % 360) - 180) * cosd
        cand = np.nonzero(dd & (dra < half_diag))[0]
        if cand.size:
            px, py = w.all_world2pix(sky.ra[cand], sky.dec[cand], 0)
            margin = 30
            inside = (px > -margin) & (px < nx + margin) & (py > -margin) & (py < ny + margin)
            cand, px, py = cand[inside], px[inside], py[inside]
            flux = 10 ** (-0.4 * (sky.mags[flt.name][cand] - zp)) * e.exptime
            st = sky.is_star[cand]
            n_stars, n_gal = int(st.sum()), int((~st).sum())
            fwhm_stars = self._psf_fwhm(e, ccd, flt, px[st], py[st])
            if e.kind == "focus":
                self._render_focus_sequence(objects, px[st], py[st], flux[st], fwhm_stars)
                st = np.ones_like(st)  # a focus frame shows the stars only
                n_gal = 0
            else:
                render_stars(
                    objects, px[st], py[st], flux[st],
                    fwhm_stars / self.inst.pixel_scale_arcsec, self.cfg.psf_beta,
                )  # fmt: skip
            g = ~st
            gi = cand[g]
            # position angle (east of north) -> angle from +x in the pixel frame
            cd = w.wcs.cd if w.wcs.has_cd() else w.pixel_scale_matrix
            inv = np.linalg.inv(cd)
            pa = np.radians(sky.position_angle_deg[gi])
            vec = inv @ np.stack([np.sin(pa), np.cos(pa)])
            render_galaxies(
                objects,
                px[g],
                py[g],
                flux[g],
                sky.sersic_n[gi],
                sky.half_light_radius_arcsec[gi],
                sky.axis_ratio[gi],
                np.arctan2(vec[1], vec[0]),
                self.inst.pixel_scale_arcsec,
                fwhm_pix,
                self.cfg.psf_beta,
                exact=sky.ref_mag[gi] < self.cfg.galsim_exact_mag,
            )
        return n_stars, n_gal

    def _add_trails(
        self, e: Exposure, ccd, expected: np.ndarray, trails: list[SatelliteTrail], row: dict
    ) -> np.ndarray | None:
        """Add the exposure's satellite trails that cross the CCD to ``expected`` (e-) and
        record them; the truth mask of their pixels, or None when none crosses."""
        if not trails:
            return None
        flt = self.inst.filter(self.inst.tray(e.tray).filters[ccd.num])
        w = ccd_wcs(self.inst, ccd.num, e.ra, e.dec, e.rotation, distortion=True)
        zp = flt.zeropoint - flt.extinction * e.airmass + 2.5 * math.log10(e.transparency)
        psf = self._psf_fwhm(e, ccd, flt)
        scale = self.inst.pixel_scale_arcsec
        out = None
        for k, t in enumerate(trails):
            line = trail_line_pixels(t, w, ccd.shape, self.field_radius)
            if line is None:
                continue
            e_pix = trail_e_per_pixel(t, zp, scale)  # one passage, whatever the exposure time
            fwhm_pix = math.hypot(psf, t.defocus_arcsec) / scale
            resp = self.detector.response(ccd, flt)
            hit = render_trail(expected, line, e_pix, fwhm_pix, resp)
            out = hit if out is None else out | hit
            self.trail_rows.append(
                {"file": row["file"], "expnum": row["expnum"], "ccd_num": ccd.num, "trail": k,
                 "ra": t.ra, "dec": t.dec, "position_angle_deg": t.position_angle_deg,
                 "mag": t.mag, "speed_deg_s": t.speed_deg_s,
                 "defocus_arcsec": t.defocus_arcsec, "x1": line[0], "y1": line[1],
                 "x2": line[2], "y2": line[3], "e_per_pixel": e_pix, "fwhm_pix": fwhm_pix}
            )  # fmt: skip
        return out

    def exposure_hdul(
        self, e: Exposure, obs_set: str, expnum: int, filename: str, sky: SkyModel | None
    ) -> fits.HDUList:
        rng = np.random.default_rng([self.seed, expnum, zlib.crc32(obs_set.encode())])
        # trails from their own stream: the other draws do not depend on them
        trails = (
            draw_trails(
                np.random.default_rng([self.seed, expnum, zlib.crc32(obs_set.encode()), 7]),
                e.ra,
                e.dec,
                self.field_radius,
                self.cfg,
            )  # fmt: skip
            if e.kind == "science" and sky is not None
            else []
        )
        hdus: list[fits.hdu.base.ExtensionHDU] = []
        for ccd in self.inst.ccds:
            row = {
                "obs_set": obs_set,
                "file": filename,
                "expnum": expnum,
                "kind": e.kind,
                "ccd_num": ccd.num,
                "tray": e.tray,
                "mjd": e.mjd,
                "exptime": e.exptime,
                "airmass": e.airmass,
                "ra_true": e.ra,
                "dec_true": e.dec,
                "rotation_deg": e.rotation,
                "ra_header": e.ra_hdr,
                "dec_header": e.dec_hdr,
                "pointing_error_ra_arcsec": ((e.ra_hdr - e.ra + 180) % 360 - 180)
                * math.cos(math.radians(e.dec))
                * 3600,
                "pointing_error_dec_arcsec": (e.dec_hdr - e.dec) * 3600,
            }
            expected = self._render_ccd(e, ccd, sky, rng, row)
            trail_truth = self._add_trails(e, ccd, expected, trails, row)
            # Poisson noise: Gaussian approximation where the mean is large, exact elsewhere.
            if e.kind != "bias":
                low = expected < 30
                noisy = rng.standard_normal(expected.shape, dtype=np.float32)
                noisy *= np.sqrt(np.maximum(expected, 0))
                noisy += expected
                if low.any():
                    noisy[low] = rng.poisson(np.maximum(expected[low], 0)).astype(np.float32)
                electrons = noisy
            else:
                electrons = expected
            hits = np.zeros(electrons.shape, bool) if sky is not None else None
            n_cr = add_cosmic_rays(
                electrons,
                rng,
                e.exptime + self.cfg.readout_time_s,
                self.inst.pixel_size_um,
                self.cfg,
                hits,
            )
            full_well = self.detector.full_well_e(ccd)
            n_sat = bleed(electrons, full_well)
            if hits is not None:  # per-pixel truth of on-sky exposures
                sat = electrons >= np.float32(full_well * (1 - 1e-6))
                self.mask_rows.append(truth_mask_rows(filename, ccd.num, hits, sat, trail_truth))
            offsets = {a.num: float(rng.normal(0, self.cfg.bias_drift_adu)) for a in ccd.amplifiers}
            raws = electrons_to_raw(ccd, electrons, self.detector, rng, offsets, full_well)
            row["n_cosmic_rays"] = n_cr
            row["n_saturated"] = n_sat
            row["bias_offsets_adu"] = ",".join(f"{offsets[a.num]:.3f}" for a in ccd.amplifiers)
            self.truth_rows.append(row)
            hdus.extend(ccd_hdus(self.inst, ccd, raws))
        focus = (self.cfg.focus_steps, self.cfg.focus_shift_arcsec, self.cfg.focus_defocus_arcsec)
        header = primary_header(self.inst, e, obs_set, expnum, filename, focus)
        primary = fits.PrimaryHDU(header=header)
        if self.inst.layout.extensions == "primary":  # the one CCD in the primary HDU
            ccd = self.inst.ccds[0]
            header.update(ccd_header(self.inst, ccd))
            primary = fits.PrimaryHDU(ccd_pixels(ccd, raws), header=header)
        return fits.HDUList([primary, *hdus])


def simulate_night(
    instrument: Instrument | str,
    out_dir: Path,
    *,
    night: str = "2026-11-20",
    seed: int = 0,
    n_bias: int = 5,
    n_flats_per_tray: int = 3,
    n_science: int = 6,
    trays: list[str] | None = None,
    n_test: int = 1,
    n_focus: int = 1,
    truth_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    config: SimulationConfig | None = None,
) -> SimulatedNight:
    """Simulate one night of raw data into the observatory buffer ``out_dir``.

    Writes ``out_dir/<YYYYMMDD>_<NNN>/`` (the next free obs-set counter of the night) with
    ``<instrument>.<YYYYMMDD>.<expnum:04d>.fits`` raw mosaics (biases, dome flats for each
    tray, TEST closed-shutter darks, FOCUS and SCIENCE exposures over the pointings and
    dithers of ``config``; science exposures cycle through ``trays``) and, last and atomically,
    ``manifest.yaml``. The truth (``objects.parquet``, ``exposures.parquet`` (appended),
    ``refcat.fits``) goes to ``truth_dir``, by default the sibling ``<out_dir>_truth``.
    Formats: docs/simulate.md. Deterministic for (instrument, night, seed, config).

    Args:
        instrument: a loaded instrument or a built-in name / YAML path.
        trays: filter trays of the flats and science exposures (default: the first tray
            and the ``r`` tray if there is one).
        progress: called as ``progress(files_done, files_total)`` after each file.
        config: simulator parameters (:class:`SimulationConfig`).

    Raises:
        SimulationError: bad night date, unknown tray, negative counts, or a truth directory
            inside the buffer.
        InstrumentError: unknown or invalid instrument.
    """
    t_start = time.perf_counter()
    inst = load_instrument(instrument) if isinstance(instrument, str | Path) else instrument
    if not all(c.complete for c in inst.ccds):
        raise SimulationError(
            f"{inst.name}: the simulator needs every amplifier's sections, gain, read noise "
            "and saturation in the instrument file"
        )
    # the manifest names the camera as the DAQ knows it: a built-in name or its file's path
    named = str(Path(instrument).resolve()) if _is_path(instrument) else inst.name
    cfg = config or SimulationConfig()
    if "T80" in inst.telescope.upper() and config is None:
        cfg = cfg.model_copy(update={"site_lat_deg": JAVALAMBRE[0], "site_lon_deg": JAVALAMBRE[1]})
    night_date = _night_date(night)
    counts = ExposureCounts(n_bias, n_flats_per_tray, n_science, n_test, n_focus)
    _checked_counts(counts)
    trays = _checked_trays(inst, trays)
    out_dir = Path(out_dir).resolve()
    truth = _truth_dir(out_dir, truth_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    yyyymmdd = night_date.strftime("%Y%m%d")
    obs_set, expnum0, last_mjd = _next_obs_set(out_dir, yyyymmdd)
    set_dir = out_dir / obs_set
    set_dir.mkdir()

    rng = np.random.default_rng([seed, int(yyyymmdd)])
    site = (cfg.site_lat_deg, cfg.site_lon_deg)
    not_before = last_mjd + cfg.overhead_s / 86400
    plan = plan_night(inst, cfg, rng, night_date, trays, counts, site, not_before)
    sim = _NightSimulator(inst, cfg, seed)
    epoch = julian_year(plan[0].mjd if plan else Time(str(night_date)).mjd)
    sky_model = make_sky(inst, cfg, *_sky_area(cfg, sim.field_radius), epoch)
    files: list[SimulatedFile] = []
    for i, e in enumerate(plan):
        files.append(_write_exposure(sim, e, set_dir, expnum0 + i, yyyymmdd, sky_model))
        if progress is not None:
            progress(i + 1, len(plan))
    objects_path, exposures_path, refcat_path = _write_truth(truth, sim, sky_model, inst, cfg)
    manifest_path = _write_manifest(set_dir, night_date, named, cfg, seed, trays, plan, files)
    return SimulatedNight(
        instrument=inst.name,
        night=night_date.isoformat(),
        out_dir=out_dir,
        obs_sets=[obs_set],
        files=files,
        manifests=[manifest_path],
        truth_dir=truth,
        refcat=refcat_path,
        objects=objects_path,
        exposures=exposures_path,
        elapsed_s=time.perf_counter() - t_start,
    )


def _is_path(instrument: Instrument | str | Path) -> bool:
    return isinstance(instrument, str | Path) and bool(Path(instrument).suffix)


def _night_date(night: str) -> dt.date:
    try:
        return dt.date.fromisoformat(night)
    except ValueError:
        raise SimulationError(f"night must be YYYY-MM-DD, got {night!r}") from None


def _checked_counts(counts: ExposureCounts) -> None:
    for name, n in vars(counts).items():
        if n < 0:
            raise SimulationError(f"n_{name} must be >= 0, got {n}")


def _checked_trays(inst: Instrument, trays: list[str] | None) -> list[str]:
    trays = list(trays) if trays else default_trays(inst)
    known = inst.tray_names
    for tr in trays:
        if tr not in known:
            raise SimulationError(
                f"{inst.name} has no filter tray {tr!r}; known: {', '.join(known)}"
            )
    return trays


def _truth_dir(out_dir: Path, truth_dir: Path | None) -> Path:
    truth = Path(truth_dir).resolve() if truth_dir else out_dir.parent / f"{out_dir.name}_truth"
    if truth == out_dir or truth.is_relative_to(out_dir):
        raise SimulationError(
            f"truth directory {truth} is inside the observatory buffer {out_dir}; "
            "the truth must never be inside the buffer"
        )
    return truth


def _sky_area(cfg: SimulationConfig, field_radius: float) -> tuple[float, float, float]:
    """(ra, dec, radius) in degrees of a sky that covers every pointing the configuration can
    reach, so that all nights share it."""
    cosd = math.cos(math.radians(cfg.field_dec_deg))
    offs = np.array(cfg.pointing_offsets_deg)
    c_ra = cfg.field_ra_deg + offs[:, 0].mean() / cosd
    c_dec = cfg.field_dec_deg + offs[:, 1].mean()
    reach = float(np.hypot(offs[:, 0] - offs[:, 0].mean(), offs[:, 1] - offs[:, 1].mean()).max())
    dith = max(math.hypot(*d) for d in cfg.dither_offsets_arcsec) / 3600
    radius = reach + dith + field_radius + cfg.pointing_error_arcsec / 3600 + 0.05
    return c_ra, c_dec, radius


def _write_exposure(
    sim: _NightSimulator,
    e: Exposure,
    set_dir: Path,
    expnum: int,
    yyyymmdd: str,
    sky_model: SkyModel,
) -> SimulatedFile:
    name = f"{sim.inst.name}.{yyyymmdd}.{expnum:04d}.fits"
    on_sky = e.kind in ("science", "focus")
    hdul = sim.exposure_hdul(e, set_dir.name, expnum, name, sky_model if on_sky else None)
    buf = io.BytesIO()
    hdul.writeto(buf)
    data = buf.getvalue()
    path = set_dir / name
    _write_atomic(path, data)
    return SimulatedFile(
        path=path,
        kind=e.kind,
        obs_set=set_dir.name,
        expnum=expnum,
        size=len(data),
        adler32=f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
    )


def _write_truth(
    truth: Path, sim: _NightSimulator, sky_model: SkyModel, inst: Instrument, cfg: SimulationConfig
) -> tuple[Path, Path, Path]:
    """Write the truth beside the buffer: objects, exposures (appended), reference catalog."""
    objects_path = truth / "objects.parquet"
    write_parquet(sky_model.to_table(), objects_path)
    exposures_path = truth / "exposures.parquet"
    table = exposures_table(sim.truth_rows)
    if exposures_path.exists():
        old = read_parquet(exposures_path)
        old = old[~np.isin(np.asarray(old["file"]), np.asarray(table["file"]))]
        table = vstack([old, table]) if len(old) else table
    write_parquet(table, exposures_path)
    if sim.mask_rows:
        masks = Table({k: np.concatenate([r[k] for r in sim.mask_rows]) for k in sim.mask_rows[0]})
        masks_path = truth / "truth_masks.parquet"
        if masks_path.exists():
            old = read_parquet(masks_path)
            old = old[~np.isin(np.asarray(old["file"]), np.asarray(masks["file"]))]
            masks = vstack([old, masks]) if len(old) else masks
        write_parquet(masks, masks_path)
        _write_trails(truth / "satellite_trails.parquet", sim.trail_rows, set(masks["file"]))
    refcat_path = truth / "refcat.fits"
    write_refcat(refcat_table(sky_model, inst, cfg), refcat_path)
    return objects_path, exposures_path, refcat_path


_TRAIL_COLUMNS = {
    "file": str, "expnum": np.int64, "ccd_num": np.int64, "trail": np.int64, "ra": float,
    "dec": float, "position_angle_deg": float, "mag": float, "speed_deg_s": float,
    "defocus_arcsec": float, "x1": float, "y1": float, "x2": float, "y2": float,
    "e_per_pixel": float, "fwhm_pix": float,
}  # fmt: skip


def _write_trails(path: Path, rows: list[dict], files: set[str]) -> None:
    """Write ``satellite_trails.parquet`` (one row per trail and CCD it crosses), replacing the
    rows of ``files`` (the on-sky exposures just simulated) and keeping the others."""
    table = Table({k: np.array([r[k] for r in rows], dtype=t) for k, t in _TRAIL_COLUMNS.items()})
    if path.exists():
        old = read_parquet(path)
        old = old[~np.isin(np.asarray(old["file"]), list(files))]
        table = vstack([old, table]) if len(old) else table
    write_parquet(table, path)


def _write_manifest(
    set_dir: Path,
    night_date: dt.date,
    instrument: str,
    cfg: SimulationConfig,
    seed: int,
    trays: list[str],
    plan: list[Exposure],
    files: list[SimulatedFile],
) -> Path:
    """Write the manifest last, atomically: the DAQ has finished the obs set."""
    manifest = {
        "obs_set": set_dir.name,
        "night": night_date.isoformat(),
        "instrument": instrument,
        "operator": cfg.operator,
        "project": cfg.project,
        "comments": f"simulated night (surveydm pixelsim, seed {seed}); trays {', '.join(trays)}",
        "mjd_start": round(float(plan[0].mjd), 8) if plan else None,
        "mjd_stop": round(float(plan[-1].mjd + plan[-1].exptime / 86400), 8) if plan else None,
        "files": [
            {"name": f.path.name, "kind": f.kind, "size": f.size, "adler32": f.adler32}
            for f in files
        ],
    }
    manifest_path = set_dir / "manifest.yaml"
    _write_atomic(manifest_path, yaml.safe_dump(manifest, sort_keys=False).encode())
    return manifest_path
