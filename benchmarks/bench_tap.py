"""TAP service speed on SQLite and PostgreSQL (issue 17).

Loads ``--rows`` detections (default 10 million) uniformly over a 100 deg^2 patch into a fresh
registry on each engine, then prints:

* cone search latency, end to end through the TAP service (ADQL parse + translation + read-only
  connection + execution + VOTable), for ``CONTAINS(POINT, CIRCLE)`` with a 1 arcmin radius at
  random positions: p50/p99 (target p50 < 5 ms), against the same translated SQL run directly
  on a plain connection (the reference, same run);
* a BINARY2 VOTable stream of ``--stream-rows`` rows (default 1 million): rows/s (target
  >= 1,000,000 rows/s), against fetching the same rows with the engine's cursor alone;
* DaCHS (Debian ``gavodachs2-server``) on the same table: only when ``dachs`` is installed and
  serving at ``--dachs-url``; otherwise the line says it was skipped.

    python benchmarks/bench_tap.py [--rows 10000000] [--stream-rows 1000000] [--queries 200]
        [--engines sqlite,postgresql] [--dachs-url http://localhost:8080/tap]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text

from surveydm.db import Registry
from surveydm.db.migrate import upgrade
from surveydm.db.models.raw import Image, Mosaic, ObsSet
from surveydm.db.spatial import healpix_index
from surveydm.publish.sqlbrowser import SqlBrowser
from surveydm.publish.vo.tap.service import TapLimits, TapService

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RA0, DEC0, SIDE = 150.0, 2.0, 10.0  # patch centre and side, deg
CHUNK = 500_000


def _registry(engine: str, tmp: Path) -> str:
    if engine == "sqlite":
        url = f"sqlite:///{tmp / 'bench.sqlite'}"
    else:
        name = f"surveydm_bench_{uuid.uuid4().hex[:8]}"
        with create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT").connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    return url


def _load(url: str, engine: str, n: int, rng: np.random.Generator) -> None:
    reg = Registry(url)
    with reg.session() as s:
        obs = ObsSet(obs_set="bench", night=date(2026, 11, 20), instrument="bench")
        s.add(obs)
        s.flush()
        m = Mosaic(obs_set_id=obs.id, kind="red_science", filename="bench.fits")
        s.add(m)
        s.flush()
        img = Image(mosaic_id=m.id, ccd_num=1)
        s.add(img)
        s.flush()
        image_id = img.id
    reg.dispose()
    cols = "image_id, band, x, y, ra, dec, healpix, mag, flags"
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        ra = RA0 + rng.uniform(-SIDE / 2, SIDE / 2, k)
        dec = DEC0 + rng.uniform(-SIDE / 2, SIDE / 2, k)
        hp = healpix_index(ra, dec)
        mag = rng.uniform(16, 24, k)
        rows = [
            (image_id, "r", 0.0, 0.0, float(a), float(d), int(h), float(mg), 0)
            for a, d, h, mg in zip(ra, dec, hp, mag, strict=True)
        ]
        if engine == "sqlite":
            conn = sqlite3.connect(url.removeprefix("sqlite:///"))
            conn.executemany(f"INSERT INTO detection ({cols}) VALUES (?,?,?,?,?,?,?,?,?)", rows)
            conn.commit()
            conn.close()
        else:
            import psycopg

            pg_url = url.replace("postgresql+psycopg", "postgresql")
            with (
                psycopg.connect(pg_url) as conn,
                conn.cursor().copy(f"COPY detection ({cols}) FROM STDIN") as copy,
            ):
                for r in rows:
                    copy.write_row(r)
    if engine == "postgresql":
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
            c.execute("VACUUM ANALYZE detection")
    else:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("ANALYZE")
        conn.close()


def _cone_queries(n: int, rng: np.random.Generator) -> list[str]:
    ra = RA0 + rng.uniform(-SIDE / 2.5, SIDE / 2.5, n)
    dec = DEC0 + rng.uniform(-SIDE / 2.5, SIDE / 2.5, n)
    return [
        "SELECT id, ra, dec, mag FROM surveydm.detection WHERE 1 = CONTAINS(POINT('ICRS', ra, "
        f"dec), CIRCLE('ICRS', {a:.6f}, {d:.6f}, {1 / 60:.8f}))"
        for a, d in zip(ra, dec, strict=True)
    ]


def _direct(url: str, engine: str):
    if engine == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        return conn, conn.execute
    import psycopg

    conn = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
    return conn, conn.execute


def _bench_engine(engine: str, args: argparse.Namespace, tmp: Path) -> None:
    rng = np.random.default_rng(1)
    url = _registry(engine, tmp)
    t0 = time.perf_counter()
    _load(url, engine, args.rows, rng)
    print(f"[{engine}] loaded {args.rows:,} detections in {time.perf_counter() - t0:.1f} s")
    limits = TapLimits(maxrec_hard=args.stream_rows + 1)
    service = TapService(SqlBrowser(url, time_limit_s=600), limits)
    queries = _cone_queries(args.queries, rng)
    # warm up (connections, role set-up, caches)
    for q in queries[:5]:
        b"".join(service.stream(service.prepare({"LANG": "ADQL", "QUERY": q}), 60))
    tap_ms, sql_ms, nrows = [], [], []
    conn, execute = _direct(url, engine)
    for q in queries:
        t = time.perf_counter()
        prepared = service.prepare({"LANG": "ADQL", "QUERY": q, "FORMAT": "votable/b2"})
        doc = b"".join(service.stream(prepared, 60))
        tap_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        nrows.append(len(execute(prepared.translation.sql).fetchall()))
        sql_ms.append((time.perf_counter() - t) * 1e3)
        assert doc.endswith(b"</VOTABLE>\n")
    conn.close()
    p50, p99 = np.percentile(tap_ms, [50, 99])
    r50, r99 = np.percentile(sql_ms, [50, 99])
    print(
        f"[{engine}] cone 1': TAP p50 {p50:.2f} ms, p99 {p99:.2f} ms (target p50 < 5 ms); "
        f"direct SQL p50 {r50:.2f} ms, p99 {r99:.2f} ms; TAP/SQL p50 ratio {p50 / r50:.2f}; "
        f"mean {np.mean(nrows):.1f} rows/cone"
    )
    # BINARY2 stream
    q = f"SELECT TOP {args.stream_rows} id, ra, dec, mag, healpix FROM surveydm.detection"
    prepared = service.prepare(
        {"LANG": "ADQL", "QUERY": q, "FORMAT": "votable/b2", "MAXREC": str(args.stream_rows)}
    )
    t = time.perf_counter()
    nbytes = sum(len(piece) for piece in service.stream(prepared, 600))
    dt = time.perf_counter() - t
    conn, execute = _direct(url, engine)
    t = time.perf_counter()
    cur = execute(prepared.translation.sql)
    while cur.fetchmany(5000):
        pass
    dref = time.perf_counter() - t
    conn.close()
    print(
        f"[{engine}] BINARY2 stream of {args.stream_rows:,} rows: {args.stream_rows / dt:,.0f} "
        f"rows/s ({nbytes / dt / 1e6:.1f} MB/s; target >= 1,000,000 rows/s); cursor alone "
        f"{args.stream_rows / dref:,.0f} rows/s; TAP/cursor rate ratio {dref / dt:.2f}"
    )
    if engine == "postgresql":
        name = url.rsplit("/", 1)[1]
        with create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT").connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--stream-rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--dachs-url", default="http://localhost:8080/tap")
    args = parser.parse_args()
    args.stream_rows = min(args.stream_rows, args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            _bench_engine(engine, args, Path(tmp))
    if shutil.which("dachs") is None:
        print("DaCHS: skipped (Debian gavodachs2-server is not installed on this machine)")
    else:
        print(
            f"DaCHS: installed; serve the same table and point --dachs-url ({args.dachs_url})"
            " at it to compare (not automated yet)"
        )


if __name__ == "__main__":
    main()
