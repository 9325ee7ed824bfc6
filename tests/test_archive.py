"""The archive: checksums, atomic never-overwriting writes, failing disks, quarantine."""

from __future__ import annotations

import errno
import hashlib
import os
import zlib
from pathlib import Path

import pytest

from surveydm.archive import (
    Archive,
    ArchiveConflict,
    ArchiveWriteError,
    ChecksumMismatch,
    Checksums,
    InvalidArchivePath,
    SizeMismatch,
    file_checksums,
    normalise_adler32,
)


def _payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed) % 251 for i in range(n))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "buffer" / "f.fits"
    p.parent.mkdir()
    p.write_bytes(_payload(3 * 1024 * 1024 + 17))
    return p


def _adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp.")]


def test_checksums_match_zlib_and_hashlib(src):
    data = src.read_bytes()
    sums = file_checksums(src, chunk_size=1 << 20)  # several chunks
    assert sums.size == len(data)
    assert sums.adler32 == _adler(data)
    assert sums.md5 == hashlib.md5(data).hexdigest()
    assert file_checksums(src, chunk_size=1 << 20, md5=False) == Checksums(len(data), _adler(data))


def test_normalise_adler32():
    assert normalise_adler32("0x1A2B") == "00001a2b"
    assert normalise_adler32(0xDEADBEEF) == "deadbeef"
    with pytest.raises(ValueError):
        normalise_adler32("xyz")


def test_store_copies_verifies_and_lays_out(tmp_path, src):
    archive = Archive(tmp_path / "archive", chunk_size=1 << 20)
    rel = archive.raw_path("2026-11-20", "20261120_001", src.name)
    assert rel == "raw/2026-11-20/20261120_001/f.fits"
    stored = archive.store(src, rel, expected_adler32=_adler(src.read_bytes()))
    dest = archive.abspath(rel)
    assert dest.read_bytes() == src.read_bytes()
    assert stored.path == rel and not stored.reused
    assert (stored.size, stored.adler32) == (src.stat().st_size, _adler(src.read_bytes()))
    assert stored.md5 is None  # left to the first full read of the archived copy
    assert dest.stat().st_mode & 0o777 == 0o444  # archived files are read-only
    assert _leftovers(archive.root) == []
    assert src.exists()  # the buffer is never touched


def test_store_again_reuses_identical_file_and_refuses_different(tmp_path, src):
    archive = Archive(tmp_path / "archive")
    rel = "raw/2026-11-20/s/f.fits"
    first = archive.store(src, rel)
    again = archive.store(src, rel)
    assert again.reused and (again.size, again.adler32) == (first.size, first.adler32)
    other = tmp_path / "other.fits"
    other.write_bytes(_payload(1000, seed=3))
    with pytest.raises(ArchiveConflict, match="never overwrites"):
        archive.store(other, rel)
    assert archive.abspath(rel).read_bytes() == src.read_bytes()


def test_store_checksum_mismatch_writes_nothing(tmp_path, src):
    archive = Archive(tmp_path / "archive")
    rel = "raw/2026-11-20/s/f.fits"
    with pytest.raises(ChecksumMismatch, match="expected 00000001"):
        archive.store(src, rel, expected_adler32="00000001")
    with pytest.raises(SizeMismatch):
        archive.store(src, rel, expected_size=5)
    assert not archive.abspath(rel).exists()
    assert _leftovers(archive.root) == []


def test_disk_full_half_way_leaves_nothing(tmp_path, src):
    written = {"n": 0}

    def full_disk(fd: int, data: memoryview) -> int:
        if written["n"] > 1024 * 1024:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, data[: 256 * 1024])
        written["n"] += n
        return n

    archive = Archive(tmp_path / "archive", write=full_disk, chunk_size=1 << 20)
    rel = "raw/2026-11-20/s/f.fits"
    with pytest.raises(ArchiveWriteError, match="No space left") as info:
        archive.store(src, rel)
    assert info.value.errno == errno.ENOSPC
    assert written["n"] > 0  # it really failed half-way
    assert not archive.abspath(rel).exists()
    assert _leftovers(archive.root) == []
    # the disk is freed: the same call now succeeds
    assert Archive(tmp_path / "archive").store(src, rel).size == src.stat().st_size


