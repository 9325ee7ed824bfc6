"""Detrending: overscan, assembly (flips, crosstalk, non-linearity, gain), master frames,
bias/dark/flat/fringe correction, cosmic rays and weight maps, on synthetic data with a known
truth built here."""

from __future__ import annotations

import numpy as np
import pytest

from surveydm.instruments.model import CCD, Amplifier, Crosstalk
from surveydm.reduction import (
    CalibrationError,
    RawGeometryError,
    assemble_ccd,
    detrend,
    find_cosmic_rays,
    fit_fringe_scale,
    master_bias,
    master_flat,
    overscan_correct,
    weight_map,
)
from surveydm.reduction.crosstalk import correct_crosstalk
from surveydm.reduction.linearity import apply_nonlinearity, correct_nonlinearity
from surveydm.reduction.overscan import orient, overscan_noise

NY, NX = 80, 96  # assembled CCD (ny, nx); 4 amplifiers of 40 x 48
PRE, OVER = 4, 16


def make_ccd(
    *,
    crosstalk: list[Crosstalk] | None = None,
    nonlinearity: list[float] | None = None,
    ny: int = NY,
    nx: int = NX,
    over: int = OVER,
) -> CCD:
    """A CCD read through 4 amplifiers, one per quadrant, each from its outer corner (as
    paucam): A bottom-left, B bottom-right (flip_x), C top-left (flip_y), D top-right (both)."""
    hy, hx = ny // 2, nx // 2
    amps = []
    for num, name, (x0, y0), fx, fy, gain, rn in (
        (1, "A", (0, 0), False, False, 2.0, 4.0),
        (2, "B", (hx, 0), True, False, 2.5, 5.0),
        (3, "C", (0, hy), False, True, 3.0, 4.5),
        (4, "D", (hx, hy), True, True, 1.5, 6.0),
    ):
        amps.append(
            Amplifier(
                num=num,
                name=name,
                raw_shape=(hy, PRE + hx + over),
                prescan=f"[1:{PRE},1:{hy}]",
                datasec=f"[{PRE + 1}:{PRE + hx},1:{hy}]",
                biassec=f"[{PRE + hx + 1}:{PRE + hx + over},1:{hy}]",
                ccdsec=f"[{x0 + 1}:{x0 + hx},{y0 + 1}:{y0 + hy}]",
                flip_x=fx,
                flip_y=fy,
                gain=gain,
                read_noise=rn,
                saturation=60000.0,
                bias_level=1000.0 + 100 * num,
                nonlinearity=list(nonlinearity or []),
            )
        )
    return CCD(
        num=1,
        name="CCD01",
        shape=(ny, nx),
        center_mm=(0.0, 0.0),
        amplifiers=amps,
        crosstalk=crosstalk or [],
    )


def simulate_raw(
    ccd: CCD,
    signal_e: np.ndarray,
    rng: np.random.Generator | None,
    *,
    row_drift: float = 0.0,
    quantise: bool = True,
) -> dict[int, np.ndarray]:
    """Raw amplifier arrays from electrons: gain -> non-linearity -> crosstalk -> bias, with
    read noise and rounding to uint16 (no noise when ``rng`` is None)."""
    adu: dict[int, np.ndarray] = {}
    for amp in ccd.amplifiers:
        lin = orient(signal_e[amp.ccd_slices], amp) / amp.gain  # raw orientation
        adu[amp.num] = apply_nonlinearity(lin, amp.nonlinearity)
    measured = {k: v.copy() for k, v in adu.items()}
    for x in ccd.crosstalk:
        measured[x.victim] += x.coeff * adu[x.source]
    raws = {}
    for amp in ccd.amplifiers:
        ny, nx = amp.raw_shape
        raw = np.zeros((ny, nx), np.float64)
        raw[amp.data_slices] = measured[amp.num]
        rows = amp.bias_level + row_drift * np.sin(np.arange(ny) / 5.0)[:, None]
        raw += rows
        if rng is not None:
            raw += rng.normal(0.0, amp.read_noise / amp.gain, raw.shape)
        if quantise:
            raw = np.clip(np.round(raw), 0, 65535).astype(np.uint16)
        raws[amp.num] = raw
    return raws


# --------------------------------------------------------------------------- overscan


