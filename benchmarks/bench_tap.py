"""TAP service speed on SQLite and PostgreSQL (issue 17).

Loads ``--rows`` detections (default 10 million) uniformly over a 100 deg^2 patch into a fresh
registry on each engine, then prints:

* cone search latency, end to end through the TAP service (ADQL parse + translation + read-only
  connection + execution + VOTable), for ``CONTAINS(POINT, CIRCLE)`` with a 1 arcmin radius at
  random positions: p50/p99 (target p50 < 5 ms), against the same translated SQL run directly
  on a plain connection (the reference, same run);
* a BINARY2 VOTable stream of ``--stream-rows`` rows (default 1 million): rows/s (target
  >= 1,000,000 rows/s), against fetching the same rows with the engine's cursor alone;
* the query plan of a cone query on each engine (the HEALPix prefilter must be an index range
  scan);
* on PostgreSQL, DaCHS (Debian ``gavodachs2-server``) side by side: the same rows are copied
  into DaCHS's table ``surveydm_bench.detection`` (database ``gavo`` on the same server; resource
  descriptor in ``benchmarks/dachs/q.rd``, imported with ``dachs imp``) and the same cone queries
  are sent over HTTP, one at a time, to DaCHS's ``/tap/sync`` at ``--dachs-url`` and to ours
  (uvicorn in this process): queries/s of each and the ratio (target: ours >= 2x). Skipped,
  with the reason printed, when DaCHS is not serving.

    python benchmarks/bench_tap.py [--rows 10000000] [--stream-rows 1000000] [--queries 200]
        [--engines sqlite,postgresql] [--dachs-url http://localhost:8080/tap]
"""

from __future__ import annotations

import argparse
import os
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
DACHS_DB, DACHS_SCHEMA = (
    "gavo",
    "surveydm_bench",
)  # DaCHS's database; schema of benchmarks/dachs/q.rd


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
    types = {}
    if engine == "postgresql":
        with create_engine(url).connect() as c:
            types = dict(
                c.execute(
                    text(
                        "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_name = 'detection'"
                    )
                ).all()
            )
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        ra = RA0 + rng.uniform(-SIDE / 2, SIDE / 2, k)
        dec = DEC0 + rng.uniform(-SIDE / 2, SIDE / 2, k)
        hp = healpix_index(ra, dec)
        mag = rng.uniform(16, 24, k)
        if engine == "sqlite":  # Arrow bulk insert (ADBC): no Python object per value
            import adbc_driver_sqlite.dbapi as adbc
            import pyarrow as pa

            zeros = np.zeros(k)
            table = pa.table(
                {
                    "image_id": np.full(k, image_id, np.int64),
                    "band": pa.array(["r"] * k),
                    "x": zeros,
                    "y": zeros,
                    "ra": ra,
                    "dec": dec,
                    "healpix": hp.astype(np.int64),
                    "mag": mag,
                    "flags": np.zeros(k, np.int64),
                }
            )
            with adbc.connect(url.removeprefix("sqlite:///")) as conn:
                with conn.cursor() as cur:
                    cur.adbc_ingest("detection", table, mode="append")
                conn.commit()
        else:
            import psycopg

            pg_url = url.replace("postgresql+psycopg", "postgresql")
            data = _pg_copy_binary(types, image_id, ra, dec, hp, mag)
            with (
                psycopg.connect(pg_url) as conn,
                conn.cursor().copy(f"COPY detection ({cols}) FROM STDIN (FORMAT binary)") as copy,
            ):
                copy.write(data)
    if engine == "postgresql":
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
            c.execute("VACUUM ANALYZE detection")
    else:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("ANALYZE")
        conn.close()


_PG_BINARY = {"integer": ">i4", "bigint": ">i8", "double precision": ">f8", "real": ">f4"}