def test_write_product_is_atomic_and_cleans_up(tmp_path):
    archive = Archive(tmp_path / "archive")
    rel = archive.red_path("dr1", "20261120_001", "master_bias.fits")
    assert rel == "red/dr1/20261120_001/master_bias.fits"
    seen: list[Path] = []

    def writer(p: Path) -> None:
        assert not p.exists() and p.name.endswith("master_bias.fits")
        seen.append(p)
        p.write_bytes(b"SIMPLE" * 100)

    stored = archive.write_product(rel, writer)
    assert archive.abspath(rel).read_bytes() == b"SIMPLE" * 100
    assert stored.size == 600 and stored.adler32 == _adler(b"SIMPLE" * 100)
    assert not seen[0].exists()

    def failing(p: Path) -> None:
        p.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ArchiveWriteError):
        archive.write_product(archive.red_path("dr1", "x", "y.fits"), failing)
    with pytest.raises(ArchiveConflict):
        archive.write_product(rel, lambda p: p.write_bytes(b"different"))
    assert archive.write_product(rel, lambda p: p.write_bytes(b"SIMPLE" * 100)).reused
    assert _leftovers(archive.root) == []


def test_invalid_paths_are_refused(tmp_path):
    archive = Archive(tmp_path / "archive")
    for bad in ("", "/etc/passwd", "raw/../../x", "raw//x", "raw/./x"):
        with pytest.raises(InvalidArchivePath):
            archive.abspath(bad)


def test_quarantine_keeps_file_with_reason_and_is_idempotent(tmp_path, src):
    archive = Archive(tmp_path / "archive")
    q = archive.quarantine(src, "20261120_001", "adler32 mismatch", stamp="20261121T060000Z")
    assert q == archive.root / "quarantine/20261121T060000Z_20261120_001/f.fits"
    assert q.read_bytes() == src.read_bytes()
    reason = q.with_name("f.fits.reason.txt").read_text()
    assert "adler32 mismatch" in reason and "20261120_001" in reason
    assert src.exists()
    again = archive.quarantine(src, "20261120_001", "adler32 mismatch")
    assert again == q  # not copied a second time
    missing = archive.quarantine(tmp_path / "gone.fits", "20261120_001", "listed but missing")
    assert missing.name == "gone.fits.reason.txt" and "listed but missing" in missing.read_text()


def test_clean_temporaries_removes_only_dead_writers(tmp_path):
    archive = Archive(tmp_path / "archive")
    d = archive.abspath("raw/2026-11-20/s")
    d.mkdir(parents=True)
    host = archive._tmp_path(d / "x").name.split(".")[2]
    dead = d / f".tmp.{host}.999999999.abcd.f.fits"
    live = d / f".tmp.{host}.{os.getpid()}.abcd.g.fits"
    dead.write_bytes(b"x")
    live.write_bytes(b"y")
    assert archive.clean_temporaries("raw") == [dead]
    assert live.exists() and not dead.exists()


def test_verify_file(tmp_path, src):
    archive = Archive(tmp_path / "archive")
    s = archive.store(src, "raw/n/s/f.fits")
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    problem, sums = archive.verify_file(s.path, s.size, s.adler32)
    assert problem is None and sums.md5 == md5  # computed for the caller to record
    assert archive.verify_file(s.path, s.size, s.adler32, md5)[0] is None
    assert archive.verify_file(s.path, s.size, s.adler32, "0" * 32)[0] == "corrupt"
    path = archive.abspath(s.path)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert archive.verify_file(s.path, s.size, s.adler32)[0] == "corrupt"
    path.unlink()
    assert archive.verify_file(s.path, s.size, s.adler32, md5) == ("missing", None)