def test_overscan_level_and_read_noise_recovered():
    ccd = make_ccd()
    rng = np.random.default_rng(1)
    drift = 20.0  # ADU, row-to-row bias variation (sin of the row number)
    raws = simulate_raw(ccd, np.zeros((NY, NX)), rng, row_drift=drift)
    for amp in ccd.amplifiers:
        data, level = overscan_correct(raws[amp.num], amp)
        assert data.dtype == np.float32
        assert data.shape == (NY // 2, NX // 2)
        mean_drift = drift * np.mean(np.sin(np.arange(amp.raw_shape[0]) / 5.0))
        assert level == pytest.approx(amp.bias_level + mean_drift, abs=0.3)
        assert abs(float(data.mean())) < 0.5
        # row_median follows the row drift; a single mean level leaves it in
        assert np.std(data.mean(axis=1)) < 0.15 * drift / np.sqrt(2)
        flat_level, _ = overscan_correct(raws[amp.num], amp, method="mean")
        assert np.std(flat_level.mean(axis=1)) > 0.8 * drift / np.sqrt(2)
        noise_e = overscan_noise(raws[amp.num], amp) * amp.gain
        assert noise_e == pytest.approx(amp.read_noise, rel=0.08)


def test_overscan_methods_and_errors():
    ccd = make_ccd()
    amp = ccd.amp(1)
    raw = simulate_raw(ccd, np.zeros((NY, NX)), np.random.default_rng(2))[1]
    for method in ("row_median", "mean", "poly"):
        data, level = overscan_correct(raw, amp, method=method)
        assert level == pytest.approx(amp.bias_level, abs=0.5)
        assert abs(float(np.median(data))) < 1.0
    with pytest.raises(ValueError, match="overscan method"):
        overscan_correct(raw, amp, method="spline")
    with pytest.raises(RawGeometryError, match="raw_shape"):
        overscan_correct(raw[:, :-1], amp)


def test_amplifier_flips_land_in_the_right_ccd_corner():
    ccd = make_ccd()
    for amp in ccd.amplifiers:
        raws = {a.num: np.full(a.raw_shape, 1000, np.uint16) for a in ccd.amplifiers}
        # first pixel read out (raw DATASEC origin) of this amplifier
        dy, dx = amp.data_slices
        raws[amp.num][dy.start, dx.start] = 5000
        out = assemble_ccd(raws, ccd, crosstalk=False, linearity=False)
        y, x = np.unravel_index(np.argmax(out.image), out.image.shape)
        cy, cx = amp.ccd_slices
        expect_y = cy.stop - 1 if amp.flip_y else cy.start
        expect_x = cx.stop - 1 if amp.flip_x else cx.start
        assert (y, x) == (expect_y, expect_x), amp.name
        assert out.image[y, x] == pytest.approx(4000 * amp.gain)
    # the outer corners of the CCD are the readout corners of A, B, C, D
    assert {(0, 0), (0, NX - 1), (NY - 1, 0), (NY - 1, NX - 1)}


def test_assemble_recovers_electrons_exactly_without_noise():
    ccd = make_ccd()
    truth = np.arange(NY * NX, dtype=np.float64).reshape(NY, NX) * 3.0
    raws = simulate_raw(ccd, truth, None, quantise=False)
    out = assemble_ccd(raws, ccd)
    assert out.image.dtype == np.float32 and out.image.shape == (NY, NX)
    np.testing.assert_allclose(out.image, truth, atol=1e-2 * 3)
    assert out.overscan_levels == pytest.approx({a.num: a.bias_level for a in ccd.amplifiers})
    rn_map = out.read_noise_map()
    assert rn_map.shape == (NY, NX)


def test_assemble_rejects_missing_or_misshapen_amplifiers():
    ccd = make_ccd()
    raws = simulate_raw(ccd, np.zeros((NY, NX)), None)
    del raws[3]
    with pytest.raises(RawGeometryError, match=r"missing for amplifiers \[3\]"):
        assemble_ccd(raws, ccd)
    raws = simulate_raw(ccd, np.zeros((NY, NX)), None)
    raws[2] = raws[2][:-1]
    with pytest.raises(RawGeometryError, match="amplifier B"):
        assemble_ccd(raws, ccd)


def test_saturation_mask_in_ccd_orientation():
    ccd = make_ccd()
    raws = simulate_raw(ccd, np.zeros((NY, NX)), None)
    amp = ccd.amp(4)  # flipped in x and y
    dy, dx = amp.data_slices
    raws[4][dy.start, dx.start] = 65000
    out = assemble_ccd(raws, ccd)
    assert out.saturated.sum() == 1
    assert out.saturated[NY - 1, NX - 1]


# --------------------------------------------------------------------------- crosstalk


def test_crosstalk_injected_and_removed():
    coeff = 2e-3
    ccd = make_ccd(crosstalk=[Crosstalk(source=1, victim=2, coeff=coeff)])
    truth = np.full((NY, NX), 100.0)
    ay, ax = ccd.amp(1).ccd_slices
    truth[ay.start + 10 : ay.start + 14, ax.start + 5 : ax.start + 9] = 80000.0  # bright star
    raws = simulate_raw(ccd, truth, None, quantise=False)
    # the ghost sits at the same raw position of amplifier B: mirrored in x on the CCD
    ghost = np.zeros_like(truth, bool)
    src = np.zeros_like(truth, bool)
    src[ay.start + 10 : ay.start + 14, ax.start + 5 : ax.start + 9] = True
    a1, a2 = ccd.amp(1), ccd.amp(2)
    ghost[a2.ccd_slices] = orient(orient(src[a1.ccd_slices], a1), a2)
    injected = coeff * (80000.0 / a1.gain) * a2.gain  # ghost amplitude, e- in amp B
    raw_out = assemble_ccd(raws, ccd, crosstalk=False)
    assert np.mean(raw_out.image[ghost] - 100.0) == pytest.approx(injected, rel=0.01)
    out = assemble_ccd(raws, ccd, crosstalk=True)
    residual = np.abs(out.image[ghost] - 100.0).max()
    assert residual < 0.01 * injected
    np.testing.assert_allclose(out.image, truth, rtol=1e-5, atol=1e-2)


def test_crosstalk_both_ways_is_inverted_exactly():
    ccd = make_ccd(
        crosstalk=[
            Crosstalk(source=1, victim=2, coeff=0.01),
            Crosstalk(source=2, victim=1, coeff=-0.02),
            Crosstalk(source=3, victim=4, coeff=0.005),
        ]
    )
    rng = np.random.default_rng(3)
    truth = rng.uniform(0, 50000, (NY, NX))
    raws = simulate_raw(ccd, truth, None, quantise=False)
    out = assemble_ccd(raws, ccd)
    np.testing.assert_allclose(out.image, truth, rtol=1e-5, atol=0.05)


# --------------------------------------------------------------------------- non-linearity


@pytest.mark.parametrize("coeffs", [[-1.6e-7, -1.3e-13], [2e-7], [-5e-7, 1e-12, -1e-17]])
def test_nonlinearity_inverted_to_1e4(coeffs):
    linear = np.linspace(1.0, 60000.0, 20001)
    measured = apply_nonlinearity(linear, coeffs)
    assert np.max(np.abs(measured / linear - 1)) > 1e-3  # the effect is real
    recovered = correct_nonlinearity(measured.astype(np.float32), coeffs)
    assert recovered.dtype == np.float32
    assert np.max(np.abs(recovered / linear - 1)) < 1e-4


def test_nonlinearity_corrected_in_assembly():
    ccd = make_ccd(nonlinearity=[-3e-7, -1e-13])
    truth = np.random.default_rng(4).uniform(1000, 100000, (NY, NX))
    raws = simulate_raw(ccd, truth, None, quantise=False)
    out = assemble_ccd(raws, ccd)
    assert np.max(np.abs(out.image / truth - 1)) < 1e-4
    off = assemble_ccd(raws, ccd, linearity=False)
    assert np.max(np.abs(off.image / truth - 1)) > 1e-3


# ------------------------------------------------- one-pass kernel against plain numpy steps


def _numpy_reference(raws, ccd, *, bias, dark, exptime, flat, crosstalk, linearity):
    """The detrending steps written plainly with numpy, in float32 as the kernel computes
    (non-linearity inverted in float64 to convergence): overscan row medians -> crosstalk ->
    non-linearity -> gain -> flips -> bias -> dark -> flat (0 where flat <= 0 or NaN)."""
    data = {}
    for amp in ccd.amplifiers:
        raw = raws[amp.num]
        level = np.median(raw[amp.bias_slices], axis=1).astype(np.float32)[:, None]
        data[amp.num] = raw[amp.data_slices].astype(np.float32) - level
    if crosstalk:
        data = correct_crosstalk(data, ccd.crosstalk)
    image = np.empty(ccd.shape, np.float32)
    for amp in ccd.amplifiers:
        adu = data[amp.num]
        if linearity and amp.nonlinearity:
            m = adu.astype(np.float64)
            x = m.copy()
            for _ in range(20):
                f = x * (1 + sum(c * x**k for k, c in enumerate(amp.nonlinearity, 1))) - m
                df = 1 + sum((k + 1) * c * x**k for k, c in enumerate(amp.nonlinearity, 1))
                x -= f / df
            adu = x.astype(np.float32)
        image[amp.ccd_slices] = orient(adu * np.float32(amp.gain), amp)
    image -= bias
    image -= np.float32(exptime) * dark
    with np.errstate(divide="ignore", invalid="ignore"):
        image /= flat
    image[~(flat > 0)] = 0.0
    saturated = np.empty(ccd.shape, bool)
    for amp in ccd.amplifiers:
        saturated[amp.ccd_slices] = orient(raws[amp.num][amp.data_slices] >= amp.saturation, amp)
    return image, saturated


def _random_frames(rng: np.random.Generator, shape: tuple[int, int]):
    bias = rng.normal(0.0, 5.0, shape).astype(np.float32)
    dark = rng.uniform(0.0, 0.1, shape).astype(np.float32)
    flat = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    flat[0, :3] = (0.0, -1.0, np.nan)  # not positive or NaN: pixel set to 0
    flat[-1, -1] = np.nan
    return bias, dark, flat


@pytest.mark.parametrize("over", [15, 16])  # odd and even overscan widths for the median
@pytest.mark.parametrize("steps", ["none", "crosstalk", "nonlinearity", "both"])
def test_one_pass_assembly_equals_numpy_steps(over, steps):
    xtalk = [
        Crosstalk(source=1, victim=2, coeff=2e-3),
        Crosstalk(source=2, victim=1, coeff=-1e-3),
        Crosstalk(source=4, victim=3, coeff=5e-4),
    ]
    ccd = make_ccd(
        over=over,
        crosstalk=xtalk if steps in ("crosstalk", "both") else None,
        nonlinearity=[-2e-7, -1e-13] if steps in ("nonlinearity", "both") else None,
    )
    rng = np.random.default_rng(21)
    raws = {a.num: rng.integers(900, 40000, a.raw_shape).astype(np.uint16) for a in ccd.amplifiers}
    for amp in ccd.amplifiers:  # a few saturated pixels in every amplifier, one at the corner
        dy, dx = amp.data_slices
        raws[amp.num][dy.start, dx.start] = 65000
        raws[amp.num][dy.start + 3, dx.start + 7 + amp.num] = 60000
    bias, dark, flat = _random_frames(rng, (NY, NX))
    out = assemble_ccd(raws, ccd, bias=bias, dark=dark, exptime=30.0, flat=flat)
    ref, saturated = _numpy_reference(
        raws, ccd, bias=bias, dark=dark, exptime=30.0, flat=flat, crosstalk=True, linearity=True
    )
    np.testing.assert_array_equal(out.saturated, saturated)
    assert out.saturated.sum() == 8
    assert np.all(out.image[~(flat > 0)] == 0.0) and np.isfinite(out.image).all()
    if steps in ("none", "crosstalk"):  # same float32 operations in the same order
        np.testing.assert_array_equal(out.image, ref)
    else:
        np.testing.assert_allclose(out.image, ref, rtol=2e-6, atol=1e-3)
    # the one pass equals assembling first and detrending after
    two_steps = detrend(
        assemble_ccd(raws, ccd).image, bias=bias, dark=dark, exptime=30.0, flat=flat
    )
    np.testing.assert_array_equal(out.image, two_steps)


def test_one_pass_assembly_same_for_every_raw_dtype_and_uniform_dark():
    ccd = make_ccd()
    rng = np.random.default_rng(22)
    raws = {a.num: rng.integers(900, 60000, a.raw_shape).astype(np.uint16) for a in ccd.amplifiers}
    bias, _, flat = _random_frames(rng, (NY, NX))
    ref = assemble_ccd(raws, ccd, bias=bias, dark=0.05, exptime=100.0, flat=flat)
    frame = np.full((NY, NX), 0.05, np.float32)
    uniform_as_frame = assemble_ccd(raws, ccd, bias=bias, dark=frame, exptime=100.0, flat=flat)
    np.testing.assert_array_equal(ref.image, uniform_as_frame.image)
    for dtype in (">u2", np.int32, np.float32, np.float64):
        other = {k: v.astype(dtype) for k, v in raws.items()}
        out = assemble_ccd(other, ccd, bias=bias, dark=0.05, exptime=100.0, flat=flat)
        np.testing.assert_array_equal(out.image, ref.image)
        np.testing.assert_array_equal(out.saturated, ref.saturated)
    with pytest.raises(ValueError, match="flat has shape"):
        assemble_ccd(raws, ccd, flat=flat[:-1])
    with pytest.raises(ValueError, match="exptime"):
        assemble_ccd(raws, ccd, dark=0.05, exptime=-1.0)


def test_detrend_kernel_equals_numpy_steps():
    rng = np.random.default_rng(23)
    shape = (37, 53)
    img = rng.normal(1000.0, 300.0, shape).astype(np.float32)
    bias, dark, flat = _random_frames(rng, shape)
    expected = (img - bias) - np.float32(60.0) * dark
    with np.errstate(divide="ignore", invalid="ignore"):
        expected /= flat
    expected[~(flat > 0)] = 0.0
    out = detrend(img, bias=bias, dark=dark, exptime=60.0, flat=flat)
    np.testing.assert_array_equal(out, expected)
    uniform = detrend(img, dark=0.25, exptime=60.0)
    np.testing.assert_array_equal(uniform, img - np.float32(60.0) * np.float32(0.25))
    strided = detrend(img[:, ::2], bias=bias[:, ::2])  # any input layout
    np.testing.assert_array_equal(strided, img[:, ::2] - bias[:, ::2])


# --------------------------------------------------------------------------- masters, detrend


def _bias_structure() -> np.ndarray:
    y, x = np.mgrid[0:NY, 0:NX]
    return 4.0 * np.sin(x / 7.0) + 0.05 * y  # residual 2-d bias pattern after overscan (e-)


def _flat_pattern(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:NY, 0:NX]
    vignetting = 1.0 - 0.3 * (((x - NX / 2) / NX) ** 2 + ((y - NY / 2) / NY) ** 2)
    prnu = 1.0 + 0.02 * rng.standard_normal((NY, NX))
    return vignetting * prnu


def _frames(ccd, signal, n, rng, *, poisson=True):
    out = []
    for _ in range(n):
        s = rng.poisson(np.maximum(signal, 0)).astype(np.float64) if poisson else signal
        out.append(assemble_ccd(simulate_raw(ccd, s + _bias_structure(), rng), ccd).image)
    return out


def test_master_flat_normalised_and_recovers_pixel_response():
    rng = np.random.default_rng(5)
    ccd = make_ccd()
    pattern = _flat_pattern(rng)
    biases = _frames(ccd, np.zeros((NY, NX)), 10, rng)
    mb = master_bias(biases)
    assert mb.image.dtype == np.float32
    residual = mb.image - _bias_structure()
    assert abs(float(residual.mean())) < 0.3
    assert float(residual.std()) < 1.25 * 6.0 / np.sqrt(10)  # median of 10 frames, <= 6 e- rn
    assert mb.stats["noise"] == pytest.approx(5.0, rel=0.35)  # amps of 4-6 e- read noise
    assert mb.stats["structure"] > 1.0  # the sin(x/7) pattern survives binning

    levels = [40000, 35000, 45000, 38000, 42000, 40000, 36000, 44000, 41000, 39000, 43000, 37000]
    flats = [_frames(ccd, lev * pattern, 1, rng)[0] for lev in levels]
    flats[2][10, 10] += 30000.0  # cosmic ray in one flat
    flats.append(_frames(ccd, 3000 * pattern, 1, rng)[0])  # far off in level
    mf = master_flat(flats, bias=mb.image)
    assert mf.n == len(levels)
    assert 12 in mf.details["rejected"] and mf.stats["n_rejected"] == 1
    assert all(isinstance(float(v), float) for v in mf.stats.values())  # QC-ready numbers
    assert float(np.median(mf.image)) == pytest.approx(1.0, abs=1e-6)
    truth = pattern / np.median(pattern)
    ratio = mf.image / truth
    assert np.sqrt(np.mean((ratio - 1) ** 2)) < 0.005
    assert abs(ratio[10, 10] - 1) < 0.02  # the cosmic ray was rejected
    assert mf.stats["median"] == pytest.approx(1.0, abs=1e-6)
    assert all(r < 0.01 for r in mf.details["residual_rms"].values())
    assert mf.stats["residual_rms"] == max(mf.details["residual_rms"].values())
    again = master_flat(flats[:6], bias=mb.image, previous=mf.image)
    assert again.stats["stability_rms"] < 0.01


def test_master_frames_need_enough_frames():
    frames = [np.zeros((8, 8), np.float32)] * 2
    with pytest.raises(CalibrationError, match="at least 3"):
        master_bias(frames)
    with pytest.raises(CalibrationError, match="usable frames"):
        master_flat([np.full((8, 8), 10.0, np.float32)] * 4)  # all below min_level


def test_detrend_recovers_sky_and_star_to_noise_level():
    rng = np.random.default_rng(6)
    ccd = make_ccd(nonlinearity=[-2e-7], crosstalk=[Crosstalk(source=1, victim=2, coeff=1e-3)])
    pattern = _flat_pattern(rng)
    mb = master_bias(_frames(ccd, np.zeros((NY, NX)), 12, rng))
    mf = master_flat(_frames(ccd, 40000 * pattern, 12, rng), bias=mb.image)
    y, x = np.mgrid[0:NY, 0:NX]
    sky = 800.0
    star = 20000.0 * np.exp(-((x - 30.3) ** 2 + (y - 50.7) ** 2) / (2 * 1.5**2))
    truth = sky + star  # e- per pixel above the atmosphere, before the flat
    raw_signal = rng.poisson(truth * pattern / np.median(pattern)).astype(np.float64)
    raws = simulate_raw(ccd, raw_signal + _bias_structure(), rng)
    science = assemble_ccd(raws, ccd)
    out = detrend(science.image, bias=mb.image, flat=mf.image)
    assert out.dtype == np.float32
    sigma = np.sqrt(truth + 5.0**2)
    pull = (out - truth) / sigma
    assert abs(float(pull.mean())) < 0.1
    assert float(pull.std()) == pytest.approx(1.0, abs=0.12)
    aperture = (x - 30.3) ** 2 + (y - 50.7) ** 2 < 36
    flux = float((out[aperture] - sky).sum())
    assert flux == pytest.approx(float(star[aperture].sum()), rel=0.02)
    # without the flat the vignetting remains: the check above can fail
    raw_only = detrend(science.image, bias=mb.image)
    assert np.std(raw_only - truth) > 1.5 * np.std(out - truth)


def test_detrend_dark_flat_zero_and_shape_errors():
    img = np.full((4, 5), 110.0, np.float32)
    bias = np.full((4, 5), 10.0, np.float32)
    dark = np.full((4, 5), 0.5, np.float32)
    flat = np.full((4, 5), 2.0, np.float32)
    flat[0, 0] = 0.0
    flat[0, 1] = np.nan
    out = detrend(img, bias=bias, dark=dark, exptime=100.0, flat=flat)
    assert out[1, 1] == pytest.approx((110 - 10 - 50) / 2.0)
    assert out[0, 0] == 0.0 and out[0, 1] == 0.0
    assert img[1, 1] == 110.0  # input untouched
    with pytest.raises(ValueError, match="flat has shape"):
        detrend(img, flat=np.ones((3, 3), np.float32))


def test_fringe_scale_fitted_and_removed():
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:200, 0:200]
    fringe = (2.0 * np.sin(x / 6.0 + y / 11.0) * np.cos(y / 9.0)).astype(np.float32)
    fringe -= fringe.mean()
    sky = 1500.0
    image = sky + 37.0 * fringe + rng.normal(0, np.sqrt(sky), fringe.shape)
    image[50:55, 50:55] += 30000.0  # a star, rejected by the fit
    scale = fit_fringe_scale(image, fringe)
    assert scale == pytest.approx(37.0, rel=0.03)
    out = detrend(image.astype(np.float32), fringe=fringe)
    resid = out - sky
    resid[45:60, 45:60] = 0.0
    assert np.std(resid) == pytest.approx(np.sqrt(sky), rel=0.05)
    fixed = detrend(image.astype(np.float32), fringe=fringe, fringe_scale=0.0)
    assert np.std(fixed[:40] - sky) > 1.2 * np.sqrt(sky)