def _pg_copy_binary(types: dict[str, str], image_id: int, ra, dec, hp, mag) -> bytes:
    """PostgreSQL binary COPY data of detection rows (band one character, the other columns
    numbers of the SQL ``types`` by column name), built with numpy."""
    names = ("image_id", "band", "x", "y", "ra", "dec", "healpix", "mag", "flags")
    fields = [(n, "S1" if n == "band" else _PG_BINARY[types[n]]) for n in names]
    dtype = [("n", ">i2")]
    for name, kind in fields:
        dtype += [(f"len_{name}", ">i4"), (name, kind)]
    rec = np.zeros(len(ra), dtype)
    rec["n"] = len(fields)
    for name, kind in fields:
        rec[f"len_{name}"] = np.dtype(kind).itemsize
    rec["image_id"], rec["band"] = image_id, b"r"
    rec["ra"], rec["dec"], rec["healpix"], rec["mag"] = ra, dec, hp, mag
    header = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    return header + rec.tobytes() + b"\xff\xff"


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
    for q in queries:  # page cache warm for both sides (else the first to run pays the reads)
        execute(service.prepare({"LANG": "ADQL", "QUERY": q}).translation.sql).fetchall()
    cpu_ms = 0.0

    def tap_once(q: str):
        nonlocal cpu_ms
        c = time.process_time()
        t = time.perf_counter()
        prepared = service.prepare({"LANG": "ADQL", "QUERY": q, "FORMAT": "votable/b2"})
        doc = b"".join(service.stream(prepared, 60))
        tap_ms.append((time.perf_counter() - t) * 1e3)
        cpu_ms += (time.process_time() - c) * 1e3
        assert doc.endswith(b"</VOTABLE>\n")
        return prepared

    def sql_once(sql: str) -> None:
        t = time.perf_counter()
        nrows.append(len(execute(sql).fetchall()))
        sql_ms.append((time.perf_counter() - t) * 1e3)

    for i, q in enumerate(queries):  # alternate which side runs first (no order bias)
        if i % 2 == 0:
            prepared = tap_once(q)
            sql_once(prepared.translation.sql)
        else:
            sql_once(service.prepare({"LANG": "ADQL", "QUERY": q}).translation.sql)
            prepared = tap_once(q)
    _explain(engine, execute, prepared.translation.sql)
    conn.close()
    p50, p99 = np.percentile(tap_ms, [50, 99])
    r50, r99 = np.percentile(sql_ms, [50, 99])
    print(
        f"[{engine}] cone 1': TAP p50 {p50:.2f} ms, p99 {p99:.2f} ms (target p50 < 5 ms); "
        f"direct SQL p50 {r50:.2f} ms, p99 {r99:.2f} ms; TAP/SQL p50 ratio {p50 / r50:.2f}; "
        f"mean {np.mean(nrows):.1f} rows/cone; TAP CPU of this process "
        f"{cpu_ms / len(queries):.2f} ms/query; {_loadavg()}"
    )
    # BINARY2 stream
    q = f"SELECT TOP {args.stream_rows} id, ra, dec, mag, healpix FROM surveydm.detection"
    prepared = service.prepare(
        {"LANG": "ADQL", "QUERY": q, "FORMAT": "votable/b2", "MAXREC": str(args.stream_rows)}
    )
    conn, execute = _direct(url, engine)

    def cursor_alone() -> float:
        t = time.perf_counter()
        cur = execute(prepared.translation.sql)
        while cur.fetchmany(5000):
            pass
        return time.perf_counter() - t

    cursor_alone()  # warm-up: the first pass pays the cold reads, for neither side
    t, c = time.perf_counter(), time.process_time()
    nbytes = sum(len(piece) for piece in service.stream(prepared, 600))
    dt, dcpu = time.perf_counter() - t, time.process_time() - c
    dref = cursor_alone()
    conn.close()
    print(
        f"[{engine}] BINARY2 stream of {args.stream_rows:,} rows: {args.stream_rows / dt:,.0f} "
        f"rows/s ({nbytes / dt / 1e6:.1f} MB/s; target >= 1,000,000 rows/s); cursor alone "
        f"{args.stream_rows / dref:,.0f} rows/s; TAP/cursor rate ratio {dref / dt:.2f}; "
        f"CPU of this process {dcpu:.2f} s ({args.stream_rows / dcpu:,.0f} rows per CPU-s); "
        f"{_loadavg()}"
    )
    if engine == "postgresql":
        _versus_dachs(url, queries, args)
        name = url.rsplit("/", 1)[1]
        with create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT").connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _loadavg() -> str:
    """The 1/5/15-minute load averages (timings on a shared machine depend on them)."""
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def _explain(engine: str, execute, sql: str) -> None:
    """Print the plan of one cone query: the prefilter must use the healpix index."""
    if engine == "sqlite":
        plan = [r[-1] for r in execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()]
    else:
        plan = [r[0].strip() for r in execute(f"EXPLAIN {sql}").fetchall()]
    uses = any("healpix" in line.lower() and "index" in line.lower() for line in plan)
    print(f"[{engine}] cone plan ({'healpix index range scan' if uses else 'NO INDEX'}):")
    for line in plan:
        print(f"    {line}")


