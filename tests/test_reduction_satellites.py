"""Satellite-trail masks (:mod:`surveydm.reduction.satellites`) against trails drawn by the
simulator's renderer on small synthetic star fields."""

from __future__ import annotations

import numpy as np
import pytest

from surveydm.reduction.satellites import find_satellite_trails
from surveydm.simulation.render import render_stars
from surveydm.simulation.satellites import render_trail

SHAPE = (600, 900)
SKY, READ_NOISE = 400.0, 5.0


def _field(seed: int, trail=None, e_per_pixel=3000.0, fwhm=2.5, hot_column=True):
    """A noisy star field with a hot column, and optionally a trail along ``trail``
    (x1, y1, x2, y2); returns (image, truth of the trail's pixels)."""
    rng = np.random.default_rng(seed)
    expected = np.full(SHAPE, SKY, np.float32)
    n = 150
    x, y = rng.uniform(0, SHAPE[1], n), rng.uniform(0, SHAPE[0], n)
    render_stars(expected, x, y, 10 ** rng.uniform(3, 5.5, n), 2.2, 3.5)
    truth = np.zeros(SHAPE, bool)
    if trail is not None:
        truth = render_trail(expected, trail, e_per_pixel, fwhm)
    image = rng.poisson(expected).astype(np.float32)
    image += rng.normal(0, READ_NOISE, SHAPE).astype(np.float32)
    if hot_column:
        image[100:, 333] += 60.0  # a hot column is a straight line too, but one pixel wide
    return image, truth


def _find(image):
    sky = np.full(SHAPE, SKY, np.float32)
    rms = np.full(SHAPE, np.sqrt(SKY + READ_NOISE**2), np.float32)
    return find_satellite_trails(image, sky, rms)


@pytest.mark.parametrize(
    ("line", "e_per_pixel"),
    [((-20.0, 80.0, 920.0, 540.0), 3000.0), ((700.0, -20.0, 560.0, 620.0), 300.0)],
)
def test_trail_masked_to_its_width(line, e_per_pixel):
    image, truth = _field(1, line, e_per_pixel)
    found = _find(image)
    assert len(found.trails) == 1
    assert found.mask[truth].mean() >= 0.99
    assert (found.mask & ~truth).sum() <= truth.sum()


def test_no_trail_in_a_field_without_one():
    image, _ = _field(2)
    found = _find(image)
    assert found.trails == [] and not found.mask.any()


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        find_satellite_trails(np.zeros((10, 10)), np.zeros((10, 11)), np.ones((10, 10)))
