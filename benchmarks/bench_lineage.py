"""Benchmark of the lineage queries on SQLite and PostgreSQL (prints a table; no assertions).

Builds, per engine, a synthetic registry of ``--nights`` nights, each with 5 raw biases and 5
raw flats, a master bias and a master flat (with validity ranges), ``--science`` exposures of
``--ccds`` CCDs, one reduced image product per CCD (inputs: raw, bias, flat, refcat), and
``--detections`` detections spread over the images (defaults: 100 nights x 50 exposures x 18
CCDs = ~96,000 products and 10 million detections, the issue-16 figures). Then measures
(median of ``--repeat``):

- the lineage of one detection (detection -> image -> every input down to the raw files, with
  the details of every product): target < 50 ms;
- the dependents of one master flat (its night's images);
- the stale listing of one night (``stale_products(obs_set=...)``) after its master flat is
  flagged bad (the night's images listed): target < 1 s; with ``--whole`` also the listing
  over the whole registry (no scope: every calibration use is examined);

each against a reference measured in the same run: the same walk done in Python, one query
per level of the graph (what the recursive CTE replaces).

Usage::

    python benchmarks/bench_lineage.py [--engines sqlite,postgresql] [--nights 100]
        [--science 50] [--ccds 18] [--detections 10000000] [--repeat 7] [--whole]

PostgreSQL: ``SURVEYDM_BENCH_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) is the admin connection; the
benchmark creates and drops its own database.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from surveydm.db import Registry
from surveydm.db.migrate import upgrade
from surveydm.db.models.calibration import CalibrationFrame, Detection
from surveydm.db.models.production import Product, ProductInput, Production
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic, ObsSet
from surveydm.pipelines.calibrations import night_window
from surveydm.pipelines.lineage.graph import lineage
from surveydm.pipelines.lineage.resolve import resolve
from surveydm.pipelines.lineage.stale import stale_products

CHUNK = 20_000


def _make_db(engine: str, tmp: Path) -> tuple[str, Callable[[], None] | None]:
    """(url, cleanup) of a fresh migrated database."""
    from scratch_postgres import scratch_database

    if engine == "sqlite":
        url, cleanup = f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.sqlite'}", None
    else:
        url, cleanup = scratch_database()
    upgrade(url)
    return url, cleanup


def _kept_db(engine: str, keep: Path, args: argparse.Namespace) -> tuple[str, Path]:
    """(url, ids file) of a registry kept between runs under ``keep`` (one per engine and
    size): built on the first run, migrated to the newest schema on every run."""
    from scratch_postgres import DEFAULT_ADMIN_URL

    size = f"{args.nights}x{args.science}x{args.ccds}x{args.detections}"
    keep.mkdir(parents=True, exist_ok=True)
    ids = keep / f"bench-lineage-{engine}-{size}.json"
    if engine == "sqlite":
        url = f"sqlite:///{keep / f'bench-lineage-{size}.sqlite'}"
    else:
        from sqlalchemy import create_engine, text

        name = f"surveydm_bench_lineage_{size}"
        admin_url = os.environ.get("SURVEYDM_BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL)
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            if not c.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first():
                c.execute(text(f'CREATE DATABASE "{name}"'))
                ids.unlink(missing_ok=True)
        admin.dispose()
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    return url, ids


class Rows:
    """Rows to insert, by table, with ids assigned here (bulk inserts without RETURNING)."""

    def __init__(self) -> None:
        self.tables: dict[Any, list[dict[str, Any]]] = {}
        self.next_id: dict[Any, int] = {}

    def add(self, table: Any, **row: Any) -> int:
        rid = self.next_id.get(table, 1)
        self.next_id[table] = rid + 1
        self.tables.setdefault(table, []).append({"id": rid, **row})
        return rid

    def edge(self, product: int, inp: int, role: str) -> None:
        self.tables.setdefault(ProductInput.__table__, []).append(
            {"product_id": product, "input_id": inp, "role": role}
        )


def build(reg: Registry, nights: int, science: int, ccds: int, detections: int) -> dict[str, int]:
    """Write the synthetic registry; returns ids to query (a detection, a flat, counts)."""
    r, now = Rows(), datetime.now(UTC)
    P, A, M, I = (Product.__table__, ArchiveFile.__table__,  # noqa: N806, E741
                  Mosaic.__table__, Image.__table__)  # fmt: skip
    prod = r.add(Production.__table__, pipeline="nightly", release="bench", software_version=
                 __import__("surveydm").__version__, config={}, config_hash="0" * 64,
                 created=now)  # fmt: skip
    refcat = r.add(P, uuid=uuid.uuid4(), product_type="refcat", data_id={}, quality="pass",
                   valid=True, validity="ok", created=now, file_id=None,
                   production_id=None)  # fmt: skip
    images: list[int] = []
    flats: list[int] = []
    day0 = datetime(2026, 1, 1, tzinfo=UTC)

    def product(ptype: str, data_id: dict[str, Any], file_id: int | None = None) -> int:
        return r.add(P, uuid=uuid.uuid4(), product_type=ptype, data_id=data_id, quality="pass",
                     valid=True, validity="ok", created=now, file_id=file_id,
                     production_id=None if ptype == "raw" else prod)  # fmt: skip

    for n in range(nights):
        night = (day0 + timedelta(days=n)).date().isoformat()
        obs = r.add(ObsSet.__table__, obs_set=f"{night}_001", night=day0.date() +
                    timedelta(days=n), instrument="benchcam", manifest={}, n_files=0,
                    created=now)  # fmt: skip
        t0 = day0 + timedelta(days=n, hours=20)

        def raw(kind: str, k: int, when: datetime) -> tuple[int, int]:
            f = r.add(A, path=f"raw/{night}/{kind}{k}.fits", size=1, adler32="00000001",  # noqa: B023
                      state="archived", created=now)  # fmt: skip
            m = r.add(M, obs_set_id=obs, kind=kind, filename=f"{kind}{k}", archive_file_id=f,  # noqa: B023
                      date_obs=when, filter_tray="r", parent_id=None, production_id=None,
                      created=now)  # fmt: skip
            return product("raw", {"obs_set": f"{night}_001", "mosaic_id": m}, f), m  # noqa: B023

        biases = [raw("bias", k, t0)[0] for k in range(5)]
        flat_raws = [raw("flat", k, t0)[0] for k in range(5)]
        start, end = night_window(night)
        masters = {}
        for kind, inputs in (("master_bias", biases), ("master_flat", flat_raws)):
            pid = product(kind, {"obs_set": f"{night}_001"})
            for i in inputs:
                r.edge(pid, i, "raw")
            if kind == "master_flat":
                r.edge(pid, masters["master_bias"], "bias")
            r.add(CalibrationFrame.__table__, kind=kind, instrument="benchcam", night=night,
                  filter_tray="r" if kind == "master_flat" else None, valid_from=start,
                  valid_until=end, n_input=5, stats={}, product_id=pid, created=now)  # fmt: skip
            masters[kind] = pid
        flats.append(masters["master_flat"])
        for e in range(science):
            rp, rm = raw("science", e, t0 + timedelta(minutes=5 * e))
            red = r.add(M, obs_set_id=obs, kind="red_science", filename=f"red{e}",
                        archive_file_id=None, date_obs=None, filter_tray=None, parent_id=rm,
                        production_id=prod, created=now)  # fmt: skip
            for c in range(1, ccds + 1):
                pid = product("reduced_sci", {"obs_set": f"{night}_001", "mosaic_id": rm, "ccd": c})
                inputs = (("raw", rp), ("bias", masters["master_bias"]),
                          ("flat", masters["master_flat"]), ("refcat", refcat))  # fmt: skip
                for role, inp in inputs:
                    r.edge(pid, inp, role)
                images.append(r.add(I, mosaic_id=red, ccd_num=c, product_id=pid))
    with reg.engine.begin() as conn:
        for table in (Production.__table__, ObsSet.__table__, A, M, P, ProductInput.__table__,
                      CalibrationFrame.__table__, I):  # fmt: skip
            rows = r.tables.get(table, [])
            for k in range(0, len(rows), CHUNK):
                conn.execute(table.insert(), rows[k : k + CHUNK])
        if reg.dialect == "postgresql":  # ids were given: move the sequences past them
            for table in (Production.__table__, ObsSet.__table__, A, M, P,
                          CalibrationFrame.__table__, I):  # fmt: skip
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"(SELECT max(id) FROM {table.name}))"
                )
    per_image = max(1, detections // max(len(images), 1))
    batch: list[dict[str, Any]] = []
    did = 0
    with reg.engine.begin() as conn:
        for image in images:
            for _ in range(per_image):
                did += 1
                batch.append({"id": did, "image_id": image, "band": "r", "x": 1.0, "y": 1.0,
                              "ra": 10.0, "dec": 0.0, "healpix": 1, "flags": 0})  # fmt: skip
                if len(batch) >= CHUNK:
                    conn.execute(Detection.__table__.insert(), batch)
                    batch = []
        if batch:
            conn.execute(Detection.__table__.insert(), batch)
    with reg.engine.connect() as conn:  # statistics, as autovacuum / a nightly ANALYZE keeps
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    middle = day0 + timedelta(days=len(flats) // 2)
    return {"detection": did // 2, "flat": flats[len(flats) // 2], "products": len(r.tables[P]),
            "detections": did, "obs_set": f"{middle.date().isoformat()}_001"}  # fmt: skip


def python_walk(reg: Registry, start: int, inputs: bool) -> set[int]:
    """The reference: the same walk in Python, one query per level."""
    seen, frontier = {start}, {start}
    near, far = (
        (ProductInput.product_id, ProductInput.input_id)
        if inputs
        else (ProductInput.input_id, ProductInput.product_id)
    )
    with reg.session(write=False) as s:
        while frontier:
            nxt = set(s.scalars(select(far).where(near.in_(frontier)))) - seen
            seen |= nxt
            frontier = nxt
        list(s.scalars(select(Product).where(Product.id.in_(seen))))
    return seen


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(median milliseconds, last result)."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), out


def _registry(reg: Registry, engine: str, args: argparse.Namespace, ids_file: Path | None
              ) -> dict[str, Any]:  # fmt: skip
    """Build the synthetic registry, or read the ids of one built by an earlier run."""
    if ids_file is not None and ids_file.exists():
        print(f"{engine}: reusing the registry of {ids_file}", file=sys.stderr)
        return json.loads(ids_file.read_text())
    t = time.perf_counter()
    ids = build(reg, args.nights, args.science, args.ccds, args.detections)
    print(f"{engine}: built {ids['products']:,} products, {ids['detections']:,} detections "
          f"in {time.perf_counter() - t:.0f} s", file=sys.stderr)  # fmt: skip
    if ids_file is not None:
        ids_file.write_text(json.dumps(ids))
    return ids


def run(engine: str, args: argparse.Namespace, tmp: Path) -> list[tuple[str, ...]]:
    if args.keep:
        (url, ids_file), cleanup = _kept_db(engine, Path(args.keep), args), None
    else:
        (url, cleanup), ids_file = _make_db(engine, tmp), None
    reg = Registry(url)
    try:
        ids = _registry(reg, engine, args, ids_file)
        with reg.session() as s:  # a kept registry: its flat flagged bad by the last run
            s.execute(update(Product).where(Product.id == ids["flat"]).values(
                validity="ok", valid=True))  # fmt: skip

        def detection_lineage() -> int:
            with reg.session(write=False) as s:
                return len(lineage(s, resolve(s, f"detection:{ids['detection']}")).nodes)

        def flat_dependents() -> int:
            with reg.session(write=False) as s:
                return len(lineage(s, resolve(s, f"product:{ids['flat']}"), "dependents").nodes)

        def image_of_detection() -> int:
            with reg.session(write=False) as s:
                return resolve(s, f"detection:{ids['detection']}").product_id

        def stale() -> int:
            with reg.session(write=False) as s:
                return len(stale_products(s, obs_set=ids["obs_set"]))

        def stale_everywhere() -> int:
            with reg.session(write=False) as s:
                return len(stale_products(s))

        rows = []
        ms, n = timed(detection_lineage, args.repeat)
        root = timed(image_of_detection, 1)[1]
        ref, _ = timed(lambda: python_walk(reg, root, True), args.repeat)
        rows.append((engine, "lineage of one detection", f"{n} products", f"{ms:.1f} ms",
                     f"{ms / ref:.2f}", "< 50 ms"))  # fmt: skip
        ms, n = timed(flat_dependents, args.repeat)
        ref, _ = timed(lambda: python_walk(reg, ids["flat"], False), args.repeat)
        rows.append((engine, "dependents of one master flat", f"{n} products", f"{ms:.1f} ms",
                     f"{ms / ref:.2f}", ""))  # fmt: skip
        with reg.session() as s:
            s.execute(update(Product).where(Product.id == ids["flat"]).values(
                validity="bad", valid=False))  # fmt: skip
        ms, n = timed(stale, args.repeat)
        rows.append((engine, "stale listing of the night (its flat bad)", f"{n} products",
                     f"{ms:.1f} ms", "", "< 1 s"))  # fmt: skip
        if args.whole:
            ms, n = timed(stale_everywhere, 1)
            rows.append((engine, "stale listing of the whole registry", f"{n} products",
                         f"{ms:.1f} ms", "", ""))  # fmt: skip
        return rows
    finally:
        reg.dispose()
        if cleanup:
            cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--nights", type=int, default=100)
    ap.add_argument("--science", type=int, default=50)
    ap.add_argument("--ccds", type=int, default=18)
    ap.add_argument("--detections", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--whole", action="store_true", help="also list stale over the registry")
    ap.add_argument(
        "--keep",
        metavar="DIR",
        help="keep the built registries (SQLite file and PostgreSQL database) and reuse them "
        "in later runs of the same size",
    )
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmpd:
        for engine in args.engines.split(","):
            rows += run(engine, args, Path(tmpd))
    head = ("engine", "measure", "size", "median", "ratio to per-level Python walk", "target")
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
