"""Ingest of a night (transfer + register) and the CLI: summaries with mixed bad input, the
same obs set twice, two ingests at once, archive verification, a simulated paucam-mini night
(SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from surveydm.archive import Archive
from surveydm.cli.main import app
from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic, ObsSet
from surveydm.instruments import load_instrument
from surveydm.pipelines.ingest import ingest
from test_ingest_support import make_obs_set, write_manifest, write_raw


def _counts(registry) -> tuple[int, int, int, int]:
    with registry.session(write=False) as s:
        return tuple(  # type: ignore[return-value]
            s.scalar(select(func.count()).select_from(m))
            for m in (ObsSet, ArchiveFile, Mosaic, Image)
        )


def _mixed_night(buffer: Path, tiny: Path) -> None:
    """001: one file with a flipped bit, one without FILTRAY; 002: good; 003: no manifest."""
    inst = load_instrument(tiny)
    d = make_obs_set(buffer, "20261120_001", tiny, manifest=False)
    (d / "20261120_001_0004.fits").unlink()
    write_raw(d / "20261120_001_0004.fits", inst, "science", drop_keyword="FILTRAY")
    kinds = ("bias", "bias", "flat", "science")
    write_manifest(
        d, [(f"20261120_001_{i:04d}.fits", k) for i, k in enumerate(kinds, 1)], instrument=str(tiny)
    )
    bad = d / "20261120_001_0002.fits"
    data = bytearray(bad.read_bytes())
    data[40_000] ^= 0x04
    bad.write_bytes(bytes(data))
    make_obs_set(buffer, "20261120_002", tiny)
    make_obs_set(buffer, "20261120_003", tiny, manifest=False)


def test_ingest_summary_says_what_was_rejected_and_why(registry, tmp_path, tiny):
    buffer = tmp_path / "buffer"
    _mixed_night(buffer, tiny)
    archive = Archive(tmp_path / "archive")
    report = ingest(registry, archive, buffer)
    by = {s.obs_set: s for s in report.summary}
    assert by["20261120_002"].status == "ok"
    assert (by["20261120_002"].archived, by["20261120_002"].registered) == (4, 4)
    s3 = by["20261120_003"]
    assert s3.status == "pending" and "no manifest" in s3.pending_reason
    s1 = by["20261120_001"]
    assert s1.status == "rejected" and s1.archived == 3 and s1.registered == 2
    reasons = {(name, stage): why for name, stage, why in s1.rejected}
    assert "adler32 mismatch" in reasons[("20261120_001_0002.fits", "transfer")]
    assert "FILTRAY" in reasons[("20261120_001_0004.fits", "register")]
    assert not report.ok and report.n_rejected == 2
    assert _counts(registry) == (2, 4 + 5, 6, 6 * 10)


def test_same_obs_set_ingested_twice_duplicates_nothing(registry, tmp_path, tiny):
    buffer = tmp_path / "buffer"
    make_obs_set(buffer, "20261120_001", tiny)
    archive = Archive(tmp_path / "archive")
    first = ingest(registry, archive, buffer)
    assert first.ok and first.summary[0].registered == 4
    counts = _counts(registry)
    second = ingest(registry, archive, buffer)
    (s,) = second.summary
    assert second.ok and s.status == "ok"
    assert (s.copied, s.registered, s.already_registered) == (0, 0, 4)
    assert _counts(registry) == counts == (1, 5, 4, 40)


_INGEST = r"""
import sys, time
from pathlib import Path
from surveydm.archive import Archive
from surveydm.db import Registry
from surveydm.pipelines.ingest import ingest

url, root, buffer, go = sys.argv[1:5]
while not Path(go).exists():
    time.sleep(0.01)
