"""Transfer from the observatory buffer: manifests, readiness, idempotence, bad input, failing
disks, killed and concurrent transfers (SQLite and PostgreSQL)."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from surveydm.archive import Archive, file_checksums
from surveydm.db.models.raw import ArchiveFile, ObsSet, Project
from surveydm.pipelines.manifest import Manifest, ManifestError
from surveydm.pipelines.transfer import transfer_buffer
from surveydm.pipelines.verify import verify_archive
from test_ingest_support import adler32, make_obs_set, write_manifest

OBS = "20261120_001"
RAW_DIR = f"raw/2026-11-20/{OBS}"


@pytest.fixture
def buffer(tmp_path, tiny) -> Path:
    make_obs_set(tmp_path / "buffer", OBS, tiny)
    return tmp_path / "buffer"


@pytest.fixture
def archive(tmp_path) -> Archive:
    return Archive(tmp_path / "archive", chunk_size=16 * 1024)


def _rows(registry) -> dict[str, ArchiveFile]:
    with registry.session(write=False) as s:
        return {r.path: r for r in s.scalars(select(ArchiveFile)).all()}


def _assert_db_matches_disk(registry, archive: Archive) -> None:
    """Every archive_file row has its file with those bytes, and every archived raw file has
    its row; no temporary file is left."""
    rows = _rows(registry)
    on_disk = {
        str(p.relative_to(archive.root)) for p in (archive.root / "raw").rglob("*") if p.is_file()
    }
    assert [p for p in on_disk if "/.tmp." in p] == []
    assert set(rows) == on_disk
    for path, row in rows.items():
        sums = file_checksums(archive.abspath(path))
        assert (sums.size, sums.adler32) == (row.size, row.adler32)
        assert row.md5 in (None, sums.md5)  # recorded at the first full read


# -- manifests ----------------------------------------------------------------------------

GOOD = """
obs_set: "20261120_001"
night: 2026-11-20
instrument: paucam-mini
operator: op
project: PAUS
mjd_start: 61000.0
files:
  - {name: a.fits, kind: bias, size: 10, adler32: "0001abcd"}
