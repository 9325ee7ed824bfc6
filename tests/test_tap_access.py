"""Access control by data release on TAP and the SQL browser (issue 16 on every path), on
SQLite and PostgreSQL: TAP answers every caller with the rows of the releases it may read
(publish/vo/tap/access.py), asynchronous jobs are seen by their owner, and the SQL browser,
which cannot filter raw SQL, refuses callers who may not read every release."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import pytest
from astropy.io.votable import parse_single_table
from fastapi.testclient import TestClient

from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.db.access import add_user, grant, issue_token
from surveydm.db.models.calibration import Detection
from surveydm.db.models.raw import Image, Mosaic, ObsSet
from surveydm.db.models.refcat import RefCat, RefCatSource
from surveydm.db.spatial import healpix_index
from surveydm.pipelines.lineage.releases import create_release
from surveydm.pipelines.productions import get_or_create_production
from surveydm.publish.web import create_app

RA, DEC = 150.0, 2.0
#: detections per exposure: proprietary (DR1-internal), public (DR1), raw (no production)
COUNTS = {"proprietary": 3, "public": 2, "raw": 1}


@dataclass
class Sky:
    """Detection ids by exposure kind, production ids, and users' tokens."""

    detections: dict[str, list[int]]
    productions: dict[str, int]
    tokens: dict[str, str]

    def auth(self, who: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}

    def ids(self, *kinds: str) -> list[int]:
        return sorted(i for k in kinds for i in self.detections[k])


@pytest.fixture
def sky(registry: Registry) -> Sky:
    productions = {
        "proprietary": get_or_create_production(registry, "nightly", "dr1-int", {"a": 1}),
        "public": get_or_create_production(registry, "nightly", "dr1", {"a": 2}),
    }
    detections: dict[str, list[int]] = {}
    tokens = {}
    with registry.session() as s:
        obs = ObsSet(obs_set="20261120_001", night=date(2026, 11, 20), instrument="tiny")
        s.add(obs)
        s.flush()
        for n, (kind, count) in enumerate(COUNTS.items()):
            m = Mosaic(obs_set_id=obs.id, kind="red_science", filename=f"{kind}.fits",
                       production_id=productions.get(kind))  # fmt: skip
            s.add(m)
            s.flush()
            img = Image(mosaic_id=m.id, ccd_num=1, filter="r")
            s.add(img)
            s.flush()
            rows = []
            for i in range(count):  # all within 10 arcsec of (RA, DEC)
                ra, dec = RA + (n * 3 + i) / 3600, DEC
                hp = int(healpix_index(ra, dec))
                rows.append(Detection(image_id=img.id, band="r", x=0.0, y=0.0, ra=ra, dec=dec,
                                      healpix=hp, mag=18.0, flags=0))  # fmt: skip
            s.add_all(rows)
            s.flush()
            detections[kind] = [d.id for d in rows]
        cat = RefCat(name="gaia-sim", bands="G")
        s.add(cat)
        s.flush()
        s.add(RefCatSource(refcat_id=cat.id, source_id=1, ra=RA, dec=DEC,
                           healpix=int(healpix_index(RA, DEC))))  # fmt: skip
        create_release(s, "DR1-internal", [productions["proprietary"]], author="ops")
        create_release(s, "DR1", [productions["public"]], author="ops", visibility="public")
        for name, role in (("alice", "reader"), ("bob", "reader"), ("carol", "curator")):
            add_user(s, name, role)
            tokens[name] = issue_token(s, name)
        grant(s, "alice", "DR1-internal", by="ops")
    return Sky(detections, productions, tokens)


@pytest.fixture
def app_for(registry: Registry, settings: Settings, sky: Sky) -> Iterator:
    clients = []

    def make(access: str) -> TestClient:
        c = TestClient(create_app(settings, registry=registry, access=access))
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def _ids(client: TestClient, query: str, who: str | None, sky: Sky) -> list[int]:
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": query}, headers=sky.auth(who))
    assert r.status_code == 200, r.text
    table = parse_single_table(io.BytesIO(r.content), verify="exception").array
    return sorted(int(v) for v in table[table.dtype.names[0]])


CONE = (
    "SELECT id FROM surveydm.detection WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
    f"CIRCLE('ICRS', {RA}, {DEC}, 0.01))"
)


