"""Mask bit codes and mask building."""

from __future__ import annotations

import numpy as np
import pytest

from surveydm.reduction import (
    MaskBit,
    bad_pixels_from_flat,
    bleed_trails,
    build_mask,
    edge_mask,
)
from surveydm.reduction.masks import describe_mask_bits


def test_documented_bit_values():
    assert int(MaskBit.BAD_PIXEL) == 1
    assert int(MaskBit.SATURATED) == 2
    assert int(MaskBit.BLEED) == 4
    assert int(MaskBit.COSMIC_RAY) == 8
    assert int(MaskBit.EDGE) == 16
    assert int(MaskBit.HOT) == 32
    bits = describe_mask_bits()
    assert bits["COSMIC_RAY"] == 8
    values = list(bits.values())
    assert len(set(values)) == len(values)
    assert all(v & (v - 1) == 0 for v in values)  # one bit each


def test_build_mask_carries_each_bit():
    shape = (30, 20)
    bad = np.zeros(shape, bool)
    bad[5, 5] = True
    hot = np.zeros(shape, bool)
    hot[6, 6] = True
    sat = np.zeros(shape, bool)
    sat[15, 10] = True
    cr = np.zeros(shape, bool)
    cr[15, 10] = True  # a cosmic ray on a saturated pixel
    cr[20, 3] = True
    mask = build_mask(
        shape, bad_pixels=bad, hot=hot, saturated=sat, cosmic_rays=cr, edge_width=2, bleed_grow=3
    )
    assert mask.dtype == np.uint16 and mask.shape == shape
    assert mask[5, 5] == MaskBit.BAD_PIXEL
    assert mask[6, 6] == MaskBit.HOT
    assert mask[15, 10] == MaskBit.SATURATED | MaskBit.COSMIC_RAY
    assert mask[20, 3] == MaskBit.COSMIC_RAY
    # bleed: along the column only, 3 pixels each way
    assert all(mask[15 + d, 10] == MaskBit.BLEED for d in (-3, -2, -1, 1, 2, 3))
    assert mask[11, 10] == 0 and mask[19, 10] == 0
    assert mask[15, 9] == 0 and mask[15, 11] == 0
    assert mask[0, 10] & MaskBit.EDGE and mask[10, 19] & MaskBit.EDGE
    assert not mask[10, 10] & MaskBit.EDGE
    assert mask[10, 10] == 0
    with pytest.raises(ValueError, match="COSMIC_RAY"):
        build_mask(shape, cosmic_rays=np.zeros((3, 3), bool))


def test_bleed_trail_follows_bright_column_run():
    image = np.full((50, 9), 100.0)
    image[10:40, 4] = 50000.0  # trail just below saturation
    sat = np.zeros(image.shape, bool)
    sat[24:27, 3:6] = True  # saturated core
    image[24:27, 3:6] = 70000.0
    image[5, 4] = 50000.0  # unconnected bright pixel: not part of the trail
    trail = bleed_trails(sat, image=image, threshold=20000.0, grow=1)
    assert trail[10:24, 4].all() and trail[27:40, 4].all()
    assert trail[9, 4] and trail[40, 4]  # grown by one
    assert not trail[5, 4]
    assert not trail[sat].any()
    assert not trail[:, 0].any()


def test_bad_pixels_from_flat_and_edges():
    rng = np.random.default_rng(1)
    flat = rng.normal(1.0, 0.01, (40, 40)).astype(np.float32)
    flat[3, 4] = 0.1  # dead
    flat[7, :] = 0.3  # bad row
    flat[9, 9] = np.nan
    flat[11, 11] = 2.0
    bad = bad_pixels_from_flat(flat)
    assert bad[3, 4] and bad[7].all() and bad[9, 9] and bad[11, 11]
    assert bad.sum() == 40 + 3
    assert edge_mask((5, 6), 1).sum() == 5 * 6 - 3 * 4


def _camera_frames(n_darks: int, seed: int = 3):
    """Darks (60 s, with cosmic rays) and a master flat of paucam-mini CCD 2 drawn from the
    simulator's detector model, and the model's own map of hot pixels and bad columns."""
    from surveydm.instruments import load_instrument
    from surveydm.simulation import SimulationConfig
    from surveydm.simulation.detector import DetectorModel, add_cosmic_rays

    cam = load_instrument("paucam-mini")
    cfg = SimulationConfig()
    model = DetectorModel(cam, cfg)
    ccd = cam.ccd(2)
    rng = np.random.default_rng(seed)
    darks = []
    for _ in range(n_darks):
        dark = rng.poisson(model.dark_map(ccd) * 60.0).astype(np.float32)
        dark += rng.normal(0.0, 5.0, dark.shape).astype(np.float32)
        add_cosmic_rays(dark, rng, 70.0, cam.pixel_size_um, cfg)
        darks.append(dark)
    response = model.prnu(ccd)
    flat = rng.normal(response * 2e5, np.sqrt(response * 2e5)).astype(np.float32)
    flat /= np.median(flat)
    return darks, flat, model.defect_mask(ccd), model.bad_columns(ccd)


@pytest.mark.parametrize("n_darks", [1, 3])
def test_bad_pixel_mask_finds_the_simulated_hot_pixels_and_bad_columns(n_darks):
    from surveydm.reduction.bad_pixel_mask import bad_pixel_mask

    darks, flat, truth, columns = _camera_frames(n_darks)
    bpm = bad_pixel_mask(darks, [60.0] * n_darks, flats=[flat])
    found = bpm.mask != 0
    recall = (found & truth).sum() / truth.sum()
    false = (found & ~truth).sum() / found.sum()
    assert recall >= 0.98 and false <= 0.02, (recall, false)  # cosmic rays are not hot
    for col, y0, y1, kind in columns:
        bit = MaskBit.HOT if kind == "hot" else MaskBit.BAD_PIXEL
        assert (bpm.mask[y0:y1, col] & bit).mean() > 0.99, (col, kind)
    assert bpm.stats["n_darks"] == n_darks and bpm.stats["n_unstable"] == 0


def test_unstable_pixels_flicker_across_darks_and_cosmic_rays_do_not():
    from surveydm.reduction.bad_pixel_mask import bad_pixel_mask

    rng = np.random.default_rng(5)
    darks = [rng.normal(0.0, 5.0, (128, 128)).astype(np.float32) for _ in range(6)]
    for i, d in enumerate(darks):
        d[40, 50] += 300.0 * (i % 2)  # a random-telegraph pixel: two levels
    darks[2][90, 20] += 5000.0  # a cosmic ray in one frame
    bpm = bad_pixel_mask(darks, [60.0] * 6)
    assert bpm.unstable[40, 50] and bpm.mask[40, 50] & MaskBit.BAD_PIXEL
    assert not bpm.mask[90, 20]
    assert bpm.unstable.sum() == 1 and not (bpm.hot & ~bpm.unstable).any()


def test_bad_pixel_mask_rejects_bad_input():
    from surveydm.reduction.bad_pixel_mask import BadPixelError, bad_pixel_mask

    with pytest.raises(BadPixelError, match="darks or master flats"):
        bad_pixel_mask([], [])
    with pytest.raises(BadPixelError, match="positive exposure time"):
        bad_pixel_mask([np.zeros((8, 8))], [0.0])
    with pytest.raises(BadPixelError, match="shape"):
        bad_pixel_mask([np.zeros((8, 8))], [1.0], flats=[np.ones((4, 4))])
