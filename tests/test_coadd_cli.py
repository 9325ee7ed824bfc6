"""``surveydm tiles`` and ``surveydm coadd`` from the command line, on both engines: tilings
registered and listed, clear one-line errors (exit 2) for bad input, and a co-add run whose
tile has no input ends cleanly with nothing recorded."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from surveydm.cli.main import app
from surveydm.db.models.tiles import Tile, TileImage


@pytest.fixture
def env(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SURVEYDM_HOME", str(tmp_path))
    monkeypatch.setenv("SURVEYDM_DATABASE_URL", db_url)
    return db_url


def test_tiles_define_list_and_errors(env, registry):
    runner = CliRunner()
    res = runner.invoke(app, ["tiles", "define", "mini", "--ra", "10,10.3", "--dec", "-0.1,0.1"])
    assert res.exit_code == 0, res.output
    with registry.session(write=False) as s:
        names = s.scalars(select(Tile.name)).all()
    assert len(names) >= 3 and f"{len(names)} tile(s) added" in res.output
    res = runner.invoke(app, ["tiles", "list", "--tiling", "mini"])
    assert res.exit_code == 0 and names[0] in res.output
    # errors: one line, exit 2, nothing changed
    res = runner.invoke(
        app, ["tiles", "define", "mini", "--size", "1.4", "--ra", "0,1", "--dec", "0,1"]
    )
    assert res.exit_code == 2 and "exists with" in res.output
    res = runner.invoke(app, ["tiles", "define", "other"])
    assert res.exit_code == 2 and "no reduced image to cover" in res.output
    res = runner.invoke(app, ["tiles", "define", "x", "--ra", "a,b", "--dec", "0,1"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["coadd", "--tile", "nope"])
    assert res.exit_code == 2 and "unknown tile(s): nope" in res.output
    assert "Traceback" not in res.output


def test_coadd_without_inputs_runs_and_records_nothing(env, registry):
    runner = CliRunner()
    assert (
        runner.invoke(
            app, ["tiles", "define", "mini", "--ra", "10,10.05", "--dec", "0,0.01"]
        ).exit_code
        == 0
    )
    res = runner.invoke(app, ["coadd", "--tiling", "mini"])
    assert res.exit_code == 0, res.output
    assert "coadd: 0" not in res.output  # the coadd job itself is not a sub-job
    with registry.session(write=False) as s:
        assert s.scalars(select(TileImage)).all() == []
