"""The TAP service object: limits, the catalog ADQL sees, and query preparation + execution
shared by the synchronous endpoint and the asynchronous jobs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from surveydm.errors import SurveydmError
from surveydm.publish.sqlbrowser import SqlBrowser
from surveydm.publish.vo.adql.translate import Translation, translate
from surveydm.publish.vo.tap import output
from surveydm.publish.vo.tap.execute import BATCH_ROWS, arrow_batches, run_sql
from surveydm.publish.vo.tap.tables import Catalog, ColumnMeta, TableMeta, registry_tables
from surveydm.publish.vo.tap.tap_schema import VirtualTable, build_catalog


class TapRequestError(SurveydmError):
    """A bad TAP request (parameter missing or invalid); answered with an error VOTable."""


@dataclass(frozen=True)
class TapLimits:
    """Service limits (DaCHS-like defaults; docs/vo.md).

    Attributes:
        maxrec_default: rows returned when the request gives no MAXREC.
        maxrec_hard: the most rows any request may ask for.
        sync_time_limit_s: statement time limit of a synchronous query, s.
        async_time_limit_s: default execution duration of an asynchronous job, s.
        async_time_limit_hard_s: the longest execution duration a job may ask for, s.
        destruction_days: days an asynchronous job is kept after creation.
        max_running_jobs: asynchronous jobs running at once (others wait QUEUED).
        upload_max_bytes: largest UPLOAD VOTable, bytes.
        upload_max_rows: most rows of one UPLOAD table.
        upload_http: fetch UPLOAD tables given by http(s) URL.
        upload_http_private: also from loopback, private and link-local addresses (off: the
            service must not become a way into the internal network).
        upload_fetch_timeout_s: time limit of such a fetch, s.
    """

    maxrec_default: int = 20_000
    maxrec_hard: int = 16_000_000
    sync_time_limit_s: float = 60.0
    async_time_limit_s: float = 3600.0
    async_time_limit_hard_s: float = 4 * 3600.0
    destruction_days: float = 7.0
    max_running_jobs: int = 2
    upload_max_bytes: int = 10_000_000
    upload_max_rows: int = 50_000
    upload_http: bool = True
    upload_http_private: bool = False
    upload_fetch_timeout_s: float = 10.0


@dataclass(frozen=True)
class TapQuery:
    """A validated TAP query: its translation, output format and row limit."""

    adql: str
    translation: Translation
    fmt: output.OutputFormat
    maxrec: int


def param(params: dict[str, str], name: str) -> str | None:
    """A TAP parameter by case-insensitive name (TAP 1.1 section 2.3: names are not case
    sensitive)."""
    for k, v in params.items():
        if k.lower() == name.lower():
            return v
    return None


class TapService:
    """TAP over one registry: ``browser`` gives the read-only connections."""

    def __init__(self, browser: SqlBrowser, limits: TapLimits | None = None) -> None:
        self.browser = browser
        self.limits = limits or TapLimits()
        self.engine = browser.backend

    @cached_property
    def published(self) -> list[TableMeta]:
        """The published registry tables."""
        return registry_tables()

    @cached_property
    def catalog_and_virtual(self) -> tuple[Catalog, dict[str, VirtualTable]]:
        """The catalog (TAP_SCHEMA + published tables) and the VALUES-served tables."""
        return build_catalog(self.published, schema_descriptions={"surveydm": "survey registry"})

    def prepare(
        self,
        params: dict[str, str],
        files: dict[str, bytes] | None = None,
        filters: dict[str, str] | None = None,
    ) -> TapQuery:
        """Validate the request parameters (LANG, QUERY, RESPONSEFORMAT/FORMAT, MAXREC,
        UPLOAD with its ``files`` by parameter name) and translate the query, reading the
        published tables through the caller's row ``filters``
        (:func:`surveydm.publish.vo.tap.access.row_filters`; none: every row).

        Raises:
            TapRequestError: missing/unsupported LANG, REQUEST or format, bad MAXREC or UPLOAD.
            AdqlSyntaxError, AdqlError: the query does not parse or translate.
        """
        request = param(params, "REQUEST")
        if request is not None and request.lower() != "doquery":
            raise TapRequestError(f"REQUEST={request} is not supported; use doQuery")
        lang = param(params, "LANG")
        if lang is None:
            raise TapRequestError("missing parameter LANG (use LANG=ADQL)")
        if lang.upper() not in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
            raise TapRequestError(f"LANG={lang} is not supported; use ADQL")
        query = param(params, "QUERY")
        if not query or not query.strip():
            raise TapRequestError("missing parameter QUERY")
        fmt_name = param(params, "RESPONSEFORMAT") or param(params, "FORMAT")
        fmt = output.find_format(fmt_name)
        if fmt is None:
            raise TapRequestError(f"RESPONSEFORMAT={fmt_name} is not supported")
        maxrec = self.maxrec(param(params, "MAXREC"))
        catalog, virtual = self.catalog_and_virtual
        uploads = upload_tables(param(params, "UPLOAD"), files or {}, self.limits)
        if uploads:
            catalog = Catalog(tables=dict(catalog.tables))
            virtual = dict(virtual)
            for vt in uploads:
                catalog.add(vt.meta)
                virtual[vt.meta.sql_name] = vt
        translation = translate(query, catalog, self.engine, virtual, filters)
        return TapQuery(query, translation, fmt, maxrec)

    def maxrec(self, value: str | None) -> int:
        """The row limit of a request: MAXREC (default and hard limit from :class:`TapLimits`).

        Raises:
            TapRequestError: not a non-negative integer.
        """
        if value is None or value == "":
            return self.limits.maxrec_default
        try:
            n = int(value)
        except ValueError:
            raise TapRequestError(f"MAXREC must be an integer, not {value!r}") from None
        if n < 0:
            raise TapRequestError("MAXREC must not be negative")
        return min(n, self.limits.maxrec_hard)

    def stream(self, q: TapQuery, time_limit_s: float) -> Iterator[bytes]:
        """Execute ``q`` and yield the result document in pieces.

        The first piece is produced only after the statement has started, so errors of the
        statement itself raise before anything is sent (the caller answers with an error
        document); later errors end a VOTable with ``QUERY_STATUS=ERROR``.

        Raises:
            TapExecutionError, TapTimeout: the database refused or stopped the statement.
        """
        top = q.translation.top
        max_rows = q.maxrec + 1 if top is None or top > q.maxrec else top  # +1: overflow?
        if q.fmt.kind == "binary2" and max_rows > BATCH_ROWS + 1:
            columnar = self._stream_columnar(q, time_limit_s, max_rows)
            if columnar is not None:
                return columnar
        sql, encoded = q.translation.sql, False
        if q.fmt.kind == "binary2" and self.engine == "postgresql":
            record_sql = output.binary2_record_sql(q.translation.columns, sql)
            if record_sql is not None:  # the server encodes the records
                sql, encoded = record_sql, True
        ctx = run_sql(self.browser, sql, time_limit_s, binary=encoded, max_rows=max_rows)
        rows = ctx.__enter__()
        try:
            state = {"n": 0, "overflow": False}
            batches = rows.batches()
            first = self._limited(next(batches, []), state, q.maxrec)
            if encoded:
                packed_first, columns = first, q.translation.columns
            else:
                packed_first = output.pack_rows(q.translation.columns, first)
                columns = output.resolve_types(q.translation.columns, packed_first)
        except BaseException:
            ctx.__exit__(None, None, None)
            raise
        return self._emit(q, ctx, batches, packed_first, columns, state, encoded)

    def _stream_columnar(
        self, q: TapQuery, time_limit_s: float, max_rows: int
    ) -> Iterator[bytes] | None:
        """A long BINARY2 result of fixed-size numeric columns read as Arrow record batches
        and encoded with numpy (:func:`execute.arrow_batches`, :func:`output.
        binary2_arrow_encoder`); None when that path does not apply. The first batch is read
        before returning, so statement errors raise here."""
        encode = output.binary2_arrow_encoder(q.translation.columns)
        if encode is None:
            return None
        floats = [c.meta.datatype in ("double", "float") for c in q.translation.columns]
        ctx = arrow_batches(self.browser, q.translation.sql, time_limit_s, max_rows, floats)
        batches = ctx.__enter__()
        try:
            if batches is None:
                ctx.__exit__(None, None, None)
                return None
            first = next(batches, None)
        except BaseException:
            ctx.__exit__(None, None, None)
            raise
        state = {"n": 0, "overflow": False}

        def packed() -> Iterator[bytes]:
            batch = first
            while batch is not None:
                room = q.maxrec - state["n"]
                if batch.num_rows > room:
                    state["overflow"] = True
                    batch = batch.slice(0, max(room, 0))
                state["n"] += batch.num_rows
                if batch.num_rows:
                    yield encode(batch)
                if state["overflow"]:
                    return
                batch = next(batches, None)

        def document() -> Iterator[bytes]:
            try:
                yield from output.stream_votable(
                    q.translation.columns,
                    packed(),
                    "binary2",
                    {"QUERY": q.adql},
                    lambda: state["overflow"],
                )
            finally:
                ctx.__exit__(None, None, None)

        return document()

    def _emit(self, q, ctx, batches, packed_first, columns, state, encoded) -> Iterator[bytes]:
        try:

            def all_batches() -> Iterator[list[list[Any]]]:
                if packed_first:
                    yield packed_first
                if state["overflow"] or state["n"] >= q.maxrec:
                    if state["n"] >= q.maxrec and not state["overflow"]:
                        extra = next(batches, [])
                        state["overflow"] = bool(extra)
                    return
                for batch in batches:
                    cut = self._limited(batch, state, q.maxrec)
                    if cut:
                        yield cut if encoded else output.pack_rows(q.translation.columns, cut)
                    if state["overflow"]:
                        return
                    if state["n"] >= q.maxrec:
                        state["overflow"] = bool(next(batches, []))
                        return

            kind = q.fmt.kind
            if kind in ("tabledata", "binary2"):
                yield from output.stream_votable(
                    columns,
                    all_batches(),
                    kind,
                    {"QUERY": q.adql},
                    lambda: state["overflow"],
                    encoded=encoded,
                )
            elif kind in ("csv", "tsv"):
                yield from output.stream_delimited(
                    columns, all_batches(), "," if kind == "csv" else "\t"
                )
            else:
                every = [r for b in all_batches() for r in b]
                yield output.fits_bytes(columns, every)
        finally:
            ctx.__exit__(None, None, None)

    @staticmethod
    def _limited(batch: list[tuple], state: dict, maxrec: int) -> list[tuple]:
        room = maxrec - state["n"]
        if len(batch) > room:
            state["overflow"] = True
            batch = batch[: max(room, 0)]
        state["n"] += len(batch)
        return batch


def upload_tables(
    spec: str | None, files: dict[str, bytes], limits: TapLimits
) -> list[VirtualTable]:
    """The ``TAP_UPLOAD`` tables of an UPLOAD parameter (DALI 1.1 section 3.4.5:
    ``name,param:field[;name2,param:field2]``) read from the posted VOTables.

    Inline uploads (``param:``) are read from the posted files; http(s) URLs are fetched
    when :attr:`TapLimits.upload_http` is on (the default, as TAPRegExt requires of a service
    that takes uploads; turn it off where the server must not make outgoing requests).

    Raises:
        TapRequestError: bad syntax, URL uploads, missing file, too big, not a VOTable.
    """
    if not spec:
        return []
    out = []
    for item in spec.split(";"):
        name, _, source = item.partition(",")
        name = name.strip()
        if not name.isidentifier() or not name[0].isalpha():
            raise TapRequestError(f"UPLOAD table name {name!r} is not an ADQL identifier")
        if source.startswith("param:"):
            data = files.get(source[len("param:") :])
            if data is None:
                raise TapRequestError(f"UPLOAD {name}: no posted file {source[6:]!r}")
        elif limits.upload_http:
            data = _fetch_upload(name, source, limits)
        else:
            raise TapRequestError(f"UPLOAD {name}: only inline uploads (param:) are accepted")
        if len(data) > limits.upload_max_bytes:
            raise TapRequestError(
                f"UPLOAD {name}: {len(data)} bytes is over the limit of "
                f"{limits.upload_max_bytes} bytes"
            )
        out.append(_votable_upload(name, data, limits))
    return out


_UPLOAD_TYPES = {
    "boolean": "boolean",
    "unsignedByte": "short",
    "short": "short",
    "int": "int",
    "long": "long",
    "float": "float",
    "double": "double",
    "char": "char",
    "unicodeChar": "char",
}


def _votable_upload(name: str, data: bytes, limits: TapLimits) -> VirtualTable:
    import io

    import numpy as np
    from astropy.io.votable import parse_single_table

    try:
        votable = parse_single_table(io.BytesIO(data))
        table = votable.to_table()
    except Exception as exc:  # noqa: BLE001  (any parse failure is the user's file)
        raise TapRequestError(f"UPLOAD {name}: not a readable VOTable ({exc})") from None
    if len(table) > limits.upload_max_rows:
        raise TapRequestError(
            f"UPLOAD {name}: {len(table)} rows is over the limit of {limits.upload_max_rows}"
        )
    columns: list[ColumnMeta] = []
    values: list[list] = []
    for fld, col in zip(votable.fields, table.itercols(), strict=True):
        dt = _UPLOAD_TYPES.get(fld.datatype)
        if dt is None or (col.ndim > 1 and dt != "char"):
            raise TapRequestError(
                f"UPLOAD {name}: column {fld.name!r} ({fld.datatype}[{fld.arraysize}]) "
                "is not supported: use scalar numbers, booleans or strings"
            )
        conv = {"double": float, "float": float, "boolean": bool, "char": str}.get(dt, int)
        mask = np.ma.getmaskarray(col)
        vals = [None if m else conv(v) for v, m in zip(col.tolist(), mask, strict=True)]
        if conv is float:
            vals = [None if v is None or v != v else v for v in vals]
        columns.append(
            ColumnMeta(
                name=fld.name,
                datatype=dt,
                arraysize="*" if dt == "char" else None,
                xtype=fld.xtype,
                unit=str(fld.unit) if fld.unit is not None else None,
                ucd=fld.ucd,
                description=(fld.description or "").strip(),
            )
        )
        values.append(vals)
    rows = tuple(zip(*values, strict=True)) if values else ()
    meta = TableMeta(
        "TAP_UPLOAD", name, f"tap_upload_{name.lower()}", "uploaded table", tuple(columns)
    )
    return VirtualTable(meta, rows)


def _fetch_upload(name: str, url: str, limits: TapLimits) -> bytes:
    """The bytes of an UPLOAD given by an http(s) URL (TAPRegExt ``upload-http``), read with a
    timeout and at most ``upload_max_bytes``.

    Raises:
        TapRequestError: other schemes, unreachable, or too big.
    """
    import urllib.error
    import urllib.request

    if not url.lower().startswith(("http://", "https://")):
        raise TapRequestError(f"UPLOAD {name}: only param: and http(s) URLs are accepted")
    if not limits.upload_http_private:
        _refuse_private(name, url)
    try:
        with urllib.request.urlopen(url, timeout=limits.upload_fetch_timeout_s) as resp:
            data = resp.read(limits.upload_max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TapRequestError(f"UPLOAD {name}: cannot read {url}: {exc}") from None
    return data


def _refuse_private(name: str, url: str) -> None:
    """Refuse an upload URL whose host resolves to a loopback, private, link-local or reserved
    address (server-side request forgery).

    Raises:
        TapRequestError: such an address, or a host that does not resolve.
    """
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise TapRequestError(f"UPLOAD {name}: cannot resolve {host!r}: {exc}") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved:
            raise TapRequestError(
                f"UPLOAD {name}: {host} is a local or private address; post the table "
                "inline (UPLOAD=name,param:field) instead"
            )
