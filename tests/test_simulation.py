"""The raw-night simulator: file formats, manifest, truth, and the instrumental signature
recovered statistically from the raw pixels against the instrument configuration."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.stats import mad_std, sigma_clipped_stats
from astropy.wcs import WCS
from scipy import ndimage

from surveydm.instruments import load_instrument
from surveydm.instruments.model import CCD, Instrument
from surveydm.instruments.sections import extension_sections
from surveydm.simulation import SimulationConfig, SimulationError, simulate_night
from surveydm.simulation.detector import DetectorModel
from surveydm.simulation.truth import read_exposures, read_objects, read_refcat

INST = "paucam-mini"


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    base = tmp_path_factory.mktemp("sim")
    calls = []
    result = simulate_night(
        INST,
        base / "buffer",
        seed=7,
        n_bias=2,
        n_flats_per_tray=2,
        n_science=2,
        n_test=1,
        n_focus=0,
        progress=lambda done, total: calls.append((done, total)),
    )
    result.extra["progress"] = calls
    return result


@pytest.fixture(scope="module")
def inst() -> Instrument:
    return load_instrument(INST)


@pytest.fixture(scope="module")
def detector(inst) -> DetectorModel:
    return DetectorModel(inst, SimulationConfig())


def _overscan_corrected(hdu, amp) -> np.ndarray:
    """Raw amplifier data minus the row-wise median of its overscan, ADU, readout order."""
    raw = hdu.data.astype(np.float64)
    level = np.median(raw[amp.bias_slices], axis=1)
    return raw[amp.data_slices] - level[:, None]


def _assemble_electrons(hdul, ccd: CCD, linearise: bool = True) -> np.ndarray:
    """Assembled CCD in electrons: overscan-subtracted, linearised, gain-corrected."""
    out = np.empty(ccd.shape)
    for amp in ccd.amplifiers:
        adu = _overscan_corrected(hdul[f"{ccd.name}_{amp.name}"], amp)
        if linearise and amp.nonlinearity:
            poly = 1 + sum(c * adu**k for k, c in enumerate(amp.nonlinearity, start=1))
            adu = adu / poly
        e = adu * amp.gain
        if amp.flip_x:
            e = e[:, ::-1]
        if amp.flip_y:
            e = e[::-1, :]
        out[amp.ccd_slices] = e
    return out


def _saturated_mask(hdul, ccd: CCD) -> np.ndarray:
    out = np.zeros(ccd.shape, bool)
    for amp in ccd.amplifiers:
        raw = hdul[f"{ccd.name}_{amp.name}"].data[amp.data_slices]
        m = raw >= amp.saturation - 1
        if amp.flip_x:
            m = m[:, ::-1]
        if amp.flip_y:
            m = m[::-1, :]
        out[amp.ccd_slices] = m
    return out


# --- formats -----------------------------------------------------------------------------


def test_obs_set_layout_and_manifest_checksums(night) -> None:
    set_dir = night.out_dir / night.obs_set
    assert night.obs_set == "20261120_001"
    manifest = yaml.safe_load((set_dir / "manifest.yaml").read_text())
    assert manifest["obs_set"] == night.obs_set and manifest["night"] == "2026-11-20"
    assert manifest["instrument"] == INST
    assert {"operator", "project", "comments", "mjd_start", "mjd_stop"} <= set(manifest)
    assert manifest["mjd_start"] < manifest["mjd_stop"]
    kinds = [f["kind"] for f in manifest["files"]]
    assert kinds.count("bias") == 2 and kinds.count("flat") == 4 and kinds.count("science") == 2
    assert kinds.count("test") == 1
    on_disk = sorted(p.name for p in set_dir.iterdir())
    assert on_disk == sorted([f["name"] for f in manifest["files"]] + ["manifest.yaml"])
    for i, entry in enumerate(manifest["files"], start=1):
        assert entry["name"] == f"{INST}.20261120.{i:04d}.fits"
        data = (set_dir / entry["name"]).read_bytes()
        assert entry["size"] == len(data)
        assert entry["adler32"] == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
        assert len(entry["adler32"]) == 8
    assert night.extra["progress"][-1] == (len(kinds), len(kinds))


def test_raw_files_verify_and_carry_the_header_mapping(night, inst) -> None:
    m = inst.header
    for f in night.files:
        with fits.open(f.path) as hdul:
            hdul.verify("exception")
            h0 = hdul[0].header
            assert hdul[0].data is None
            assert inst.kind_of(h0[m.obstype.keyword]) == f.kind
            for spec in (m.exptime, m.date_obs, m.mjd_obs, m.filter_tray, m.ra, m.dec):
                assert spec.keyword in h0
            assert h0["INSTRUME"] == INST and h0["EXPNUM"] == f.expnum
            assert h0["OBSSET"] == night.obs_set and h0["NEXTEND"] == 72
            assert len(hdul) == 73
            ext = hdul["CCD07_C"]
            assert ext.header["BITPIX"] == 16 and ext.header["BZERO"] == 32768
            assert ext.data.dtype == np.uint16
            amp = inst.ccd(7).amp(3)
            assert ext.header[m.ccd_num.keyword] == 7 and ext.header[m.amp_num.keyword] == 3
            assert ext.data.shape == amp.raw_shape
            for key, value in [("DATASEC", amp.datasec), ("BIASSEC", amp.biassec),
                               ("PRESCAN", amp.prescan),
                               ("CCDSEC", extension_sections(amp)["ccdsec"]),  # IRAF: reversed

                               ("GAIN", amp.gain), ("RDNOISE", amp.read_noise),
                               ("SATURATE", amp.saturation)]:  # fmt: skip
                assert ext.header[key] == value


def test_truth_lives_beside_the_buffer(night, tmp_path) -> None:
    assert night.truth_dir == night.out_dir.parent / "buffer_truth"
    assert not night.truth_dir.is_relative_to(night.out_dir)
    for p in (q for q in night.out_dir.rglob("*") if q.is_file()):
        assert p.suffix in (".fits", ".yaml") and "truth" not in p.name and "refcat" not in p.name
    with pytest.raises(SimulationError, match="inside the observatory buffer"):
        simulate_night(INST, tmp_path / "b", n_bias=1, truth_dir=tmp_path / "b" / "truth")
    assert not (tmp_path / "b" / "truth").exists()
    with pytest.raises(SimulationError, match="no filter tray"):
        simulate_night(INST, tmp_path / "b", trays=["Halpha"])
    with pytest.raises(SimulationError, match="YYYY-MM-DD"):
        simulate_night(INST, tmp_path / "b", night="20/11/2026")


def test_truth_tables_and_refcat_format(night, inst) -> None:
    exps = read_exposures(night.truth_dir)
    assert len(exps) == len(night.files) * 18
    sci = exps[exps["kind"] == "science"]
    assert np.all((sci["seeing_arcsec"] > 0.6) & (sci["seeing_arcsec"] < 2.0))
    assert np.all((sci["transparency"] > 0.7) & (sci["transparency"] <= 1.0))
    err = np.hypot(sci["pointing_error_ra_arcsec"], sci["pointing_error_dec_arcsec"])
    assert err.max() <= 30.0 + 1e-6
    w = WCS(fits.Header.fromstring(sci["wcs_header"][0], sep="\n"))
    assert w.sip is not None
    objects = read_objects(night.truth_dir)
    assert {"star", "galaxy"} == set(objects["kind"])
    assert (objects["gaia_source_id"] > 0).sum() > 10  # real Gaia stars in the field
    for f in inst.filters:
        assert f"mag_{f.name}" in objects.colnames
    gal = objects[objects["kind"] == "galaxy"]
    assert np.all(gal["sersic_n"] > 0) and np.all(gal["half_light_radius_arcsec"] > 0)
    ref = read_refcat(night.refcat)
    assert float(ref.meta["EPOCH"]) == 2016.0 and night.refcat_path == night.refcat
    assert ref["id"].dtype.kind == "i" and ref["id"].dtype.itemsize == 8
    for col in ("ra", "dec", "pmra", "pmdec", "ra_error", "dec_error"):
        assert col in ref.colnames
    for f in inst.filters:
        assert f"mag_{f.name}" in ref.colnames and f"magerr_{f.name}" in ref.colnames
    assert ref["mag_r"].max() < 21.5 and len(ref) > 1000
    assert np.all(ref["magerr_r"] > 0) and np.median(ref["magerr_r"]) < 0.05


def test_second_obs_set_of_the_night_continues_numbering(tmp_path) -> None:
    first = simulate_night("t80cam-mini", tmp_path / "buf", n_bias=1, n_flats_per_tray=0,
                           n_science=0, n_test=0, n_focus=0)  # fmt: skip
    second = simulate_night("t80cam-mini", tmp_path / "buf", n_bias=1, n_flats_per_tray=0,
                            n_science=0, n_test=0, n_focus=0)  # fmt: skip
    assert (first.obs_set, second.obs_set) == ("20261120_001", "20261120_002")
    assert second.files[0].expnum == first.files[-1].expnum + 1
    m1, m2 = (yaml.safe_load(n.manifests[0].read_text()) for n in (first, second))
    assert m2["mjd_start"] > m1["mjd_stop"]  # the DAQ's second obs set comes later
    with fits.open(second.files[0].path) as hdul:
        assert len(hdul) == 5 and hdul[0].header["FILTER"] == "u"
        assert ":" in hdul[0].header["RA"]  # T80Cam writes sexagesimal RA (hourangle)


# --- instrumental signature ----------------------------------------------------------------


def test_bias_level_and_read_noise_from_overscan(night, inst) -> None:
    b1, b2 = (fits.open(f.path) for f in night.files_of("bias"))
    with b1, b2:
        for ccd in inst.ccds[::5]:
            for amp in ccd.amplifiers:
                o1 = b1[f"{ccd.name}_{amp.name}"].data[amp.bias_slices].astype(float)
                o2 = b2[f"{ccd.name}_{amp.name}"].data[amp.bias_slices].astype(float)
                assert abs(np.median(o1) - amp.bias_level) < 15
                rn = np.std(o1 - o2) / math.sqrt(2) * amp.gain
                assert rn == pytest.approx(amp.read_noise, rel=0.04)


def test_gain_from_photon_transfer_pair(night, inst) -> None:
    flats = [f for f in night.files_of("flat")][:2]
    f1, f2 = (fits.open(f.path) for f in flats)
    with f1, f2:
        assert f1[0].header["FILTRAY"] == f2[0].header["FILTRAY"]
        for ccd in inst.ccds[::4]:
            for amp in ccd.amplifiers:
                a = _overscan_corrected(f1[f"{ccd.name}_{amp.name}"], amp)
                b = _overscan_corrected(f2[f"{ccd.name}_{amp.name}"], amp)
                b = b * (np.median(a) / np.median(b))
                signal = 0.5 * (np.median(a) + np.median(b))
                var = mad_std(a - b) ** 2 / 2 - (amp.read_noise / amp.gain) ** 2
                assert signal / var == pytest.approx(amp.gain, rel=0.05)


def test_flat_pattern_recovered(night, inst, detector) -> None:
    flats = night.files_of("flat")[:2]
    tray = fits.getheader(flats[0].path)["FILTRAY"]
    hduls = [fits.open(f.path) for f in flats]
    try:
        for ccd in inst.ccds[::6]:
            images = [_assemble_electrons(h, ccd) for h in hduls]
            master = np.mean([im / np.median(im) for im in images], axis=0)
            flt = inst.filter(inst.tray(tray).filters[ccd.num])
            truth = detector.response(ccd, flt).astype(float)
            truth /= np.median(truth)
            good = ~detector.defect_mask(ccd)
            resid = master[good] / truth[good] - 1
            assert mad_std(truth[good]) > 0.01  # there is a pattern to recover
            assert mad_std(resid) < 0.004  # ~ shot noise of two 80 ke- flats
            assert abs(np.median(resid)) < 0.002
    finally:
        for h in hduls:
            h.close()


def test_cosmic_ray_rate_in_closed_shutter_test_frame(night, inst, detector) -> None:
    cfg = SimulationConfig()
    (test_file,) = night.files_of("test")
    n_events, area_cm2 = 0, 0.0
    with fits.open(test_file.path) as hdul:
        exptime = hdul[0].header["EXPTIME"]
        for ccd in inst.ccds:
            e = _assemble_electrons(hdul, ccd, linearise=False)
            rn = max(a.read_noise for a in ccd.amplifiers)
            hits = (e > 12 * rn) & ~detector.defect_mask(ccd)
            _, n = ndimage.label(hits, structure=np.ones((3, 3)))
            n_events += n
            area_cm2 += ccd.shape[0] * ccd.shape[1] * (inst.pixel_size_um * 1e-4) ** 2
    expected = cfg.cosmic_ray_rate_cm2_s * area_cm2 * (exptime + cfg.readout_time_s)
    assert expected > 200
    assert abs(n_events - expected) < 4 * math.sqrt(expected) + 0.05 * expected


def test_crosstalk_coefficient_from_saturated_star(night, inst) -> None:
    ratios = []
    for f in night.files_of("science"):
        with fits.open(f.path) as hdul:
            for ccd in inst.ccds:
                raws = {
                    a.num: hdul[f"{ccd.name}_{a.name}"].data.astype(float) for a in ccd.amplifiers
                }
                for xt in sorted(ccd.crosstalk, key=lambda x: -abs(x.coeff)):
                    if abs(xt.coeff) < 4e-4:
                        continue
                    src = ccd.amp(xt.source)
                    sat = raws[xt.source] >= src.saturation - 1
                    if sat.sum() < 200:
                        continue
                    v = raws[xt.victim]
                    vic = ccd.amp(xt.victim)
                    # Amplifiers read from mirrored corners, so a star on an amplifier boundary
                    # (and its bleed trail) lands on the same raw pixels of both: drop pixels
                    # near the boundary edges and pixels where the victim has its own signal.
                    sy, sx = src.data_slices
                    sat[:, sx.stop - 40 : sx.stop] = False
                    sat[sy.stop - 40 : sy.stop, :] = False
                    sat &= v < np.median(v[vic.bias_slices]) + 5000
                    # local background of the victim: same rows, 12 columns either side
                    ys, xs = np.nonzero(sat)
                    nx = v.shape[1]
                    left, right = np.clip(xs - 12, 0, nx - 1), np.clip(xs + 12, 0, nx - 1)
                    ok = ~sat[ys, left] & ~sat[ys, right] & (left >= sx.start) & (right < sx.stop)
                    ys, xs, left, right = ys[ok], xs[ok], left[ok], right[ok]
                    if ys.size < 100:
                        continue
                    bg = 0.5 * (v[ys, left] + v[ys, right])
                    noise = mad_std(v[ys, left] - v[ys, right]) / math.sqrt(2 * ys.size)
                    if noise > 0.05 * abs(xt.coeff) * (src.saturation - src.bias_level):
                        continue  # bright sky: the ghost is not measurable here
                    _, ghost, _ = sigma_clipped_stats(v[ys, xs] - bg, sigma=3.0)
                    # the source's own halo at the background columns leaks too: difference it
                    top = src.saturation - src.bias_level
                    s = np.minimum(
                        raws[xt.source] - np.median(raws[xt.source][src.bias_slices]), top
                    )
                    src_step = np.mean(s[ys, xs] - 0.5 * (s[ys, left] + s[ys, right]))
                    coeff = ghost / src_step
                    ratios.append(coeff / xt.coeff)
                    break
    # every measurable pair within 35 % (neighbouring stars bias a few), the ensemble within 5 %
    assert len(ratios) >= 3
    assert np.all(np.abs(np.array(ratios) - 1) < 0.35), ratios
    assert abs(np.median(ratios) - 1) < 0.05


def _moffat_aperture_fraction(radius_pix: float, fwhm_pix: float, beta: float) -> float:
    alpha = fwhm_pix / (2 * math.sqrt(2 ** (1 / beta) - 1))
    return 1 - (1 + (radius_pix / alpha) ** 2) ** (1 - beta)


def test_truth_fluxes_equal_rendered_pixels(night, inst, detector) -> None:
    """Aperture sums of isolated stars in the detrended image match the truth magnitudes and
    zero-points (flat-fielded electrons, master flat normalised to median 1)."""
    exps = read_exposures(night.truth_dir)
    objects = read_objects(night.truth_dir)
    f = night.files_of("science")[1]
    ratios, pulls = [], []
    with fits.open(f.path) as hdul:
        for ccd in inst.ccds[::3]:
            row = exps[(exps["file"] == f.path.name) & (exps["ccd_num"] == ccd.num)][0]
            flt = inst.filter(row["filter"])
            img = _assemble_electrons(hdul, ccd)
            resp = detector.response(ccd, flt).astype(float)
            img /= resp / np.median(resp)
            img -= detector.dark_map(ccd) * row["exptime"] / (resp / np.median(resp))
            w = WCS(fits.Header.fromstring(row["wcs_header"], sep="\n"))
            x, y = w.all_world2pix(objects["ra"], objects["dec"], 0)
            ny, nx = ccd.shape
            mag = np.asarray(objects[f"mag_{flt.name}"], float)
            flux = 10 ** (-0.4 * (mag - row["zeropoint"])) * row["exptime"]
            on = (x > 15) & (x < nx - 16) & (y > 15) & (y < ny - 16)
            idx = np.nonzero(on & (objects["kind"] == "star"))[0]
            near = np.nonzero((x > -20) & (x < nx + 20) & (y > -20) & (y < ny + 20))[0]
            r_ap = 3.0 * row["fwhm_pix"]
            for i in idx:
                d = np.hypot(x[near] - x[i], y[near] - y[i])
                others = near[(d > 0) & (d < 4 * r_ap)]
                if np.any(flux[others] > 0.002 * flux[i]):
                    continue
                peak_guess = flux[i] / (2 * row["fwhm_pix"] ** 2)
                if peak_guess > 0.5 * detector.full_well_e(ccd) or flux[i] < 30 * math.sqrt(
                    row["sky"] * row["exptime"] * np.pi * r_ap**2
                ):
                    continue
                yy, xx = np.ogrid[:ny, :nx]
                cy, cx = int(round(y[i])), int(round(x[i]))
                sl = (slice(cy - 14, cy + 15), slice(cx - 14, cx + 15))
                sub = img[sl]
                dd = np.hypot(xx[:, sl[1]] - x[i], yy[sl[0], :] - y[i])
                sky = np.median(sub[(dd > 2 * r_ap) & (dd < 14)])
                ap = dd < r_ap
                measured = (sub[ap] - sky).sum()
                frac = _moffat_aperture_fraction(r_ap, row["fwhm_pix"], row["psf_beta"])
                sigma = math.sqrt(flux[i] + ap.sum() * row["sky"] * row["exptime"])
                ratios.append(measured / (flux[i] * frac))
                pulls.append((measured - flux[i] * frac) / sigma)
    ratios, pulls = np.array(ratios), np.array(pulls)
    assert len(ratios) >= 20
    assert np.median(ratios) == pytest.approx(1.0, abs=0.015)
    assert mad_std(pulls) < 2.0


def test_every_ccd_holds_30_usable_reference_stars(night, inst) -> None:
    """Unsaturated refcat stars measured at S/N > 20 on every CCD of every science exposure."""
    import sep

    exps = read_exposures(night.truth_dir)
    ref = read_refcat(night.refcat)
    for f in night.files_of("science"):
        with fits.open(f.path) as hdul:
            for ccd in inst.ccds:
                row = exps[(exps["file"] == f.path.name) & (exps["ccd_num"] == ccd.num)][0]
                img = np.ascontiguousarray(_assemble_electrons(hdul, ccd), dtype=np.float32)
                satmask = ndimage.binary_dilation(_saturated_mask(hdul, ccd), iterations=3)
                bkg = sep.Background(img, mask=satmask)
                sub = img - bkg.back()
                rn = max(a.read_noise for a in ccd.amplifiers)
                err = np.sqrt(np.maximum(img, 0) + rn**2).astype(np.float32)
                w = WCS(fits.Header.fromstring(row["wcs_header"], sep="\n"))
                x, y = w.all_world2pix(ref["ra"], ref["dec"], 0)
                ny, nx = ccd.shape
                r = 1.5 * row["fwhm_pix"]
                on = (x > r + 2) & (x < nx - r - 3) & (y > r + 2) & (y < ny - r - 3)
                flux, fluxerr, _ = sep.sum_circle(sub, x[on], y[on], r, err=err)
                sat = satmask[np.rint(y[on]).astype(int), np.rint(x[on]).astype(int)]
                usable = (flux / fluxerr > 20) & ~sat
                assert usable.sum() >= 30, (f.path.name, ccd.num, row["filter"], usable.sum())


@pytest.mark.parametrize(
    ("n", "hlr", "q", "angle"), [(1.0, 1.0, 0.5, 0.3), (4.0, 0.6, 0.8, 1.2), (0.5, 2.0, 0.4, -0.5)]
)
def test_tabulated_galaxies_match_galsim_full_drawing(n, hlr, q, angle) -> None:
    """The fast path for faint galaxies reproduces GalSim's own convolution: flux, centroid
    and second moments (size, ellipticity, orientation)."""
    from surveydm.simulation.render import render_galaxies

    def moments(exact: bool):
        im = np.zeros((121, 121), np.float32)
        args = [np.array([v]) for v in (60.2, 59.7, 1e5, n, hlr, q, angle)]
        render_galaxies(im, *args, 0.265, 3.5, 3.5, exact=np.array([exact]))
        y, x = np.mgrid[:121, :121]
        f = im.sum()
        cx, cy = (im * x).sum() / f, (im * y).sum() / f
        second = [(im * a * b).sum() / f for a, b in
                  [(x - cx, x - cx), (y - cy, y - cy), (x - cx, y - cy)]]  # fmt: skip
        return f, cx, cy, np.array(second)

    f1, cx1, cy1, m1 = moments(False)
    f2, cx2, cy2, m2 = moments(True)
    assert f1 == pytest.approx(1e5, rel=1e-4) and f2 == pytest.approx(1e5, rel=1e-4)
    assert abs(cx1 - cx2) < 0.02 and abs(cy1 - cy2) < 0.02
    assert abs(cx1 - 60.2) < 0.02 and abs(cy1 - 59.7) < 0.02
    np.testing.assert_allclose(m1, m2, rtol=0.04, atol=0.3)


def test_fringes_only_in_fringing_filters(night, inst, detector) -> None:
    """The fringe pattern's amplitude, regressed out of flat-fielded science CCDs, is
    ``fringe_amplitude`` x sky in fringing filters and zero elsewhere."""
    cfg = SimulationConfig()
    exps = read_exposures(night.truth_dir)
    seen = {True: 0, False: 0}
    for f in night.files_of("science"):
        with fits.open(f.path) as hdul:
            for ccd in inst.ccds[8:]:
                row = exps[(exps["file"] == f.path.name) & (exps["ccd_num"] == ccd.num)][0]
                flt = inst.filter(row["filter"])
                img = _assemble_electrons(hdul, ccd)
                resp = detector.response(ccd, flt).astype(float)
                img /= resp / np.median(resp)
                img -= np.median(img)  # flat-fielded: the sky is uniform
                fringe = detector.fringe(ccd).astype(float)
                good = ~detector.defect_mask(ccd) & (np.abs(img) < 5 * mad_std(img))
                amp = (img[good] * fringe[good]).sum() / (fringe[good] ** 2).sum()
                sky = row["sky"] * row["exptime"]
                if flt.fringing:
                    assert amp / sky == pytest.approx(cfg.fringe_amplitude, rel=0.15)
                else:
                    assert abs(amp / sky) < 0.002
                seen[flt.fringing] += 1
    assert seen[True] >= 2 and seen[False] >= 2


def test_dark_current_and_hot_pixels_in_test_frame(night, inst, detector) -> None:
    (test_file,) = night.files_of("test")
    with fits.open(test_file.path) as hdul:
        t = hdul[0].header["EXPTIME"]
        ratios = []
        for ccd in inst.ccds[::3]:
            e = _assemble_electrons(hdul, ccd, linearise=False)
            dark = detector.dark_map(ccd)
            hot = dark * t > 500  # well above read noise and Poisson noise
            assert hot.sum() > 5
            ratios.extend(e[hot] / (dark[hot] * t))
    # cosmic rays hit a few hot pixels: the median is robust to them
    assert np.median(ratios) == pytest.approx(1.0, abs=0.03)


def test_gain_and_nonlinearity_conversion(inst, detector) -> None:
    """Uniform charge converts to raw ADU as configured: level / gain, times the
    non-linearity polynomial, plus the bias; read noise as configured."""
    from surveydm.simulation.detector import electrons_to_raw

    ccd = inst.ccd(2)
    level = 120_000.0
    electrons = np.full(ccd.shape, level, np.float32)
    raws = electrons_to_raw(
        ccd, electrons, detector, np.random.default_rng(5), {}, detector.full_well_e(ccd)
    )

    def converted(a):
        adu = level / a.gain
        return adu * (1 + sum(c * adu**k for k, c in enumerate(a.nonlinearity, 1)))

    for amp in ccd.amplifiers:
        raw = raws[amp.num].astype(float)
        assert converted(amp) < level / amp.gain  # the configured non-linearity compresses
        expected = converted(amp)
        expected += sum(x.coeff * converted(ccd.amp(x.source)) for x in ccd.crosstalk
                        if x.victim == amp.num)  # fmt: skip
        bias = detector.bias_pattern(ccd, amp)
        signal = raw[amp.data_slices] - bias[amp.data_slices]
        assert np.mean(signal) == pytest.approx(expected, abs=0.5)
        noise = np.std(raw[amp.bias_slices] - bias[amp.bias_slices]) * amp.gain
        assert noise == pytest.approx(amp.read_noise, rel=0.05)


def test_focus_frame_is_a_stacked_focus_sequence(tmp_path, inst, detector) -> None:
    """A FOCUS file holds each star FOCSTEPS times, FOCSHIFT apart along +y, equal fluxes,
    sharpest in the middle of the sequence."""
    sim = simulate_night(INST, tmp_path / "buf", n_bias=0, n_flats_per_tray=0, n_science=0,
                         n_test=0, n_focus=1, seed=11)  # fmt: skip
    (focus,) = sim.files
    exps = read_exposures(sim.truth_dir)
    objects = read_objects(sim.truth_dir)
    stars = objects[objects["kind"] == "star"]
    with fits.open(focus.path) as hdul:
        h0 = hdul[0].header
        steps, shift = h0["FOCSTEPS"], h0["FOCSHIFT"] / inst.pixel_scale_arcsec
        assert inst.kind_of(h0["OBSTYPE"]) == "focus" and steps == 5
        equal, sharpest_in_middle = [], []
        for ccd in inst.ccds[:8]:
            row = exps[(exps["file"] == focus.path.name) & (exps["ccd_num"] == ccd.num)][0]
            img = _assemble_electrons(hdul, ccd)
            img -= np.median(img)
            w = WCS(fits.Header.fromstring(row["wcs_header"], sep="\n"))
            x, y = w.all_world2pix(stars["ra"], stars["dec"], 0)
            mag = np.asarray(stars[f"mag_{row['filter']}"], float)
            ny, nx = ccd.shape
            ok = (x > 10) & (x < nx - 10) & (y > 10) & (y < ny - 10 - steps * shift)
            ok &= (mag > 14.0) & (mag < 16.0)
            for i in np.nonzero(ok)[0]:
                near = np.hypot(x - x[i], y - y[i] - steps * shift / 2) < steps * shift
                if (mag[near] < mag[i] + 3).sum() > 1:
                    continue  # another bright star overlaps the sequence
                sums, peaks = [], []
                for k in range(steps):
                    cx, cy = int(round(x[i])), int(round(y[i] + k * shift))
                    box = img[cy - 6 : cy + 7, cx - 6 : cx + 7]
                    sums.append(box.sum())
                    peaks.append(box.max())
                sums = np.array(sums)
                equal.append(bool(np.all(np.abs(sums / np.median(sums) - 1) < 0.1)))
                sharpest_in_middle.append(int(np.argmax(peaks)) == steps // 2)
    # a few sequences are crossed by a neighbour's halo or bleed trail
    assert len(equal) >= 10
    assert np.mean(equal) > 0.8 and np.mean(sharpest_in_middle) > 0.8


def test_bleed_trails_conserve_charge_along_the_column() -> None:
    from surveydm.simulation.detector import bleed

    image = np.full((200, 50), 100.0, np.float32)
    image[100, 20] = 10 * 5000.0  # ten wells' worth of charge in one pixel
    image[99:102, 21] = 6000.0
    total = image.sum()
    n_sat = bleed(image, 5000.0)
    assert image.max() <= 5000.0
    assert image.sum() == pytest.approx(total, rel=1e-6)
    trail = np.nonzero(image[:, 20] >= 5000.0)[0]
    assert 8 <= trail.size <= 10 and trail.min() < 100 < trail.max()  # up and down the column
    assert np.all(image[:, 19] == 100.0) and np.all(image[:, 22] == 100.0)  # no sideways spill
    assert n_sat == trail.size + int((image[:, 21] >= 5000.0).sum())
