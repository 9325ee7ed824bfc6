"""Built-in instrument descriptions, validation errors and the focal-plane WCS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from surveydm.instruments import InstrumentError, builtin_instruments, load_instrument
from surveydm.instruments.geometry import (
    ccd_wcs,
    distort_radius,
    field_radius_deg,
    focal_plane_footprint,
    true_tangent_plane,
    undistort_radius,
)
from surveydm.instruments.loader import DATA_DIR


def test_builtins_load_and_have_expected_structure() -> None:
    assert {"paucam", "paucam-mini", "t80cam", "t80cam-mini"} <= set(builtin_instruments())
    pau = load_instrument("paucam")
    mini = load_instrument("paucam-mini")
    assert len(pau.ccds) == 18 and pau.n_amplifiers == 72
    assert len(mini.ccds) == 18 and mini.n_amplifiers == 72
    assert pau.ccd(1).shape == (4096, 2048) and mini.ccd(1).shape == (1364, 682)
    nb = [f for f in pau.filters if f.kind == "narrow"]
    assert [f.name for f in nb] == [f"NB{w}" for w in range(455, 850, 10)]
    assert {f.name for f in pau.filters if f.kind == "broad"} == set("ugrizY")
    nb_trays = [t for t in pau.trays if t.name.startswith("NB")]
    assert len(nb_trays) == 5 and len(pau.trays) == 11
    covered = set()
    for tray in nb_trays:
        inner = {tray.filters[c] for c in range(1, 9)}
        assert all(f.startswith("NB") for f in inner) and len(inner) == 8
        assert all(not tray.filters[c].startswith("NB") for c in range(9, 19))
        covered |= inner
    assert len(covered) == 40
    for amp in (a for c in pau.ccds for a in c.amplifiers):
        assert 3.0 <= amp.gain <= 4.0 and 4.0 <= amp.read_noise <= 6.0
    # Same footprint: the mini camera's CCDs sit at the same place with the same angular size.
    for a, b in zip(pau.ccds, mini.ccds, strict=True):
        assert a.center_mm == b.center_mm
        size_a = np.array(a.shape) * pau.pixel_scale_arcsec
        size_b = np.array(b.shape) * mini.pixel_scale_arcsec
        np.testing.assert_allclose(size_a, size_b, rtol=0.002)
    t80 = load_instrument("t80cam")
    assert t80.n_amplifiers == 16 and len(t80.filters) == 12
    assert t80.tray("J0660").filters == {1: "J0660"}
    assert t80.header.filter_tray.keyword == "FILTER"
    t80m = load_instrument("t80cam-mini")
    side = t80m.ccd(1).shape[0] * t80m.pixel_scale_arcsec / 3600
    assert side == pytest.approx(t80.ccd(1).shape[0] * t80.pixel_scale_arcsec / 3600)
    assert 1.3 < side < 1.5


def test_obstype_classification() -> None:
    pau = load_instrument("paucam")
    assert pau.kind_of("zero") == "bias"
    assert pau.kind_of(" DOMEFLAT ") == "flat"
    with pytest.raises(KeyError, match="unknown observation type"):
        pau.kind_of("SPECTRUM")


def _write_modified(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((DATA_DIR / "t80cam-mini.yaml").read_text())
    edit(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_malformed_file_names_the_field(tmp_path: Path) -> None:
    def negative_gain(d):
        d["ccds"][0]["amplifiers"][2]["gain"] = -1.0

    with pytest.raises(InstrumentError, match=r"ccds\.0\.amplifiers\.2\.gain"):
        load_instrument(_write_modified(tmp_path, negative_gain))

    def missing_scale(d):
        del d["pixel_scale_arcsec"]

    with pytest.raises(InstrumentError, match="pixel_scale_arcsec"):
        load_instrument(_write_modified(tmp_path, missing_scale))

    def bad_section(d):
        d["ccds"][0]["amplifiers"][0]["biassec"] = "[1:10;1:20]"

    with pytest.raises(InstrumentError, match=r"biassec"):
        load_instrument(_write_modified(tmp_path, bad_section))

    def unknown_filter(d):
        d["trays"][0]["filters"][1] = "Halpha"

    with pytest.raises(InstrumentError, match="Halpha"):
        load_instrument(_write_modified(tmp_path, unknown_filter))

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: [unclosed\n")
    with pytest.raises(InstrumentError, match="not valid YAML"):
        load_instrument(bad_yaml)
    with pytest.raises(InstrumentError, match="unknown instrument"):
        load_instrument("no-such-camera")


def test_radial_distortion_inverse() -> None:
    r = np.linspace(0, 1.0, 50)
    radial = [4e-3, 1e-4]
    np.testing.assert_allclose(undistort_radius(distort_radius(r, radial), radial), r, atol=1e-13)


@pytest.mark.parametrize("name", ["paucam-mini", "paucam", "t80cam"])
def test_tan_sip_matches_radial_model_and_round_trips(name: str) -> None:
    inst = load_instrument(name)
    ra0, dec0, rot = 150.1, 2.2, 0.4
    tangent = WCS(naxis=2)
    tangent.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    tangent.wcs.crval = [ra0, dec0]
    tangent.wcs.crpix = [0.0, 0.0]
    tangent.wcs.cdelt = [1.0, 1.0]
    max_distortion = 0.0
    for ccd in inst.ccds:
        ny, nx = ccd.shape
        w = ccd_wcs(inst, ccd.num, ra0, dec0, rotation_deg=rot)
        assert w.sip is not None and w.pixel_shape == (nx, ny)
        x, y = np.meshgrid(np.linspace(0, nx - 1, 9), np.linspace(0, ny - 1, 9))
        x, y = x.ravel(), y.ravel()
        ra, dec = w.all_pix2world(x, y, 0)
        xi, eta = true_tangent_plane(inst, ccd.num, x, y, rot)
        ra_t, dec_t = tangent.wcs_pix2world(xi, eta, 1)
        sep = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(ra_t, dec_t, unit="deg"))
        assert sep.arcsec.max() < 0.01
        xb, yb = w.all_world2pix(ra, dec, 0)
        assert np.abs(xb - x).max() < 1e-3 and np.abs(yb - y).max() < 1e-3
        plain = ccd_wcs(inst, ccd.num, ra0, dec0, rotation_deg=rot, distortion=False)
        assert plain.sip is None
        ra_p, dec_p = plain.all_pix2world(x, y, 0)
        sep_p = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(ra_p, dec_p, unit="deg"))
        max_distortion = max(max_distortion, sep_p.arcsec.max())
    # "a few arcsec at the field edge"
    assert 1.0 < max_distortion < 8.0


def test_footprint_orientation_and_size() -> None:
    inst = load_instrument("paucam-mini")
    fp = focal_plane_footprint(inst, 150.0, 2.0)
    assert set(fp) == set(range(1, 19))
    corners = np.concatenate(list(fp.values()))
    c = SkyCoord(corners[:, 0], corners[:, 1], unit="deg")
    radius = c.separation(SkyCoord(150.0, 2.0, unit="deg")).deg.max()
    assert radius == pytest.approx(field_radius_deg(inst), rel=0.02)
    # Zero rotation: north up (+y), east left (-x): RA falls with x, Dec rises with y.
    w = ccd_wcs(inst, 1, 150.0, 2.0)
    (ra0, dec0), (ra1, _), (_, dec2) = w.all_pix2world([[0, 0], [100, 0], [0, 100]], 0)
    assert ra1 < ra0 and dec2 > dec0