r = ingest(Registry(url), Archive(Path(root), chunk_size=8192), Path(buffer))
print(sum(s.registered for s in r.summary), r.ok)
"""


def test_two_ingests_of_the_same_buffer_at_once(registry, db_url, tmp_path, tiny):
    buffer = tmp_path / "buffer"
    make_obs_set(buffer, "20261120_001", tiny, kinds=("bias", "flat", "science") * 3)
    go = tmp_path / "go"
    args = [sys.executable, "-c", _INGEST, db_url, str(tmp_path / "archive"), str(buffer), str(go)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(1.0)
    go.write_text("go")
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert [ok for _, ok in outs] == ["True", "True"]
    assert sum(int(n) for n, _ in outs) == 9  # each mosaic registered by exactly one of them
    assert _counts(registry) == (1, 10, 9, 90)
    with registry.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 9


# -- CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings, monkeypatch):
    from surveydm.cli.common import console

    monkeypatch.setattr(console, "width", 250)  # no wrapping of names in the tables
    monkeypatch.setenv("SURVEYDM_HOME", str(settings.home))
    monkeypatch.setenv("SURVEYDM_DATABASE_URL", settings.database_url)
    monkeypatch.delenv("SURVEYDM_CONFIG", raising=False)
    return settings


def test_cli_ingest_exit_status_and_verify(cli_env, registry, tmp_path, tiny):
    runner = CliRunner()
    good = tmp_path / "good"
    make_obs_set(good, "20261120_009", tiny)
    res = runner.invoke(app, ["ingest", str(good)])
    assert res.exit_code == 0, res.output
    assert "20261120_009" in res.output and "MiB/s" in res.output

    res = runner.invoke(app, ["transfer", str(good)])
    assert res.exit_code == 0 and "0 file(s)" in res.output
    res = runner.invoke(app, ["register", "--obs-set", "20261120_009"])
    assert res.exit_code == 0 and "20261120_009" in res.output

    res = runner.invoke(app, ["archive", "verify"])
    assert res.exit_code == 0 and "5 file(s) checked" in res.output
    victim = cli_env.archive_root / "raw/2026-11-20/20261120_009/20261120_009_0002.fits"
    os.chmod(victim, 0o644)
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    res = runner.invoke(app, ["archive", "verify", "--obs-set", "20261120_009"])
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [
        "rejected: raw/2026-11-20/20261120_009/20261120_009_0002.fits: corrupt (size or "
        "checksum differs from the registry)"
    ]

    bad = tmp_path / "bad"
    _mixed_night(bad, tiny)
    res = runner.invoke(app, ["ingest", str(bad)])
    assert res.exit_code == 1
    assert "adler32 mismatch" in res.output and "FILTRAY" in res.output
    # every rejected file is named on stderr, one line each, with its stage and reason
    errors = res.stderr.splitlines()
    assert errors and all(line.startswith("rejected: ") for line in errors)
    assert any("(transfer): adler32 mismatch" in line for line in errors)
    assert any("(register):" in line and "FILTRAY" in line for line in errors)

    res = runner.invoke(app, ["ingest", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "not a directory" in " ".join(res.output.split())


# -- a simulated night --------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated_buffer(tmp_path_factory) -> Path:
    simulation = pytest.importorskip("surveydm.simulation")
    buffer = tmp_path_factory.mktemp("sim") / "buffer"
    simulation.simulate_night(
        "paucam-mini", buffer, n_bias=2, n_flats_per_tray=1, n_science=1, n_test=0, n_focus=0
    )
    return buffer


@pytest.mark.slow
def test_ingest_simulated_paucam_mini_night(registry, tmp_path, simulated_buffer):
    inst = load_instrument("paucam-mini")
    archive = Archive(tmp_path / "archive")
    report = ingest(registry, archive, simulated_buffer)
    assert report.ok, report.summary
    (s,) = report.summary
    assert s.archived == s.registered == 5
    with registry.session(write=False) as ses:
        mosaics = ses.scalars(select(Mosaic).order_by(Mosaic.exp_num)).all()
        assert [m.kind for m in mosaics] == ["bias", "bias", "flat", "flat", "science"]
        for m in mosaics:
            amps = [i for i in m.images if i.amp_num is not None]
            ccds = [i for i in m.images if i.amp_num is None]
            assert (len(ccds), len(amps), m.nextend) == (18, 72, 72)
            for img in amps:
                level = inst.ccd(img.ccd_num).amp(img.amp_num).bias_level
                assert abs(img.overscan - level) < 30  # bias drift + glow of the simulator
            if m.kind == "flat":
                assert min(i.mean - i.overscan for i in amps) > 5000
                assert {i.filter for i in ccds} == set(inst.tray(m.filter_tray).filters.values())
            if m.kind == "bias":
                assert max(abs(i.mean - i.overscan) for i in amps) < 30
        sci = mosaics[-1]
        assert sci.ra == pytest.approx(150.1, abs=1.0) and sci.healpix is not None