def _dachs_copy(url: str) -> None:
    """Copy the bench detections into DaCHS's table (indexes dropped, then rebuilt)."""
    import psycopg

    src = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
    dst = psycopg.connect(
        PG_ADMIN.replace("postgresql+psycopg", "postgresql").rsplit("/", 1)[0] + "/" + DACHS_DB
    )
    indexes = [
        r[0]
        for r in dst.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'detection'",
            (DACHS_SCHEMA,),
        ).fetchall()
    ]
    dst.execute(f"ALTER TABLE {DACHS_SCHEMA}.detection DROP CONSTRAINT IF EXISTS detection_pkey")
    for r in dst.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'detection'",
        (DACHS_SCHEMA,),
    ).fetchall():
        dst.execute(f'DROP INDEX {DACHS_SCHEMA}."{r[0]}"')
    dst.execute(f"TRUNCATE {DACHS_SCHEMA}.detection")
    select = "SELECT id::int8, ra::float8, dec::float8, mag::float8, healpix::int8 FROM detection"
    with (
        src.cursor().copy(f"COPY ({select}) TO STDOUT (FORMAT binary)") as out,
        dst.cursor().copy(
            f"COPY {DACHS_SCHEMA}.detection (id, ra, dec, mag, healpix) FROM STDIN (FORMAT binary)"
        ) as inp,
    ):
        for block in out:
            inp.write(block)
    for definition in indexes:
        dst.execute(definition)
    dst.commit()
    dst.autocommit = True
    dst.execute(f"VACUUM ANALYZE {DACHS_SCHEMA}.detection")
    src.close()
    dst.close()


def _http_rate(base: str, queries: list[str], table: str) -> tuple[float, list[int]]:
    """Queries/s of ``queries`` sent one at a time to ``base``/sync, and rows per answer."""
    import io

    import httpx
    from astropy.io.votable import parse_single_table

    counts = []
    with httpx.Client(timeout=60) as client:
        t = time.perf_counter()
        for q in queries:
            r = client.post(
                f"{base}/sync",
                data={
                    "REQUEST": "doQuery",
                    "LANG": "ADQL",
                    "RESPONSEFORMAT": "votable/b2",
                    "QUERY": q.replace("surveydm.detection", table),
                },
            )
            r.raise_for_status()
            counts.append(r.content)
        dt = time.perf_counter() - t
    rows = [len(parse_single_table(io.BytesIO(c)).array) for c in counts]
    return len(queries) / dt, rows


def _versus_dachs(url: str, queries: list[str], args: argparse.Namespace) -> None:
    """The same cone queries over HTTP against DaCHS and ours on the same PostgreSQL."""
    import socket
    import threading

    import httpx
    import uvicorn

    from surveydm.config import Settings
    from surveydm.publish.web import create_app

    try:
        httpx.get(f"{args.dachs_url}/capabilities", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        print(f"DaCHS: skipped (not serving at {args.dachs_url}: {exc})")
        return
    t = time.perf_counter()
    _dachs_copy(url)
    print(
        f"DaCHS: copied the table into {DACHS_DB}.{DACHS_SCHEMA} in {time.perf_counter() - t:.1f} s"
    )
    with tempfile.TemporaryDirectory() as home:
        app = create_app(Settings(home=Path(home), database_url=url), sql_time_limit_s=60)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        ours_url = f"http://127.0.0.1:{port}/tap"
        try:
            _http_rate(ours_url, queries[:5], "surveydm.detection")  # warm up both
            _http_rate(args.dachs_url, queries[:5], f"{DACHS_SCHEMA}.detection")
            ours, ours_rows = _http_rate(ours_url, queries, "surveydm.detection")
            dachs, dachs_rows = _http_rate(args.dachs_url, queries, f"{DACHS_SCHEMA}.detection")
        finally:
            server.should_exit = True
            thread.join(10)
            app.state.tap_jobs.close()
    same = sum(a == b for a, b in zip(ours_rows, dachs_rows, strict=True))
    print(
        f"[postgresql] cone 1' over HTTP (sync, BINARY2, one client): ours {ours:.1f} queries/s, "
        f"DaCHS {dachs:.1f} queries/s; ours/DaCHS {ours / dachs:.2f} (target >= 2); "
        f"same row count in {same}/{len(queries)} answers; {_loadavg()}"
    )


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


if __name__ == "__main__":
    main()
