"""ADQL 2.1 parsing and translation without a database: syntax errors say where, names are
checked against the published catalog and rewritten from metadata, functions are whitelisted,
region constraints get a HEALPix prefilter, and the spherical geometry reduced to numbers agrees
with astropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from surveydm.publish.vo.adql import AdqlError, AdqlSyntaxError, translate
from surveydm.publish.vo.adql import geometry as geo
from surveydm.publish.vo.tap.tables import registry_tables
from surveydm.publish.vo.tap.tap_schema import build_catalog

CATALOG, VIRTUAL = build_catalog(registry_tables())


def _sql(query: str, engine: str = "sqlite") -> str:
    return translate(query, CATALOG, engine, VIRTUAL).sql


def test_syntax_errors_give_line_and_column() -> None:
    with pytest.raises(AdqlSyntaxError, match="line 2, column 7"):
        _sql("SELECT ra FROM surveydm.detection\nWHERE WHERE")
    with pytest.raises(AdqlSyntaxError, match="empty"):
        _sql("   ")
    with pytest.raises(AdqlSyntaxError):
        _sql("SELECT ra FROM surveydm.detection; SELECT 1 FROM surveydm.detection")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT nope FROM surveydm.detection", "no column 'nope'"),
        ("SELECT ra FROM surveydm.nothere", "no table 'surveydm.nothere'"),
        ("SELECT pg_sleep(1) FROM surveydm.detection", "unknown function PG_SLEEP"),
        ("SELECT id FROM surveydm.detection AS a, surveydm.image AS b", "ambiguous"),
        ("SELECT POINT(1, 2) + 1 FROM surveydm.detection", "is a geometry"),
        (
            "SELECT ra FROM surveydm.detection WHERE "
            "CONTAINS(POINT('GALACTIC', ra, dec), CIRCLE(1, 2, 3)) = 1",
            "not supported",
        ),
        (
            "SELECT ra FROM surveydm.detection WHERE "
            "CONTAINS(POINT(ra, dec), POLYGON(0, 0, 170, 0, 0, 80, 200, -10)) = 1",
            "hemisphere",
        ),
    ],
)
def test_translation_errors_name_the_problem(query: str, message: str) -> None:
    with pytest.raises(AdqlError, match=message):
        _sql(query)


def test_identifiers_and_strings_are_rewritten_not_copied() -> None:
    sql = _sql(
        'SELECT TOP 3 D.RA AS "My Ra" FROM SurveyDM.Detection AS d '
        "WHERE d.band = 'r'' OR 1=1 --' ORDER BY 1"
    )
    assert '"t0"."ra"' in sql and "'r'' OR 1=1 --'" in sql and "LIMIT 3" in sql
    assert "My Ra" not in sql  # output names live in the metadata, never in the SQL


def test_cone_constraint_gets_a_healpix_prefilter_on_both_engines() -> None:
    q = (
        "SELECT id FROM surveydm.detection WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        "CIRCLE('ICRS', 150, 2, 0.01))"
    )
    for engine in ("sqlite", "postgresql"):
        sql = _sql(q, engine)
        assert '"t0"."healpix" BETWEEN' in sql
    # not on a table without a position index, nor when negated as a value
    assert "healpix" not in _sql(
        "SELECT CONTAINS(POINT(ra, dec), CIRCLE(150, 2, 0.01)) FROM surveydm.detection"
    )
    assert "least(" in _sql(
        "SELECT DISTANCE(POINT(ra, dec), POINT(1, 2)) FROM surveydm.detection", "postgresql"
    )


def test_set_operations_with_top_and_offset() -> None:
    sql = _sql(
        "SELECT TOP 2 id FROM surveydm.detection UNION ALL SELECT id FROM surveydm.image "
        "ORDER BY 1 OFFSET 1"
    )
    assert "UNION ALL" in sql and "LIMIT 2" in sql and sql.endswith("LIMIT -1 OFFSET 1")
    with pytest.raises(AdqlError, match="same number of columns"):
        _sql("SELECT id, ra FROM surveydm.detection EXCEPT SELECT id FROM surveydm.image")


def test_polygon_and_box_against_astropy() -> None:
    rng = np.random.default_rng(3)
    poly = geo.polygon_from_numbers([10, -5, 14, -6, 15, -1, 12, 1, 11, -2])
    # area: the same polygon split into a fan of triangles, each via l'Huilier's theorem
    ra, dec = rng.uniform(8, 17, 400), rng.uniform(-8, 3, 400)
    inside = [_inside_brute(poly, a, d) for a, d in zip(ra, dec, strict=True)]
    assert 20 < sum(inside) < 380
    c = SkyCoord(10 * u.deg, -5 * u.deg).separation(SkyCoord(14 * u.deg, -6 * u.deg)).deg
    assert abs(geo.angular_distance(10, -5, 14, -6) - c) < 1e-9
    box = geo.box_polygon(150, 2, 1, 0.5)
    assert abs(box.area - 0.5) < 1e-3  # a 1 x 0.5 deg box near the equator
    assert abs(geo.circle_area(1.0) - math.pi) < 1e-3


def _inside_brute(poly: geo.ConstPolygon, ra: float, dec: float) -> bool:
    """Winding number of the vertices seen from the point, on the unit sphere."""
    p = geo.unit_vector(ra, dec)
    vs = [geo.unit_vector(*v) for v in poly.vertices]
    total = 0.0
    for i in range(len(vs)):
        a, b = vs[i], vs[(i + 1) % len(vs)]
        ta = a - p * np.dot(a, p)
        tb = b - p * np.dot(b, p)
        total += math.atan2(np.dot(np.cross(ta, tb), p), np.dot(ta, tb))
    return abs(total) > math.pi


def test_polygon_sql_matches_the_spherical_test() -> None:
    import sqlite3

    rng = np.random.default_rng(5)
    poly = geo.polygon_from_numbers([10, -5, 14, -6, 15, -1, 12, 1, 11, -2])
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE p(ra REAL, dec REAL)")
    pts = list(zip(rng.uniform(8, 17, 500), rng.uniform(-8, 3, 500), strict=True))
    conn.executemany("INSERT INTO p VALUES (?, ?)", pts)
    cond = geo.Sql("sqlite").in_polygon("ra", "dec", poly)
    got = {(a, d) for a, d in conn.execute(f"SELECT ra, dec FROM p WHERE {cond}")}
    want = {(a, d) for a, d in pts if _inside_brute(poly, a, d)}
    assert got == want and len(want) > 20


def test_binary2_batches_keep_nulls_and_big_integers() -> None:
    import io

    from astropy.io.votable import parse_single_table

    from surveydm.publish.vo.adql.translate import OutputColumn
    from surveydm.publish.vo.tap.output import stream_votable
    from surveydm.publish.vo.tap.tables import ColumnMeta

    cols = (OutputColumn(ColumnMeta("n", "long")), OutputColumn(ColumnMeta("x", "double")))
    rows = [(2**60 + 1, 1.5), (None, None), (-3, 2.25)]
    for kind in ("binary2", "tabledata"):
        doc = b"".join(stream_votable(cols, iter([rows]), kind, {}, lambda: False))
        t = parse_single_table(io.BytesIO(doc), verify="exception").to_table()
        assert t["n"][0] == 2**60 + 1 and t["n"].mask[1] and t["n"][2] == -3
        assert t["x"][0] == 1.5 and t["x"].mask[1] and t["x"][2] == 2.25
    # a batch without NULLs takes the direct path (row tuples into big-endian fields)
    no_nulls = [rows[0], rows[2]]
    doc = b"".join(stream_votable(cols, iter([no_nulls]), "binary2", {}, lambda: False))
    t = parse_single_table(io.BytesIO(doc), verify="exception").to_table()
    assert list(t["n"]) == [2**60 + 1, -3] and list(t["x"]) == [1.5, 2.25]
    assert not np.ma.getmaskarray(t["n"]).any()


def test_cone_ranges_cover_the_cells_of_astropy_healpix() -> None:
    # db.spatial calls astropy_healpix's C cone search with plain degrees: the same cells as
    # the public HEALPix.cone_search_lonlat
    from astropy_healpix import HEALPix

    from surveydm.db.spatial import HEALPIX_ORDER, cone_ranges

    rng = np.random.default_rng(3)
    for ra, dec, r in zip(
        rng.uniform(0, 360, 40), rng.uniform(-90, 90, 40), 10 ** rng.uniform(-4, 1, 40), strict=True
    ):
        order = int(np.clip(np.floor(np.log2(58.6 / r)), 0, HEALPIX_ORDER))
        want = HEALPix(nside=2**order, order="nested").cone_search_lonlat(
            ra * u.deg, dec * u.deg, radius=r * u.deg
        )
        shift = 2 * (HEALPIX_ORDER - order)
        got = [
            c for lo, hi in cone_ranges(ra, dec, r) for c in range(lo >> shift, (hi >> shift) + 1)
        ]
        assert got == sorted(want.tolist())


def test_prefilter_cover_holds_every_point_of_the_cone_and_is_tighter() -> None:
    # cover_ranges: cells COVER_REFINE orders finer than cone_ranges'; every position within
    # the radius must fall in a range, and the cover must not be larger than cone_ranges'
    from surveydm.db.spatial import cone_ranges, healpix_index
    from surveydm.publish.vo.adql.geometry import cover_ranges

    rng = np.random.default_rng(5)
    for ra, dec, r in zip(
        rng.uniform(0, 360, 30), rng.uniform(-89, 89, 30), 10 ** rng.uniform(-3, 0, 30), strict=True
    ):
        ranges = cover_ranges(ra, dec, r)
        assert 0 < len(ranges) <= 64
        # points uniformly on the cap of radius r (inside, up to the edge)
        rho = r * np.sqrt(rng.uniform(0, 1, 2000)) * 0.999999
        pa = rng.uniform(0, 2 * np.pi, 2000)
        c = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(pa * u.rad, rho * u.deg)
        hp = healpix_index(c.ra.deg, c.dec.deg)
        lo = np.array([a for a, _ in ranges])
        hi = np.array([b for _, b in ranges])
        inside = ((hp[:, None] >= lo) & (hp[:, None] <= hi)).any(axis=1)
        assert inside.all()
        size = sum(b - a + 1 for a, b in ranges)
        assert size <= sum(b - a + 1 for a, b in cone_ranges(ra, dec, r))


def test_template_cache_gives_the_trees_of_a_fresh_parse() -> None:
    from surveydm.publish.vo.adql import parser

    queries = [
        "SELECT TOP 5 id FROM surveydm.detection WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        "CIRCLE('ICRS', 150.123, -2.5, 0.0166667)) AND mag < 1e3 AND x > .5",
        "SELECT TOP 7 id FROM surveydm.detection WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        "CIRCLE('ICRS', 10.5, 2.25, 1.0)) AND mag < 2E-3 AND x > 3.",
        "SELECT 0x1F, t0.a1 FROM x AS t0 WHERE a = 3 -- 42 and 1.0\n AND b = '12' OFFSET 9",
        'SELECT "1a" FROM x WHERE y = 1 ORDER BY 1',
    ]
    for q in queries * 2:  # the second round comes from the cache
        cached, fresh = parser.parse(q), parser._parse(q)
        assert cached == fresh
        assert [t.type for t in cached.scan_values(lambda v: True)] == [
            t.type for t in fresh.scan_values(lambda v: True)
        ]
    assert parser._template_tree.cache_info().hits >= 4
    # numbers in the query end up in the SQL, not the template's placeholders
    from surveydm.publish.vo.adql.parser import _template

    assert _template("SELECT TOP 3 a FROM t WHERE b < 2.5")[1] == ["3", "2.5"]