def test_fringe_scale_robust_to_a_saturated_star_on_a_halo_in_the_fringe_frame():
    """A fringe frame made from two dithers keeps a star's halo; a science image with a
    saturated star and bleed trail on it must not drag the least-squares scale (seen in the
    demo night: 1.5x the sky on an i-band CCD, fringes doubled instead of removed)."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:400, 0:200]
    fringe = (0.03 * np.sin(x / 5.0 + y / 13.0)).astype(np.float32)
    halo = np.exp(-((x - 120.0) ** 2 + (y - 200.0) ** 2) / (2 * 15.0**2))
    fringe += (0.4 * halo).astype(np.float32)  # the star's halo left in the fringe frame
    sky = 45000.0
    image = sky * (1 + 0.03 * np.sin(x / 5.0 + y / 13.0)) + rng.normal(0, np.sqrt(sky), x.shape)
    image += 5.0e6 * halo  # the same bright star, saturated, in the science image
    image[:, 119:122] = np.maximum(image[:, 119:122], 180000.0)  # bleed trail
    scale = fit_fringe_scale(image, fringe)
    assert scale == pytest.approx(sky, rel=0.02)


# --------------------------------------------------------------------------- cosmics, weights


def _star_field(rng, shape=(256, 256), n_stars=25, sky=300.0, fwhm=3.5):
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = np.full(shape, sky)
    s = fwhm / 2.3548
    centres = rng.uniform(10, shape[0] - 10, (n_stars, 2))
    for cy, cx in centres:
        flux = rng.uniform(2e4, 3e5)
        image += flux / (2 * np.pi * s**2) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s**2))
    return image, centres


def test_cosmic_rays_found_few_false_positives_on_stars():
    rng = np.random.default_rng(8)
    truth, centres = _star_field(rng)
    image = rng.poisson(truth).astype(np.float64) + rng.normal(0, 5.0, truth.shape)
    cr = np.zeros(truth.shape, bool)
    ys = rng.integers(5, 251, 60)
    xs = rng.integers(5, 251, 60)
    for k, (yy, xx) in enumerate(zip(ys, xs, strict=True)):
        length = 1 + k % 3  # single pixels and short tracks
        cr[yy : yy + length, xx] = True
    image[cr] += rng.uniform(800, 8000, cr.sum())
    mask, cleaned = find_cosmic_rays(image.astype(np.float32), read_noise=5.0, saturation_level=1e6)
    assert mask.dtype == bool and cleaned.dtype == np.float32
    found = mask[cr].mean()
    assert found > 0.9
    near_star = np.zeros_like(cr)
    yy, xx = np.mgrid[0:256, 0:256]
    for cy, cx in centres:
        near_star |= (yy - cy) ** 2 + (xx - cx) ** 2 < 16
    false_on_stars = mask & near_star & ~cr
    assert false_on_stars.sum() <= 0.01 * near_star.sum()
    # astroscrappy grows detections into neighbours (sigfrac); beyond that, a handful at most
    from scipy import ndimage

    near_cr = ndimage.binary_dilation(cr, iterations=2)
    assert (mask & ~near_cr).sum() <= 10  # of 65536 pixels
    assert np.abs(cleaned[cr] - truth[cr]).mean() < 0.2 * np.abs(image[cr] - truth[cr]).mean()


def test_weight_map_is_inverse_variance_of_simulated_noise():
    rng = np.random.default_rng(9)
    shape = (400, 400)
    flat = np.ones(shape, np.float32)
    flat[:, 200:] = 0.7
    sky = np.full(shape, 400.0)
    sky[200:] = 2500.0
    rn = 6.0
    raw = rng.poisson(sky * flat) + rng.normal(0, rn, shape)
    image = (raw / flat).astype(np.float32)
    mask = np.zeros(shape, np.uint16)
    mask[0:3, 0:3] = 1
    w = weight_map(image, flat, rn, mask)
    assert w.dtype == np.float32
    assert np.all(w[0:3, 0:3] == 0)
    for sl in (
        (slice(3, 200), slice(3, 200)),
        (slice(3, 200), slice(200, 400)),
        (slice(200, 400), slice(0, 200)),
        (slice(200, 400), slice(200, 400)),
    ):
        empirical = np.var(image[sl] - sky[sl])
        predicted = np.mean(1.0 / w[sl])
        assert predicted == pytest.approx(empirical, rel=0.03)
    with pytest.raises(ValueError, match="mask has shape"):
        weight_map(image, flat, rn, mask[:10])


# --------------------------------------------------------------------------- further API


def test_master_dark_rate_and_detrend_dark_term():
    rng = np.random.default_rng(10)
    shape = (40, 50)
    rate = np.full(shape, 0.02)
    rate[10, 10] = 2.0  # hot pixel
    bias = rng.normal(0, 1, shape).astype(np.float32)
    exptimes = [300.0, 600.0, 300.0, 900.0, 600.0]
    frames = [
        (bias + rng.poisson(rate * t) + rng.normal(0, 3, shape)).astype(np.float32)
        for t in exptimes
    ]
    from surveydm.reduction import master_dark

    md = master_dark(frames, exptimes, bias=bias)
    assert md.image[10, 10] == pytest.approx(2.0, rel=0.05)
    assert float(np.median(md.image)) == pytest.approx(0.02, abs=0.01)
    sci = (bias + 600.0 * rate + 100.0).astype(np.float32)
    out = detrend(sci, bias=bias, dark=md.image, exptime=600.0)
    assert out[10, 10] == pytest.approx(100.0, abs=60.0)  # 1200 e- of dark removed
    with pytest.raises(CalibrationError, match="positive exposure times"):
        master_dark(frames, [300.0] * 4, bias=bias)


def test_make_fringe_frame_recovers_the_pattern():
    rng = np.random.default_rng(11)
    from surveydm.reduction import make_fringe_frame

    y, x = np.mgrid[0:120, 0:120]
    pattern = (0.02 * np.sin(x / 5.0) * np.cos(y / 7.0)).astype(np.float32)
    frames = []
    for k in range(7):
        sky = 1000.0 + 200 * k
        img = sky * (1 + pattern) + rng.normal(0, 3.0, pattern.shape)
        cy, cx = rng.integers(10, 110, 2)
        img[cy - 2 : cy + 3, cx - 2 : cx + 3] += 5e4  # a star at a different place each time
        frames.append(img.astype(np.float32))
    fringe = make_fringe_frame(frames)
    assert fringe.shape == pattern.shape and fringe.dtype == np.float32
    assert np.corrcoef(fringe.ravel(), pattern.ravel())[0, 1] > 0.98
    assert float(np.abs(fringe - (pattern - np.median(pattern))).max()) < 0.01


def test_fringe_frame_from_two_dithers_adds_no_pixel_noise_and_keeps_faint_stars():
    """Two dithered exposures of a bright-sky band: subtracting their fringe frame must remove
    the fringes without adding the frames' pixel noise or half of the science image itself
    (before denoising, the correction moved each pixel by ~75 % of its noise and faint
    sources lost flux)."""
    from surveydm.reduction.fringe_frame import two_pass_fringe_frame
    from surveydm.simulation.render import render_stars

    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:256, 0:256].astype(np.float32)
    pattern = np.sin(2 * np.pi / 30 * (0.6 * x + 0.8 * y)).astype(np.float32)
    sky, amp = 4000.0, 0.02
    sx, sy = rng.uniform(-200, 456, 400), rng.uniform(-200, 456, 400)
    flux = 10 ** rng.uniform(3.3, 5.5, 400)
    frames, stars = [], []
    for dx, dy in ((0.0, 0.0), (97.0, 73.0)):
        img = np.zeros((256, 256), np.float32)
        xs, ys = sx + dx, sy + dy
        on = (xs > -20) & (xs < 276) & (ys > -20) & (ys < 276)
        render_stars(img, xs[on], ys[on], flux[on], 3.5, 3.5)
        stars.append((img.copy(), xs[on], ys[on], flux[on]))
        img += sky * (1 + amp * pattern)
        frames.append((rng.poisson(img) + rng.normal(0, 5, img.shape)).astype(np.float32))
    fringe = two_pass_fringe_frame(frames, np.zeros((256, 256), bool))
    science = frames[0]
    corrected = science - fit_fringe_scale(science, fringe) * fringe
    ideal = science - sky * amp * pattern
    change = corrected - ideal - np.median(corrected - ideal)
    assert np.std(change) < 0.15 * np.sqrt(sky)  # ~0.1 (0.77 without denoising)
    img, xs, ys, fl = stars[0]
    inner = (xs > 20) & (xs < 236) & (ys > 20) & (ys < 236) & (fl < 3e4)
    rows, cols = np.rint(ys[inner]).astype(int), np.rint(xs[inner]).astype(int)
    lost = [change[r - 4 : r + 5, c - 4 : c + 5].sum() for r, c in zip(rows, cols, strict=True)]
    assert np.median(np.abs(np.array(lost) / fl[inner])) < 0.04  # ~0.03 (0.06 without)


def test_assemble_reuses_buffers_and_reports_read_noise():
    ccd = make_ccd()
    rng = np.random.default_rng(12)
    truth = rng.uniform(0, 1000, (NY, NX))
    first = assemble_ccd(simulate_raw(ccd, truth, rng), ccd)
    assert not first.saturated.any()
    second = assemble_ccd(simulate_raw(ccd, 2 * truth, rng), ccd, reuse=first)
    assert second.image is first.image and second.saturated is first.saturated
    np.testing.assert_allclose(second.image, 2 * truth, atol=8 * 6.0)
    rn = second.read_noise_map()
    for amp in ccd.amplifiers:
        assert np.all(rn[amp.ccd_slices] == np.float32(second.read_noise[amp.num]))
        assert second.read_noise[amp.num] == pytest.approx(amp.read_noise, rel=0.25)
        assert second.gain[amp.num] == amp.gain


def test_detrend_overwrite_works_in_place():
    img = np.full((3, 3), 10.0, np.float32)
    out = detrend(img, bias=np.ones((3, 3), np.float32), overwrite=True)
    assert out is img and np.all(img == 9.0)
    copy = detrend(img.astype(np.float64), bias=np.ones((3, 3), np.float32), overwrite=True)
    assert copy.dtype == np.float32 and np.all(img == 9.0)


def test_assemble_accepts_fits_style_big_endian_and_float_input():
    ccd = make_ccd()
    truth = np.random.default_rng(13).uniform(0, 5000, (NY, NX))
    raws = simulate_raw(ccd, truth, None)
    ref = assemble_ccd(raws, ccd).image
    big = {k: v.astype(">u2") for k, v in raws.items()}  # as astropy.io.fits returns them
    np.testing.assert_array_equal(assemble_ccd(big, ccd).image, ref)
    flt = {k: v.astype(">f4") for k, v in raws.items()}
    np.testing.assert_array_equal(assemble_ccd(flt, ccd).image, ref)
    out = assemble_ccd(raws, ccd)
    expected = min((a.saturation - a.bias_level) * a.gain for a in ccd.amplifiers)
    assert out.saturation_level == pytest.approx(expected, rel=1e-3)


def test_fringe_source_mask_reaches_star_wings_once_fringes_are_removed():
    """With the first fringe frame removed the threshold is set by the noise, not by the
    fringes, so the faint wings of a star are masked (they would leak into the frame)."""
    from surveydm.reduction.fringe import fringe_source_mask

    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:300, 0:300]
    pattern = (0.03 * np.sin(x / 3.0 + y / 7.0)).astype(np.float32)
    sky = 40000.0
    r2 = (x - 150.0) ** 2 + (y - 150.0) ** 2
    star = 2.0e6 / (2 * np.pi * 2.0**2) * np.exp(-r2 / (2 * 2.0**2))
    wings = 3.0e5 / (np.pi * 6.0**2) * (1 + r2 / 6.0**2) ** -3.0  # Moffat halo
    image = sky * (1 + pattern) + star + wings + rng.normal(0, np.sqrt(sky), x.shape)
    image = image.astype(np.float32)
    without = fringe_source_mask(image)
    with_fringe = fringe_source_mask(image, fringe=pattern)
    ring = (r2 > 6.0**2) & (r2 < 7.5**2)  # wings ~ 1 noise sigma per pixel
    assert with_fringe[ring].mean() > 0.9
    assert without[ring].mean() < 0.5
    assert with_fringe[:50, :50].mean() < 0.05  # blank sky stays usable


def test_fill_holes_interpolates_the_pattern():
    from surveydm.reduction.fringe import fill_holes

    y, x = np.mgrid[0:100, 0:100]
    truth = np.sin(x / 8.0 + y / 11.0).astype(np.float32)
    image = truth.copy()
    image[40:44, 50:54] = np.nan
    fill_holes(image)
    assert np.isfinite(image).all()
    assert np.abs(image - truth)[40:44, 50:54].max() < 0.2
    assert np.array_equal(image[:30], truth[:30])  # valid pixels untouched
    empty = np.full((10, 10), np.nan, np.float32)
    assert np.all(fill_holes(empty) == 0.0)