"""


def test_manifest_parses_and_normalises():
    m = Manifest.parse(GOOD)
    assert m.obs_set == "20261120_001" and m.night.isoformat() == "2026-11-20"
    assert m.files[0].adler32 == "0001abcd" and m.files[0].size == 10
    assert m.raw["night"] == "2026-11-20"  # JSON-ready


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("obs_set: [unclosed", "not valid YAML"),
        ("- just\n- a list", "mapping at the top level"),
        (GOOD.replace("night: 2026-11-20", "night: tomorrow"), "night 'tomorrow'"),
        (GOOD.replace("instrument: paucam-mini", ""), "missing field 'instrument'"),
        (GOOD.replace('adler32: "0001abcd"', "adler32: zz"), "files\\[0\\].*adler32"),
        (GOOD.replace("size: 10", "size: -1"), "files\\[0\\].*size"),
        (GOOD.replace("kind: bias", "kind: sky"), "kind 'sky'"),
        (GOOD.replace("name: a.fits", "name: ../a.fits"), "bad file name"),
        (GOOD + '  - {name: a.fits, kind: bias, size: 1, adler32: "1"}\n', "listed twice"),
    ],
)
def test_manifest_errors_name_the_problem(text, message):
    with pytest.raises(ManifestError, match=message):
        Manifest.parse(text)


# -- good path ----------------------------------------------------------------------------


def test_transfer_archives_records_and_is_idempotent(registry, archive, buffer):
    report = transfer_buffer(registry, archive, buffer)
    (o,) = report.obs_sets
    assert o.status == "done" and report.ok
    assert report.files_copied == 5  # 4 raw files + the manifest
    assert report.bytes_copied == sum(p.stat().st_size for p in (buffer / OBS).iterdir())
    assert report.mib_per_s > 0
    for p in (buffer / OBS).iterdir():
        assert archive.abspath(f"{RAW_DIR}/{p.name}").read_bytes() == p.read_bytes()
        assert p.exists()  # the buffer is left alone
    _assert_db_matches_disk(registry, archive)
    with registry.session(write=False) as s:
        obs = s.scalars(select(ObsSet)).one()
        assert obs.obs_set == OBS and obs.night.isoformat() == "2026-11-20"
        assert obs.operator == "tester" and obs.n_files == 4
        assert obs.manifest["files"][0]["adler32"] == adler32(buffer / OBS / f"{OBS}_0001.fits")
        assert s.scalars(select(Project.name)).one() == "PAUS"
        assert obs.project_id is not None
        assert "4" not in (obs.log or "") or "archived" in obs.log

    mtimes = {p: p.stat().st_mtime_ns for p in archive.root.rglob("*") if p.is_file()}
    again = transfer_buffer(registry, archive, buffer)
    assert again.files_copied == 0 and again.bytes_copied == 0
    assert again.obs_sets[0].status == "done"
    assert again.obs_sets[0].count("reused") == 5
    assert {p: p.stat().st_mtime_ns for p in archive.root.rglob("*") if p.is_file()} == mtimes
    with registry.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(ArchiveFile)) == 5
        assert s.scalar(select(func.count()).select_from(ObsSet)) == 1


def test_set_without_manifest_is_pending(registry, archive, tmp_path, tiny):
    make_obs_set(tmp_path / "buf", OBS, tiny, manifest=False)
    (o,) = transfer_buffer(registry, archive, tmp_path / "buf").obs_sets
    assert o.status == "pending" and "no manifest" in o.reason
    assert _rows(registry) == {}
    assert not (archive.root / "raw").exists()


def test_file_still_growing_keeps_the_set_pending(registry, archive, buffer):
    f = buffer / OBS / f"{OBS}_0003.fits"
    f.write_bytes(f.read_bytes()[:5000])  # the manifest lists the full size; written just now
    (o,) = transfer_buffer(registry, archive, buffer, settle_seconds=3600).obs_sets
    assert o.status == "pending" and f.name in o.reason and "growing" in o.reason
    assert _rows(registry) == {}


# -- bad input ----------------------------------------------------------------------------


def _quarantined(archive: Archive, name: str) -> list[Path]:
    return sorted((archive.root / "quarantine").glob(f"*_{OBS}/{name}*"))


def test_checksum_mismatch_is_quarantined_and_the_rest_archived(registry, archive, buffer):
    bad = buffer / OBS / f"{OBS}_0002.fits"
    data = bytearray(bad.read_bytes())
    data[50_000] ^= 0x01  # one flipped bit after the manifest was written
    bad.write_bytes(bytes(data))
    (o,) = transfer_buffer(registry, archive, buffer).obs_sets
    assert o.status == "partial"
    (rej,) = o.rejected
    assert rej.name == bad.name and "adler32 mismatch" in rej.reason
    assert rej.quarantine.read_bytes() == bytes(data)
    assert "adler32 mismatch" in rej.quarantine.with_name(bad.name + ".reason.txt").read_text()
    assert o.count("archived") == 4  # 3 good raw files + manifest
    assert f"{RAW_DIR}/{bad.name}" not in _rows(registry)
    _assert_db_matches_disk(registry, archive)
    with registry.session(write=False) as s:
        assert "adler32 mismatch" in s.scalars(select(ObsSet.log)).one()
    # re-running does not quarantine it twice
    transfer_buffer(registry, archive, buffer)
    assert len(_quarantined(archive, bad.name)) == 2  # the file and its reason


def test_truncated_file_quiet_for_long_is_rejected(registry, archive, buffer):
    bad = buffer / OBS / f"{OBS}_0004.fits"
    bad.write_bytes(bad.read_bytes()[:20_000])
    old = time.time() - 7200
    os.utime(bad, (old, old))
    (o,) = transfer_buffer(registry, archive, buffer, settle_seconds=3600).obs_sets
    assert o.status == "partial"
    (rej,) = o.rejected
    assert rej.name == bad.name and "truncated: 20000 bytes" in rej.reason
    assert rej.quarantine.stat().st_size == 20_000
    assert o.count("archived") == 4
    _assert_db_matches_disk(registry, archive)


def test_listed_but_missing_file_is_reported(registry, archive, buffer):
    gone = buffer / OBS / f"{OBS}_0001.fits"
    gone.unlink()
    (o,) = transfer_buffer(registry, archive, buffer).obs_sets
    (rej,) = o.rejected
    assert rej.name == gone.name and "missing" in rej.reason
    assert rej.quarantine.name == gone.name + ".reason.txt"
    assert "listed in the manifest but missing" in rej.quarantine.read_text()
    assert o.count("archived") == 4
    _assert_db_matches_disk(registry, archive)


def test_file_present_but_not_listed_is_quarantined(registry, archive, buffer):
    extra = buffer / OBS / "stray.fits"
    extra.write_bytes(b"not in the manifest" * 100)
    (o,) = transfer_buffer(registry, archive, buffer).obs_sets
    (rej,) = o.rejected
    assert rej.name == "stray.fits" and "not listed" in rej.reason
    assert rej.quarantine.read_bytes() == extra.read_bytes()
    assert extra.exists()
    assert o.count("archived") == 5
    assert not archive.abspath(f"{RAW_DIR}/stray.fits").exists()


def test_malformed_manifest_rejects_only_its_set(registry, archive, buffer, tiny):
    make_obs_set(buffer, "20261120_002", tiny)
    (buffer / OBS / "manifest.yaml").write_text("obs_set: 20261120_001\nfiles: [unclosed\n")
    report = transfer_buffer(registry, archive, buffer)
    by = {o.obs_set: o for o in report.obs_sets}
    assert by[OBS].status == "rejected" and "not valid YAML" in by[OBS].reason
    q = by[OBS].files[0].quarantine
    assert q.name == "manifest.yaml" and q.read_text().startswith("obs_set: 20261120_001")
    assert by["20261120_002"].status == "done"
    assert by["20261120_002"].count("archived") == 5
    with registry.session(write=False) as s:
        assert s.scalars(select(ObsSet.obs_set)).all() == ["20261120_002"]
    assert not any(p.startswith(RAW_DIR) for p in _rows(registry))
    assert not report.ok


def test_manifest_for_another_obs_set_is_rejected(registry, archive, buffer):
    m = buffer / OBS / "manifest.yaml"
    m.write_text(m.read_text().replace("'20261120_001'", "'20261120_009'", 1))
    (o,) = transfer_buffer(registry, archive, buffer).obs_sets
    assert o.status == "rejected" and "differs from the directory name" in o.reason


def test_disk_full_half_way_leaves_nothing_then_recovers(registry, tmp_path, buffer):
    budget = {"bytes": 150_000}  # enough for one file and a half

    def small_disk(fd: int, data: memoryview) -> int:
        if budget["bytes"] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, data[: min(len(data), budget["bytes"], 8192)])
        budget["bytes"] -= n
        return n

    full = Archive(tmp_path / "archive", write=small_disk, chunk_size=16 * 1024)
    (o,) = transfer_buffer(registry, full, buffer).obs_sets
    assert o.status == "partial"
    (failed,) = [f for f in o.files if f.status == "failed"]
    assert "No space left on device" in failed.reason
    assert o.count("archived") == 1
    _assert_db_matches_disk(registry, full)  # nothing half-written, nothing unrecorded
    assert not (tmp_path / "archive" / "quarantine").exists()  # a fault is not bad data

    fixed = Archive(tmp_path / "archive", chunk_size=16 * 1024)
    (o2,) = transfer_buffer(registry, fixed, buffer).obs_sets
    assert o2.status == "done" and o2.count("archived") == 4 and o2.count("reused") == 1
    _assert_db_matches_disk(registry, fixed)


_KILLABLE = r"""
import os, sys, time
from pathlib import Path
from surveydm.archive import Archive
from surveydm.db import Registry
from surveydm.pipelines.transfer import transfer_buffer

