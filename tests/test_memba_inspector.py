"""The aperture inspector over memba results, on SQLite and PostgreSQL: search by id, position
and flux cut, an object's bands, the measurements of one band, the pictures and the JSON twin,
and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from memba_support import memba_fixture
from surveydm.publish.web import create_app


@pytest.fixture
def client(settings, registry, tmp_path):  # noqa: ANN001, ANN201
    truth = memba_fixture(settings, registry, tmp_path)
    with TestClient(create_app(settings, registry=registry)) as c:
        c.truth = truth
        yield c


def test_inspector_finds_objects_and_shows_their_measurements(client):  # noqa: ANN001
    truth = client.truth
    rid, ra, dec = int(truth.ref_id[3]), float(truth.ra[3]), float(truth.dec[3])
    page = client.get("/inspector", params={"ra": ra, "dec": dec, "radius": 2})
    assert page.status_code == 200 and f"ref_id={rid}" in page.text
    assert page.text.count('href="/inspector?ref_id=') == 1  # only that object within 2"
    bright = float(np.sort(truth.flux["NB455"])[-3])
    cut = client.get("/inspector", params={"band": "NB455", "min_flux": 0.9 * bright})
    assert cut.text.count('href="/inspector?ref_id=') == 3
    obj = client.get("/inspector", params={"ref_id": rid, "band": "NB455"})
    assert obj.status_code == 200
    assert 'id="inspector-bands"' in obj.text and obj.text.count('class="cutout"') == 2
    doc = client.get(f"/api/inspector/{rid}").json()
    assert [b["band"] for b in doc["bands"]] == ["NB455", "r"]  # by wavelength
    nb = doc["bands"][0]
    assert nb["n_coadd"] == 2 and nb["flux"] == pytest.approx(truth.flux["NB455"][3], rel=0.05)
    forced = doc["measurements"]["NB455"][0]
    png = client.get(f"/inspector/measurement/{forced['id']}.png")
    sed = client.get(f"/inspector/{rid}/fluxes.png")
    for r in (png, sed):
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspector_rejects_bad_input_clearly(client):  # noqa: ANN001
    r = client.get("/inspector", params={"ref_id": "abc"})
    assert r.status_code == 400 and "ref_id must be a number" in r.text
    assert client.get("/api/inspector/123456789").status_code == 404
    assert client.get("/inspector/measurement/987654.png").status_code == 404
    empty = client.get("/inspector", params={"ref_id": 123456789})
    assert empty.status_code == 200 and "no reference source matches" in empty.text
