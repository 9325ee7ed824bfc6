"""Access control of the portal (publish/web/auth.py, db/access.py) over the synthetic lineage
graph (tests/lineage_support.py), on SQLite and PostgreSQL: users with roles and hashed API
tokens, proprietary and public releases, 401/403 on every kind of path, curator flagging over
the API and through the portal's form (session cookie + CSRF), the ``surveydm users`` CLI and
migration 0010."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from lineage_support import Graph, build_graph
from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.db.access import (
    ANONYMOUS,
    AccessError,
    add_user,
    digest,
    grant,
    issue_token,
    revoke_tokens,
    visible_releases,
)
from surveydm.db.models.access import ApiToken, WebSession
from surveydm.db.models.production import Product
from surveydm.db.models.release import Erratum
from surveydm.db.models.validity import ValidityFlag
from surveydm.pipelines.lineage.releases import create_release
from surveydm.pipelines.productions import add_product, get_or_create_production
from surveydm.publish.web import create_app


@dataclass
class World:
    """The graph, a tile in a public release made from a proprietary image, and tokens."""

    graph: Graph
    tile: int
    public_production: int
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
def world(registry: Registry) -> World:
    graph = build_graph(registry)
    image = graph.nights[0].images[0]
    coadd = get_or_create_production(registry, "coadd", "dr1", {"tiles": "t"})
    tokens = {}
    with registry.session() as s:
        tile = add_product(s, "coadd_tile", data_id={"tile": 7, "band": "r"},
                           production_id=coadd, job_id=None,
                           inputs={"image": [image]}).id  # fmt: skip
        create_release(s, "DR1-internal", [graph.production_id], author="ops")
        create_release(s, "DR1", [coadd], author="ops", visibility="public")
        for name, role in (("alice", "reader"), ("bob", "reader"), ("carol", "curator")):
            add_user(s, name, role)
            tokens[name] = issue_token(s, name)
        grant(s, "alice", "DR1-internal", by="ops")
    return World(graph, tile, coadd, tokens)


def _client(registry: Registry, settings: Settings, access: str = "open") -> TestClient:
    return TestClient(create_app(settings, registry=registry, access=access))


@pytest.fixture
def client(registry: Registry, settings: Settings, world: World) -> Iterator[TestClient]:
    with _client(registry, settings) as c:
        yield c


def test_tokens_are_stored_as_digests_and_visibility_follows_grants(registry, world):
    with registry.session(write=False) as s:
        stored = set(s.scalars(select(ApiToken.digest)))
        assert digest(world.tokens["alice"]) in stored
        assert not stored & set(world.tokens.values())
        alice = visible_releases(s, _user(s, "alice"), open_unreleased=False)
        bob = visible_releases(s, _user(s, "bob"), open_unreleased=False)
        anon = visible_releases(s, ANONYMOUS, open_unreleased=True)
        carol = visible_releases(s, _user(s, "carol"), open_unreleased=False)
        assert alice.names == {"DR1", "DR1-internal"} and not alice.unreleased
        assert bob.names == anon.names == {"DR1"} and anon.unreleased
        assert carol.everything
        image = world.graph.nights[0].images[0]
        raw = world.graph.nights[0].raw_science
        assert bob.readable_products(s, {image, world.tile, raw}) == {world.tile}
        assert anon.readable_products(s, {image, world.tile, raw}) == {world.tile, raw}
        with pytest.raises(AccessError, match="exists"):
            add_user(s, "alice", "reader")
        with pytest.raises(AccessError, match="unknown role"):
            add_user(s, "dave", "root")
        with pytest.raises(AccessError, match="already"):
            grant(s, "alice", "DR1-internal", by="ops")


def _user(s, name):  # noqa: ANN001, ANN202
    from surveydm.db.access import Role, User, get_user

    u = get_user(s, name)
    return User(u.id, u.name, Role(u.role))


def test_release_data_is_filtered_and_proprietary_products_refused(client, world):
    image = world.graph.nights[0].images[0]
    res = client.get(f"/api/lineage/product:{world.tile}")
    assert res.status_code == 200
    doc = res.json()
    assert {n["id"] for n in doc["nodes"]} == {world.tile} and doc["hidden"] >= 1
    assert doc["edges"] == []
    res = client.get(f"/api/lineage/product:{image}")
    assert res.status_code == 401 and res.headers["www-authenticate"].startswith("Bearer")
    assert set(res.json()) == {"detail"}
    res = client.get(f"/api/lineage/product:{image}", headers=world.auth("bob"))
    assert res.status_code == 403 and "may not read" in res.json()["detail"]
    res = client.get(f"/api/lineage/product:{world.tile}", headers=world.auth("alice"))
    nodes = {n["id"] for n in res.json()["nodes"]}
    assert res.status_code == 200 and {world.tile, image, world.graph.nights[0].flat} <= nodes
    assert res.json()["hidden"] == 0
    res = client.get(f"/lineage/product:{image}")
    assert res.status_code == 401 and "log in" in res.text and "master_flat" not in res.text
    anon = {r["id"] for r in client.get("/api/productions").json()}
    assert anon == {world.public_production}
    alice = client.get("/api/productions", headers=world.auth("alice")).json()
    assert {r["id"] for r in alice} == {world.public_production, world.graph.production_id}
    who = client.get("/api/whoami", headers=world.auth("alice")).json()
    assert who["name"] == "alice" and who["releases"] == ["DR1", "DR1-internal"]


def test_bad_credentials_are_401_never_anonymous(client, world, registry):
    for header in ("Bearer nope", "Basic YWxpY2U6eA==", "Bearer "):
        res = client.get("/api/whoami", headers={"Authorization": header})
        assert res.status_code == 401, header
    with registry.session() as s:
        revoke_tokens(s, "bob")
        old = issue_token(s, "alice", days=-1)  # already expired
    assert client.get("/api/whoami", headers=world.auth("bob")).status_code == 401
    assert client.get("/api/whoami", headers={"Authorization": f"Bearer {old}"}).status_code == 401


def test_flagging_needs_a_curator_and_records_who_and_an_erratum(client, world, registry):
    image = world.graph.nights[0].images[0]
    body = {"validity": "bad", "reason": "satellite trail"}
    assert client.post(f"/api/flags/product:{image}", json=body).status_code == 401
    for who in ("alice", "bob"):
        res = client.post(f"/api/flags/product:{image}", json=body, headers=world.auth(who))
        assert res.status_code == 403, who
    with registry.session(write=False) as s:
        assert s.get(Product, image).validity == "ok"
        assert s.scalar(select(func.count()).select_from(ValidityFlag)) == 0
    res = client.post(f"/api/flags/product:{image}", json=body, headers=world.auth("carol"))
    assert res.status_code == 200, res.text
    assert res.json()["author"] == "carol" and res.json()["errata"] == ["DR1-internal"]
    res = client.post(f"/api/flags/product:{image}", json={"validity": "ok"},
                      headers=world.auth("carol"))  # fmt: skip
    assert res.status_code == 200
    res = client.post(f"/api/flags/product:{image}", json={"undo": True},
                      headers=world.auth("carol"))  # fmt: skip
    assert res.status_code == 200 and res.json()["validity"] == "bad"
    res = client.post(f"/api/flags/product:{image}", json={"validity": "qualified"},
                      headers=world.auth("carol"))  # fmt: skip
    assert res.status_code == 200
    res = client.post(f"/api/flags/product:{image}", json={"validity": "qualified"},
                      headers=world.auth("carol"))  # fmt: skip
    assert res.status_code == 400 and "already qualified" in res.json()["detail"]
    res = client.post(f"/api/flags/product:{image}", json={"validity": "bad"},
                      headers=world.auth("carol"))  # fmt: skip
    assert res.status_code == 400 and "say why" in res.json()["detail"]
    with registry.session(write=False) as s:
        assert s.get(Product, image).validity == "qualified"
        flags = s.scalars(select(ValidityFlag).order_by(ValidityFlag.id)).all()
        assert [f.validity for f in flags] == ["bad", "ok", "bad", "qualified"]
        assert {f.author for f in flags} == {"carol"}
        assert flags[0].reason == "satellite trail" and flags[2].undoes_id == flags[1].id
        assert s.scalar(select(func.count()).select_from(Erratum)) == 4


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


def test_portal_login_cookie_and_csrf_protected_flag_form(client, world, registry):
    flat = world.graph.nights[0].flat
    res = client.post("/login", data={"name": "carol", "token": "wrong"})
    assert res.status_code == 401 and "surveydm_session" not in res.cookies
    res = client.post("/login", data={"name": "bob", "token": world.tokens["carol"]})
    assert res.status_code == 401
    login = {"name": "carol", "token": world.tokens["carol"], "next": "//evil.example/x"}
    res = client.post("/login", data=login, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/"
    cookie = res.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    with registry.session(write=False) as s:
        stored = s.scalar(select(WebSession.digest))
    assert stored == digest(client.cookies["surveydm_session"])
    page = client.get(f"/lineage/product:{flat}")
    assert page.status_code == 200 and 'id="flag-form"' in page.text and "carol" in page.text
    form = {"action": "set", "validity": "bad", "reason": "dust donut"}
    res = client.post(f"/lineage/product:{flat}/flag", data=form, follow_redirects=False)
    assert res.status_code == 403 and "CSRF" in res.text
    res = client.post(f"/lineage/product:{flat}/flag", data={**form, "csrf_token": "0" * 64},
                      follow_redirects=False)  # fmt: skip
    assert res.status_code == 403
    form["csrf_token"] = _csrf(page.text)
    res = client.post(f"/lineage/product:{flat}/flag", data=form, follow_redirects=False)
    assert res.status_code == 303
    page = client.get(res.headers["location"])
    assert 'id="root-validity" class="validity-bad"' in page.text and "dust donut" in page.text
    res = client.post("/logout", data={"csrf_token": _csrf(page.text)}, follow_redirects=False)
    assert res.status_code == 303
    with registry.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(WebSession)) == 0
        assert s.get(Product, flat).validity == "bad"
    page = client.get(f"/lineage/product:{flat}")  # logged out: 401 (proprietary release)
    assert page.status_code == 401


def test_closed_installation_keeps_unreleased_data_and_queries_from_anonymous(
    registry, settings, world
):
    raw = world.graph.nights[0].raw_science
    with _client(registry, settings, "closed") as c:
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/whoami").json()["access"] == "closed"
        assert c.get("/api/jobs").status_code == 401
        assert c.get("/api/jobs", headers=world.auth("alice")).status_code == 403
        assert c.get("/api/jobs", headers=world.auth("carol")).status_code == 200
        assert c.get(f"/api/lineage/product:{raw}").status_code == 401
        assert c.get(f"/api/lineage/product:{world.tile}").status_code == 200
        assert c.get("/api/archive").json()["entries"] == []
        assert c.get("/api/archive/files/1").status_code == 401
        assert c.get("/api/archive/files/1", headers=world.auth("carol")).status_code == 200
        assert c.post("/api/sql", json={"query": "SELECT 1"}).status_code == 401
        res = c.post("/api/sql", json={"query": "SELECT 1"}, headers=world.auth("alice"))
        assert res.status_code == 403
        assert c.get("/tap/capabilities").status_code == 200  # TAP filters rows instead
    with _client(registry, settings, "open") as c:  # a proprietary release exists: no SQL
        assert c.get("/api/jobs").status_code == 200
        assert c.post("/api/sql", json={"query": "SELECT 1"}).status_code == 401
        res = c.post("/api/sql", json={"query": "SELECT 1"}, headers=world.auth("carol"))
        assert res.status_code == 200


@pytest.fixture
def cli(registry, tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("SURVEYDM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SURVEYDM_DATABASE_URL", registry.url)
    monkeypatch.delenv("SURVEYDM_CONFIG", raising=False)
    from surveydm.cli.main import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_users_cli_adds_issues_grants_and_lists(registry, world, cli, settings):
    res = cli("users", "add", "dave", "--role", "curator")
    assert res.exit_code == 0, res.output
    token = res.output.strip().splitlines()[-1]
    assert token.startswith("sdm_")
    res = cli("users", "add", "dave")
    assert res.exit_code == 2 and "exists" in res.output and "Traceback" not in res.output
    assert cli("users", "grant", "bob", "DR1-internal").exit_code == 0
    res = cli("users", "grant", "bob", "DR9")
    assert res.exit_code == 2 and "no data release" in res.output
    res = cli("users", "list")
    assert res.exit_code == 0 and "dave" in res.output and "DR1-internal" in res.output
    image = world.graph.nights[0].images[0]
    with _client(registry, settings) as c:
        res = c.get(f"/api/lineage/product:{image}", headers=world.auth("bob"))
        assert res.status_code == 200
        assert cli("users", "revoke", "bob", "DR1-internal").exit_code == 0
        res = c.get(f"/api/lineage/product:{image}", headers=world.auth("bob"))
        assert res.status_code == 403
        ok = c.get("/api/jobs/999999", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 404
        assert cli("users", "disable", "dave").exit_code == 0
        res = c.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
        assert res.status_code == 401
    assert cli("release", "publish", "DR1-internal").exit_code == 0
    with registry.session(write=False) as s:
        assert visible_releases(s, ANONYMOUS, open_unreleased=False).names == {
            "DR1", "DR1-internal"}  # fmt: skip


def test_0010_keeps_releases_readable_and_adds_the_access_tables(db_url):
    from alembic import command
    from sqlalchemy import create_engine, inspect, text

    from surveydm.db.migrate import alembic_config, current, head, upgrade

    command.downgrade(alembic_config(db_url), "0009")
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO data_release (name, notes, author, created) "
                              "VALUES ('DR0', '', 'ops', CURRENT_TIMESTAMP)"))  # fmt: skip
        upgrade(db_url)
        assert current(db_url) == head()
        with engine.begin() as conn:
            assert conn.execute(text("SELECT name, visibility FROM data_release")).all() == [
                ("DR0", "public")]  # fmt: skip
        tables = set(inspect(engine).get_table_names())
        assert {"portal_user", "api_token", "web_session", "release_access"} <= tables
    finally:
        engine.dispose()