url, root, buffer, marker = sys.argv[1:5]
calls = {"n": 0}

def slow_write(fd, data):
    calls["n"] += 1
    if calls["n"] == 36:  # in the middle of the second file (24 writes per file)
        time.sleep(1.0)  # let the first file's commit (fsync + link) finish in its thread
        Path(marker).write_text("copying")
        time.sleep(120)
    return os.write(fd, data[:4096])

archive = Archive(Path(root), write=slow_write, chunk_size=16384)
transfer_buffer(Registry(url), archive, Path(buffer))
"""


def test_sigkill_mid_transfer_then_restart(registry, db_url, archive, buffer, tmp_path):
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, db_url, str(archive.root), str(buffer), str(marker)]
    )
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, "the transfer ended before reaching the kill point"
            assert time.time() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    leftovers = list((archive.root / "raw").rglob(".tmp.*"))
    assert len(leftovers) == 1  # the half-written file, never under its final name
    published = [p for p in (archive.root / "raw").rglob("*.fits") if ".tmp." not in p.name]
    assert len(published) == 1  # the first file, committed while the second was copied...
    assert len(_rows(registry)) == 0  # ...but killed before its row was recorded

    report = transfer_buffer(registry, archive, buffer)
    (o,) = report.obs_sets
    assert o.status == "done" and o.count("archived") == 4
    assert o.count("reused") == 1  # identical bytes recognised, recorded, not copied again
    _assert_db_matches_disk(registry, archive)
    assert len(_rows(registry)) == 5


_CONCURRENT = r"""
import sys, time
from pathlib import Path
from surveydm.archive import Archive
from surveydm.db import Registry
from surveydm.pipelines.transfer import transfer_buffer

