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
    hot_pixels,
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


def test_bad_and_hot_pixels():
    rng = np.random.default_rng(1)
    flat = rng.normal(1.0, 0.01, (40, 40)).astype(np.float32)
    flat[3, 4] = 0.1  # dead
    flat[7, :] = 0.3  # bad row
    flat[9, 9] = np.nan
    flat[11, 11] = 2.0
    bad = bad_pixels_from_flat(flat)
    assert bad[3, 4] and bad[7].all() and bad[9, 9] and bad[11, 11]
    assert bad.sum() == 40 + 3
    bias = rng.normal(0.0, 3.0, (40, 40)).astype(np.float32)
    bias[20, 21] = 200.0
    bias[30, 1] = 60.0
    hot = hot_pixels(bias, nsigma=8.0)
    assert hot[20, 21] and hot[30, 1]
    assert hot.sum() == 2
    assert edge_mask((5, 6), 1).sum() == 5 * 6 - 3 * 4
