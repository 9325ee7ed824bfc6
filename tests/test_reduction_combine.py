"""Bounded-memory sigma-clipped combination: agreement with astropy's sigma_clip, outlier
rejection, lazy row-block reading and master-bias figures."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.stats import sigma_clip

from surveydm.reduction import CombineResult, combine, master_bias


def _stack(rng, n=15, shape=(60, 50)):
    frames = rng.normal(1000.0, 5.0, (n,) + shape).astype(np.float32)
    frames[3, 10:20, 10:20] += 500.0  # cosmic ray / satellite
    frames[7, 40, :] -= 300.0  # bad row in one frame
    frames[5, 33, 7] = np.nan  # missing value
    return frames


@pytest.mark.filterwarnings("ignore:Input data contains invalid values")
@pytest.mark.parametrize("method", ["median", "mean"])
@pytest.mark.parametrize("chunk_rows", [1, 7, 60, None])
def test_combine_matches_astropy_sigma_clip(method, chunk_rows):
    frames = _stack(np.random.default_rng(1))
    res = combine(list(frames), method=method, sigma=3.0, maxiters=5, chunk_rows=chunk_rows)
    assert isinstance(res, CombineResult)
    assert res.image.dtype == np.float32 and res.std.dtype == np.float32
    assert res.n_used.dtype == np.uint16
    with np.errstate(invalid="ignore"):
        clipped = sigma_clip(
            frames, sigma=3.0, maxiters=5, axis=0, cenfunc="median", stdfunc="std", masked=True
        )
    ref = np.ma.median(clipped, axis=0) if method == "median" else clipped.mean(axis=0)
    np.testing.assert_allclose(res.image, ref.filled(np.nan), rtol=2e-6)
    np.testing.assert_array_equal(res.n_used, (~clipped.mask).sum(axis=0))
    np.testing.assert_allclose(res.std, clipped.std(axis=0).filled(np.nan), rtol=1e-4, atol=1e-4)


def test_combine_rejects_outliers():
    rng = np.random.default_rng(2)
    frames = _stack(rng)
    res = combine(list(frames))
    assert np.abs(res.image[10:20, 10:20] - 1000.0).max() < 5.0
    assert np.abs(res.image[40] - 1000.0).max() < 5.0
    assert np.all(res.n_used[10:20, 10:20] <= 14)  # the hit frame is always rejected
    assert res.n_used[10:20, 10:20].mean() > 13.5
    plain = np.median(frames, axis=0)  # without rejection the mean would be pulled up
    assert np.abs(frames.mean(axis=0)[10:20, 10:20] - 1000).min() > 20
    assert np.isnan(plain[33, 7])  # numpy's plain median breaks on the NaN; ours does not
    assert np.isfinite(res.image).all()


def test_combine_edge_cases():
    one = [np.full((4, 4), 7.0, np.float32)]
    res = combine(one)
    assert np.all(res.image == 7.0) and np.all(res.n_used == 1) and np.all(res.std == 0)
    nan_frames = [np.full((2, 2), np.nan, np.float32)] * 3
    res = combine(nan_frames)
    assert np.all(np.isnan(res.image)) and np.all(res.n_used == 0)
    noclip = combine(
        [np.zeros((2, 2)), np.zeros((2, 2)), np.full((2, 2), 90.0)], maxiters=0, method="mean"
    )
    assert np.allclose(noclip.image, 30.0)


def test_combine_with_scales():
    base = np.random.default_rng(3).uniform(0.9, 1.1, (20, 30)).astype(np.float32)
    levels = [1000.0, 2000.0, 500.0, 1500.0]
    res = combine([base * lev for lev in levels], scales=[1 / lev for lev in levels])
    np.testing.assert_allclose(res.image, base, rtol=1e-5)


def test_combine_callable_reads_bounded_row_blocks():
    frames = _stack(np.random.default_rng(4), n=9, shape=(103, 40))
    calls: list[tuple[int, int, int]] = []

    def read(i: int, rows: slice) -> np.ndarray:
        calls.append((i, rows.start, rows.stop))
        return frames[i][rows]

    res = combine(read, n_frames=9, shape=(103, 40), chunk_rows=16)
    assert calls, "the source was never read"
    assert max(stop - start for _, start, stop in calls) <= 16
    # every row of every frame read exactly once
    seen = np.zeros((9, 103), int)
    for i, start, stop in calls:
        seen[i, start:stop] += 1
    assert np.all(seen == 1)
    ref = combine(list(frames), chunk_rows=103)
    np.testing.assert_array_equal(res.image, ref.image)
    np.testing.assert_array_equal(res.n_used, ref.n_used)


def test_combine_bad_input():
    with pytest.raises(ValueError, match="n_frames and shape"):
        combine(lambda i, rows: np.zeros((1, 1)))
    with pytest.raises(ValueError, match="one shape"):
        combine([np.zeros((3, 3)), np.zeros((3, 4))])
    with pytest.raises(ValueError, match="no frames"):
        combine([])
    with pytest.raises(ValueError, match="method"):
        combine([np.zeros((3, 3))], method="mode")
    with pytest.raises(ValueError, match="scales"):
        combine([np.zeros((3, 3))] * 2, scales=[1.0])
    with pytest.raises(ValueError, match="expected"):
        combine(lambda i, rows: np.zeros((2, 2)), n_frames=2, shape=(5, 3), chunk_rows=2)


def test_master_bias_from_callable_source():
    rng = np.random.default_rng(5)
    shape = (64, 128)
    structure = 12.0 + np.linspace(-3, 3, shape[1])[None, :] * np.ones(shape)
    rn = 4.0
    frames = [structure + rng.normal(0, rn, shape) for _ in range(20)]
    frames[4][30:33, 20] += 5000  # cosmic ray
    max_rows = []

    def read(i, rows):
        max_rows.append(rows.stop - rows.start)
        return frames[i][rows].astype(np.float32)

    mb = master_bias(read, n_frames=20, shape=shape, chunk_rows=8)
    assert max(max_rows) <= 8
    assert mb.n == 20
    assert mb.image.shape == shape and mb.image.dtype == np.float32
    assert np.std(mb.image - structure) < 1.3 * rn / np.sqrt(20)
    assert mb.stats["level"] == pytest.approx(12.0, abs=0.5)
    assert mb.stats["noise"] == pytest.approx(rn, rel=0.1)
    assert mb.stats["structure"] > 0.5  # the ramp across columns
    assert abs(mb.image[31, 20] - structure[31, 20]) < 3.0
    again = master_bias(frames[:10], previous=mb.image)
    assert again.stats["stability_rms"] < rn


def test_master_flat_rejects_calibration_of_another_shape():
    from surveydm.reduction import CalibrationError, master_flat

    flats = [np.full((16, 16), 20000.0, np.float32)] * 3
    with pytest.raises(CalibrationError, match=r"bias has shape \(8, 8\)"):
        master_flat(flats, bias=np.zeros((8, 8), np.float32))