url, root, buffer, go = sys.argv[1:5]
while not Path(go).exists():
    time.sleep(0.01)
r = transfer_buffer(Registry(url), Archive(Path(root), chunk_size=8192), Path(buffer))
print(r.files_copied, all(o.status == "done" for o in r.obs_sets))
"""


def test_two_transfers_at_once_do_not_double_register(registry, db_url, archive, buffer, tiny):
    make_obs_set(buffer, "20261120_002", tiny, kinds=("bias",) * 6)
    go = buffer.parent / "go"
    args = [sys.executable, "-c", _CONCURRENT, db_url, str(archive.root), str(buffer), str(go)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(1.0)  # both interpreters up and waiting
    go.write_text("go")
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert all(done == "True" for _, done in outs)
    assert sum(int(n) for n, _ in outs) >= 12  # each file copied by one (rarely both)
    rows = _rows(registry)
    assert len(rows) == 12  # 4 + 6 raw files + 2 manifests, each once
    _assert_db_matches_disk(registry, archive)
    with registry.session(write=False) as s:
        assert sorted(s.scalars(select(ObsSet.obs_set)).all()) == [OBS, "20261120_002"]
        assert s.scalar(select(func.count()).select_from(Project)) == 1


# -- verification -------------------------------------------------------------------------


def test_verify_archive_flags_corrupt_and_missing(registry, archive, buffer):
    transfer_buffer(registry, archive, buffer)
    assert all(row.md5 is None for row in _rows(registry).values())  # adler32 only so far
    first = verify_archive(registry, archive)
    assert first.ok and sorted(first.md5_recorded) == sorted(_rows(registry))
    for path, row in _rows(registry).items():
        assert row.md5 == hashlib.md5(archive.abspath(path).read_bytes()).hexdigest()
    again = verify_archive(registry, archive)
    assert again.ok and again.md5_recorded == []
    victim = archive.abspath(f"{RAW_DIR}/{OBS}_0003.fits")
    os.chmod(victim, 0o644)
    data = bytearray(victim.read_bytes())
    data[-1000] ^= 0x10
    victim.write_bytes(bytes(data))
    archive.abspath(f"{RAW_DIR}/{OBS}_0004.fits").unlink()
    report = verify_archive(registry, archive, obs_set=OBS)
    assert report.checked == 5
    assert report.corrupt == [f"{RAW_DIR}/{OBS}_0003.fits"]
    assert report.missing == [f"{RAW_DIR}/{OBS}_0004.fits"]
    rows = _rows(registry)
    assert rows[f"{RAW_DIR}/{OBS}_0003.fits"].state == "corrupt"
    assert rows[f"{RAW_DIR}/{OBS}_0004.fits"].state == "missing"
    assert rows[f"{RAW_DIR}/{OBS}_0001.fits"].state == "archived"
    assert rows[f"{RAW_DIR}/{OBS}_0001.fits"].verified is not None


def test_manifest_helper_lists_real_checksums(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "a.fits").write_bytes(b"abc")
    write_manifest(d, [("a.fits", "bias")], instrument="paucam-mini", obs_set="s")
    m = Manifest.read(d / "manifest.yaml")
    assert m.files[0].adler32 == adler32(d / "a.fits") and m.files[0].size == 3


_SLOW_WRITER = """
import sys, time
from pathlib import Path
from surveydm.archive import Archive

def write(tmp: Path) -> None:
    tmp.write_bytes(b"half a product")
    print("writing", flush=True)
    time.sleep(60)

Archive(Path(sys.argv[1])).write_product("red/R1/20261120_001/ccd01.fits", write)
"""


def test_verify_archive_removes_temporaries_of_killed_writers(registry, archive, buffer):
    """A pilot SIGKILLed while writing a product leaves a temporary under red/: verification
    reports and removes it, and leaves a live writer's temporary alone."""
    transfer_buffer(registry, archive, buffer)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(archive.root)], stdout=subprocess.PIPE
    )
    assert proc.stdout.readline().strip() == b"writing"
    live = verify_archive(registry, archive)
    [tmp] = live.temporaries_live
    assert tmp.startswith("red/R1/20261120_001/.tmp.") and live.temporaries_removed == []
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert archive.abspath(tmp).exists()  # nothing else removes it
    report = verify_archive(registry, archive)
    assert report.ok and report.temporaries_removed == [tmp] and report.temporaries_live == []
    assert not archive.abspath(tmp).exists()
    assert not list(archive.root.rglob(".tmp.*"))
    assert verify_archive(registry, archive, mark=False).temporaries_removed == []
