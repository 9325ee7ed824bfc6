"""Settings resolution, registry sessions on both engines, and the HEALPix index."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from surveydm.config import ConfigError, load_settings
from surveydm.db.models import Production
from surveydm.db.spatial import cone_ranges, healpix_index


def test_settings_file_then_environment(tmp_path):
    (tmp_path / "surveydm.toml").write_text('release = "dr1"\ndatabase_url = "sqlite:///x.db"\n')
    env = {"SURVEYDM_HOME": str(tmp_path), "SURVEYDM_RELEASE": "dr2"}
    s = load_settings(env)
    assert s.home == tmp_path
    assert s.release == "dr2"  # environment overrides the file
    assert s.database_url == "sqlite:///x.db"
    assert s.archive_root == tmp_path / "archive"


def test_settings_default_sqlite_in_home(tmp_path):
    s = load_settings({"SURVEYDM_HOME": str(tmp_path)})
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'registry.sqlite'}"


def test_settings_unknown_key_is_named(tmp_path):
    (tmp_path / "surveydm.toml").write_text("relase = 'x'\n")
    with pytest.raises(ConfigError, match="relase"):
        load_settings({"SURVEYDM_HOME": str(tmp_path)})


def test_write_session_commits_and_read_session_does_not(registry):
    with registry.session() as s:
        s.add(Production(pipeline="nightly", release="r1", software_version="0", config_hash="a"))
    with registry.session(write=False) as s:
        s.add(Production(pipeline="nightly", release="r2", software_version="0", config_hash="b"))
    with registry.session(write=False) as s:
        assert s.scalars(select(Production.release)).all() == ["r1"]


def test_write_session_rolls_back_on_error(registry):
    with pytest.raises(RuntimeError), registry.session() as s:
        s.add(Production(pipeline="nightly", release="r1", software_version="0", config_hash="a"))
        s.flush()
        raise RuntimeError("boom")
    with registry.session(write=False) as s:
        assert s.scalars(select(Production)).all() == []


def test_cone_ranges_cover_points_in_cone():
    rng = np.random.default_rng(1)
    ra = 150 + rng.uniform(-0.2, 0.2, 2000)
    dec = 2 + rng.uniform(-0.2, 0.2, 2000)
    idx = healpix_index(ra, dec)
    sep = np.hypot((ra - 150) * np.cos(np.radians(2)), dec - 2)
    inside = sep < 0.1
    ranges = cone_ranges(150.0, 2.0, 0.1)
    covered = np.zeros_like(inside)
    for lo, hi in ranges:
        covered |= (idx >= lo) & (idx <= hi)
    assert inside.sum() > 100
    assert covered[inside].all()
    assert covered.sum() < 4 * inside.sum()  # the cover is not the whole sky
