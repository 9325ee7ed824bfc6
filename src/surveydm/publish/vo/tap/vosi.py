"""VOSI 1.1 documents (capabilities, availability, tables) and the DALI examples page, written
from the service's metadata and limits (TAPRegExt 1.0 for the TAP capability)."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from surveydm.publish.vo.tap.output import FORMATS
from surveydm.publish.vo.tap.service import TapLimits
from surveydm.publish.vo.tap.tables import TableMeta, adql_name

XSI = "http://www.w3.org/2001/XMLSchema-instance"

#: ADQL 2.1 optional features this service implements (TAPRegExt feature types).
FEATURES: dict[str, tuple[str, ...]] = {
    "ivo://ivoa.net/std/TAPRegExt#features-adqlgeo": (
        "POINT",
        "CIRCLE",
        "BOX",
        "POLYGON",
        "CENTROID",
        "CONTAINS",
        "INTERSECTS",
        "DISTANCE",
        "AREA",
        "COORD1",
        "COORD2",
        "COORDSYS",
    ),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-string": ("LOWER", "UPPER", "ILIKE"),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-sets": ("UNION", "EXCEPT", "INTERSECT"),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-common-table": ("WITH",),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-offset": ("OFFSET",),
    "ivo://ivoa.net/std/TAPRegExt#features-adql-type": ("CAST",),
}

#: Example queries of the DALI examples endpoint: (id, title, ADQL).
EXAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "cone",
        "Detections within 1 arcmin of a position",
        "SELECT TOP 100 id, ra, dec, band, mag FROM surveydm.detection "
        "WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 10.0, 20.0, 0.0167))",
    ),
    (
        "join",
        "Detections with the exposure they were measured on",
        "SELECT TOP 10 d.ra, d.dec, d.mag, m.filename, m.mjd_obs FROM surveydm.detection AS d "
        "JOIN surveydm.image AS i ON d.image_id = i.id JOIN surveydm.mosaic AS m "
        "ON i.mosaic_id = m.id",
    ),
    (
        "tables",
        "The published tables",
        "SELECT table_name, description FROM TAP_SCHEMA.tables ORDER BY table_index",
    ),
)


def _el(tag: str, text: str | None) -> str:
    return f"<{tag}>{escape(text)}</{tag}>" if text else ""


def capabilities(base_url: str, limits: TapLimits) -> str:
    """The VOSI capabilities document of the TAP service at ``base_url`` (no trailing /)."""
    feats = "".join(
        f"<languageFeatures type={quoteattr(t)}>"
        + "".join(f"<feature><form>{f}</form></feature>" for f in forms)
        + "</languageFeatures>"
        for t, forms in FEATURES.items()
    )
    formats = "".join(
        f"<outputFormat><mime>{escape(f.mime)}</mime>"
        + "".join(f"<alias>{escape(a)}</alias>" for a in f.aliases if "/" not in a)
        + "</outputFormat>"
        for f in FORMATS
    )

    http_upload = (
        '<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-http"/>'
        if limits.upload_http
        else ""
    )

    def vosi(std: str, path: str) -> str:
        return (
            f'<capability standardID="ivo://ivoa.net/std/{std}">'
            f'<interface xsi:type="vs:ParamHTTP"><accessURL use="full">'
            f"{escape(base_url)}/{path}</accessURL></interface></capability>"
        )

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
        f'xmlns:xsi="{XSI}" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
        'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">\n'
        '<capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">'
        '<interface xsi:type="vs:ParamHTTP" role="std" version="1.1">'
        f'<accessURL use="base">{escape(base_url)}</accessURL></interface>'
        "<language><name>ADQL</name>"
        '<version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>'
        '<version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
        "<description>ADQL 2.1, translated for the registry's engine (docs/vo.md)</description>"
        f"{feats}</language>{formats}"
        '<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-inline"/>'
        f"{http_upload}"
        f"<retentionPeriod><default>{int(limits.destruction_days * 86400)}</default>"
        "</retentionPeriod>"
        f"<executionDuration><default>{int(limits.async_time_limit_s)}</default>"
        f"<hard>{int(limits.async_time_limit_hard_s)}</hard></executionDuration>"
        f'<outputLimit><default unit="row">{limits.maxrec_default}</default>'
        f'<hard unit="row">{limits.maxrec_hard}</hard></outputLimit>'
        f'<uploadLimit><hard unit="byte">{limits.upload_max_bytes}</hard></uploadLimit>'
        "</capability>\n"
        + vosi("VOSI#capabilities", "capabilities")
        + vosi("VOSI#availability", "availability")
        + vosi("VOSI#tables", "tables")
        + vosi("DALI#examples", "examples")
        + "\n</vosi:capabilities>\n"
    )


def availability(available: bool, note: str) -> str:
    """The VOSI availability document."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">'
        f"<vosi:available>{'true' if available else 'false'}</vosi:available>"
        f"<vosi:note>{escape(note)}</vosi:note></vosi:availability>\n"
    )


