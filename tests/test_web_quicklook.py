"""Quick-look image helpers: binning, stretch, focal-plane placement from the WCS."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from matplotlib.image import imread

from surveydm.publish.web.quicklook import (
    CcdFile,
    QuickLookError,
    auto_factor,
    bin_image,
    ccd_png,
    mosaic_png,
    stretch,
)


def test_bin_image_block_means() -> None:
    data = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
    binned = bin_image(data, 2)
    assert binned.shape == (3, 4) and binned.dtype == np.float32
    assert binned[0, 0] == pytest.approx(np.mean([0, 1, 8, 9]))
    assert bin_image(data, 4).shape == (1, 2)  # edges not filling a block are dropped
    data[0, 0] = np.nan
    assert bin_image(data, 2)[0, 0] == pytest.approx(np.mean([1, 8, 9]))
    with pytest.raises(QuickLookError, match="larger than the image"):
        bin_image(data, 7)
    with pytest.raises(QuickLookError, match="1..64"):
        bin_image(data, 0)


def test_stretch_range_and_auto_factor() -> None:
    rng = np.random.default_rng(1)
    img = rng.normal(100, 5, (50, 50)).astype(np.float32)
    img[25, 25] = 1e6
    out = stretch(img)
    assert out.min() >= 0 and out.max() <= 1 and out[25, 25] == 1
    assert 0.05 < np.median(out) < 0.95
    assert np.all(stretch(np.full((4, 4), np.nan, np.float32)) == 0)
    assert auto_factor((4096, 2048), 1, 500) == 9
    assert auto_factor((100, 100), 1, 500) == 1


def _write_ccd(path: Path, ra: float, dec: float, value: float) -> None:
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = ra, dec
    h["CRPIX1"], h["CRPIX2"] = 50.5, 40.5
    h["CD1_1"], h["CD2_2"] = -0.5 / 3600, 0.5 / 3600
    rng = np.random.default_rng(3)
    data = (rng.normal(100, 5, (80, 100)) * value).astype(np.float32)  # value 0: all zero
    fits.PrimaryHDU(data=data, header=h).writeto(path)


def test_mosaic_places_ccds_by_wcs(tmp_path: Path) -> None:
    # Two CCDs side by side in RA: east (larger RA) must land on the left.
    east, west = tmp_path / "east.fits", tmp_path / "west.fits"
    step = 110 * 0.5 / 3600  # 110 pixels apart: a 10-pixel gap
    _write_ccd(east, 10.0 + step / 2, 0.0, 1.0)  # sky noise: mid-grey after the stretch
    _write_ccd(west, 10.0 - step / 2, 0.0, np.nan)  # no data: black
    png = mosaic_png([CcdFile(1, east), CcdFile(2, west)], factor=1)
    img = imread(io.BytesIO(png), format="png")[..., 0]
    h, w = img.shape
    assert w == pytest.approx(210, abs=2) and h == pytest.approx(80, abs=2)
    assert img[:, :90].mean() > 0.2 and img[:, -90:].max() == 0  # east CCD on the left
    assert img[:, 101:109].max() == img.min()  # the gap between the CCDs is empty
    single = imread(io.BytesIO(ccd_png(east, 2)), format="png")
    assert single.shape[:2] == (40, 50)
    (tmp_path / "bad.fits").write_bytes(b"not a fits file")
    with pytest.raises(QuickLookError, match="cannot read"):
        ccd_png(tmp_path / "bad.fits")
    with pytest.raises(QuickLookError, match="no reduced CCD"):
        mosaic_png([])


def test_mosaic_turns_rotated_ccds(tmp_path: Path) -> None:
    """A CCD whose pixel x runs north (rotated by 90 degrees on the focal plane) is shown
    transposed; a row of bright pixels along its x axis becomes a vertical line."""
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 10.0, 0.0
    h["CRPIX1"], h["CRPIX2"] = 50.5, 40.5
    s = 0.5 / 3600
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = 0.0, -s, s, 0.0  # x -> north, y -> west
    rng = np.random.default_rng(5)
    data = rng.normal(100, 5, (80, 100)).astype(np.float32)
    data[10, :] = 1e4  # a bright row along pixel x
    path = tmp_path / "rot.fits"
    fits.PrimaryHDU(data=data, header=h).writeto(path)
    img = imread(io.BytesIO(mosaic_png([CcdFile(1, path)], factor=1)), format="png")[..., 0]
    assert img.shape == (100, 80)
    column = int(np.argmax(img.mean(axis=0)))
    assert img[:, column].min() == pytest.approx(1.0)  # the bright row is now a full column