def test_open_installation_hides_proprietary_rows_from_others(app_for, sky: Sky) -> None:
    c = app_for("open")
    every = sky.ids("proprietary", "public", "raw")
    others = sky.ids("public", "raw")
    for who, expected in ((None, others), ("bob", others), ("alice", every), ("carol", every)):
        assert _ids(c, "SELECT id FROM surveydm.detection", who, sky) == expected, who
        assert _ids(c, CONE, who, sky) == expected, who
    joined = (
        "SELECT d.id FROM surveydm.detection AS d JOIN surveydm.image AS i ON i.id = d.image_id "
        "JOIN surveydm.mosaic AS m ON m.id = i.mosaic_id"
    )
    assert _ids(c, joined, None, sky) == others
    assert _ids(c, "SELECT id FROM surveydm.production", None, sky) == [sky.productions["public"]]
    assert len(_ids(c, "SELECT id FROM surveydm.mosaic", None, sky)) == 2  # public and raw
    assert len(_ids(c, "SELECT id FROM surveydm.refcat_source", None, sky)) == 1
    r = c.post("/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM "
                                  "surveydm.detection", "FORMAT": "csv"})  # fmt: skip
    assert r.status_code == 200 and r.text.split() == ["n", str(len(others))]


def test_closed_installation_shows_only_readable_releases(app_for, sky: Sky) -> None:
    c = app_for("closed")
    assert c.get("/tap/capabilities").status_code == 200
    assert _ids(c, "SELECT id FROM surveydm.detection", None, sky) == sky.ids("public")
    assert _ids(c, CONE, "bob", sky) == sky.ids("public")
    assert _ids(c, CONE, "alice", sky) == sky.ids("proprietary", "public")
    assert _ids(c, CONE, "carol", sky) == sky.ids("proprietary", "public", "raw")
    assert _ids(c, "SELECT id FROM surveydm.refcat_source", None, sky) == []
    assert len(_ids(c, "SELECT id FROM surveydm.obs_set", None, sky)) == 1


def _wait(c: TestClient, url: str, who: str | None, sky: Sky) -> str:
    deadline = time.monotonic() + 60
    while (phase := c.get(url + "/phase", headers=sky.auth(who)).text) not in (
        "COMPLETED",
        "ERROR",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return phase


def test_async_jobs_are_filtered_and_seen_by_their_owner(app_for, sky: Sky) -> None:
    c = app_for("open")
    query = {"LANG": "ADQL", "QUERY": "SELECT id FROM surveydm.detection", "PHASE": "RUN"}
    r = c.post("/tap/async", data=query, headers=sky.auth("alice"), follow_redirects=False)
    assert r.status_code == 303
    alices = r.headers["location"].replace("http://testserver", "")
    r = c.post("/tap/async", data=query, follow_redirects=False)
    anons = r.headers["location"].replace("http://testserver", "")
    assert _wait(c, alices, "alice", sky) == "COMPLETED"
    assert _wait(c, anons, None, sky) == "COMPLETED"
    for url, who, expected in (
        (alices, "alice", sky.ids("proprietary", "public", "raw")),
        (anons, None, sky.ids("public", "raw")),
    ):
        res = c.get(url + "/results/result", headers=sky.auth(who))
        table = parse_single_table(io.BytesIO(res.content), verify="exception").array
        assert sorted(int(v) for v in table["id"]) == expected
    # alice's job is hers (and curators'): 404 to others, absent from their job lists
    for path in ("", "/phase", "/results/result", "/parameters"):
        assert c.get(alices + path).status_code == 404
        assert c.get(alices + path, headers=sky.auth("bob")).status_code == 404
    assert c.get(alices + "/results/result", headers=sky.auth("carol")).status_code == 200
    assert c.post(alices + "/phase", data={"PHASE": "ABORT"}).status_code == 404
    assert c.delete(alices, headers=sky.auth("bob")).status_code == 404
    job_id = alices.rsplit("/", 1)[1]
    assert job_id not in c.get("/tap/async").text
    assert job_id in c.get("/tap/async", headers=sky.auth("alice")).text
    assert anons.rsplit("/", 1)[1] in c.get("/tap/async", headers=sky.auth("bob")).text


def test_sql_browser_refuses_callers_who_may_not_read_every_release(app_for, sky: Sky) -> None:
    c = app_for("open")
    q = "SELECT id FROM detection"
    assert c.get("/sql", params={"q": q}).status_code == 401
    assert c.get("/sql/result.csv", params={"q": q}).status_code == 401
    assert c.get("/sql/plot.png", params={"q": q, "x": "id"}).status_code == 401
    assert c.post("/api/sql", json={"query": q}).status_code == 401
    assert c.post("/api/sql", json={"query": q}, headers=sky.auth("bob")).status_code == 403
    r = c.get("/sql/result.csv", params={"q": q}, headers=sky.auth("bob"))
    assert r.status_code == 403 and "TAP" in r.text
    for who in ("alice", "carol"):  # alice reads every release (granted), carol is a curator
        r = c.get("/sql/result.csv", params={"q": q}, headers=sky.auth(who))
        assert r.status_code == 200 and len(r.text.split()) == 1 + sum(COUNTS.values())