def _table(t: TableMeta, detail: bool = True) -> str:
    cols = ""
    if detail:
        for c in t.columns:
            size = f" arraysize={quoteattr(c.arraysize)}" if c.arraysize else ""
            xt = f" extendedType={quoteattr(c.xtype)}" if c.xtype else ""
            flags = "<flag>indexed</flag>" if c.indexed else ""
            flags += "<flag>primary</flag>" if c.principal else ""
            cols += (
                f"<column>{_el('name', adql_name(c.name))}{_el('description', c.description)}"
                f"{_el('unit', c.unit)}{_el('ucd', c.ucd)}"
                f'<dataType xsi:type="vs:VOTableType"{size}{xt}>{c.datatype}</dataType>'
                f"{flags}</column>"
            )
        for k in t.foreign_keys:
            cols += (
                f"<foreignKey>{_el('targetTable', k.target_table)}<fkColumn>"
                f"{_el('fromColumn', k.from_column)}{_el('targetColumn', k.target_column)}"
                f"</fkColumn>{_el('description', k.description)}</foreignKey>"
            )
    return (
        f'<table type="{t.table_type}">{_el("name", t.qualified)}'
        f"{_el('description', t.description)}{cols}</table>"
    )


def tableset(tables: Sequence[TableMeta], detail: bool = True) -> str:
    """The VOSI tableset of ``tables``, grouped by schema (``detail=False``: names only)."""
    schemas: dict[str, list[TableMeta]] = {}
    for t in tables:
        schemas.setdefault(t.schema, []).append(t)
    body = "".join(
        f"<schema>{_el('name', s)}" + "".join(_table(t, detail) for t in ts) + "</schema>"
        for s, ts in schemas.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
        f'xmlns:xsi="{XSI}" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">'
        f"{body}</vosi:tableset>\n"
    )


def one_table(t: TableMeta) -> str:
    """The VOSI 1.1 document of one table (``/tables/<name>``)."""
    inner = _table(t)[len('<table type="table">') :]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
        f'xmlns:xsi="{XSI}" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
        f'type="{t.table_type}">{inner.replace("</table>", "</vosi:table>")}\n'
    )


def examples(base_url: str) -> str:
    """The DALI 1.1 examples document (XHTML with RDFa ``example`` elements)."""
    items = "".join(
        f'<div typeof="example" id="{i}" resource="#{i}">'
        f'<h2 property="name">{escape(title)}</h2>'
        f'<pre property="query">{escape(q)}</pre></div>\n'
        for i, title, q in EXAMPLES
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" vocab="http://www.ivoa.net/rdf/examples#">'
        "<head><title>surveydm TAP examples</title></head><body>"
        f'<h1>Example queries for <a href="{escape(base_url)}">this TAP service</a></h1>\n'
        f"{items}</body></html>\n"
    )
