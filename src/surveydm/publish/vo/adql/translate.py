"""Translate a parsed ADQL 2.1 query into SQL for SQLite or PostgreSQL.

The query text never reaches the database: the SQL is rebuilt from the parse tree, every table
and column is looked up in the published :class:`~surveydm.publish.vo.tap.tables.Catalog` and
written from its metadata (quoted), every function must be an ADQL function (or one of the
optional ones of ADQL 2.1 section 2.3), and literals are re-rendered from their parsed values.
Geometry is reduced as :mod:`.geometry` describes; ``CONTAINS(...) = 1`` on a table's position
becomes a HEALPix range prefilter AND the exact test.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from lark import Token, Tree

from surveydm.errors import SurveydmError
from surveydm.publish.vo.adql import geometry as geo
from surveydm.publish.vo.adql.parser import AdqlSyntaxError, parse
from surveydm.publish.vo.tap.tables import Catalog, ColumnMeta, Position

#: Most tables one query may join (runaway joins are refused before they reach the database).
MAX_TABLES = 16


class AdqlError(SurveydmError):
    """The query is valid ADQL syntax but cannot be run: unknown table, column or function,
    unsupported geometry, ambiguous name. The message says which."""


@dataclass(frozen=True)
class OutputColumn:
    """One column of the result: its metadata and how many SQL columns carry it (a POINT is 2,
    a CIRCLE 3, a POLYGON 2 per vertex; the writer packs them into one DALI array)."""

    meta: ColumnMeta
    width: int = 1


@dataclass(frozen=True)
class Translation:
    """The SQL to run and the columns it yields; ``top`` is the query's own row limit."""

    sql: str
    columns: tuple[OutputColumn, ...]
    top: int | None = None


# ------------------------------------------------------------------------ value expressions
@dataclass
class Val:
    """A translated scalar expression: SQL text, the column it comes from (if a plain column
    reference), its type when known, and whether it is a constant number."""

    sql: str
    meta: ColumnMeta | None = None
    datatype: str = ""
    const: float | None = None
    text: str | None = None
    column: tuple[str, str] | None = None  # (sql alias, column name)


@dataclass
class GPoint:
    ra: Val
    dec: Val


@dataclass
class GCircle:
    center: GPoint
    radius: Val


@dataclass
class GPolygon:
    poly: geo.ConstPolygon


Geom = GPoint | GCircle | GPolygon


@dataclass
class Source:
    """One FROM item: the name the query uses, the SQL alias, and its columns by lower name."""

    names: tuple[str, ...]
    sql_alias: str
    columns: dict[str, tuple[str, ColumnMeta]]
    position: Position | None = None


@dataclass
class Scope:
    sources: list[Source] = field(default_factory=list)
    parent: Scope | None = None
    aliases: dict[str, Val] = field(default_factory=dict)


_NUMERIC = {"short": 1, "int": 2, "long": 3, "float": 4, "double": 5}


def _num_type(*vals: Val) -> str:
    types = [v.datatype for v in vals]
    if any(t == "" for t in types):
        return ""
    if all(t in _NUMERIC for t in types):
        return max(types, key=lambda t: _NUMERIC[t])
    return ""


#: Words that structure a query: never a regular identifier (delimit them: "from").
_STRUCTURE_WORDS = frozenset(
    {
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP",
        "ORDER",
        "HAVING",
        "JOIN",
        "ON",
        "UNION",
        "EXCEPT",
        "INTERSECT",
        "AND",
        "OR",
        "NOT",
        "AS",
        "BY",
        "TOP",
        "OFFSET",
        "WITH",
        "DISTINCT",
        "ALL",
        "IS",
        "NULL",
        "IN",
        "BETWEEN",
        "LIKE",
        "ILIKE",
        "EXISTS",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "INNER",
        "LEFT",
        "RIGHT",
        "FULL",
        "OUTER",
        "NATURAL",
        "CROSS",
        "USING",
    }
)


def _ident(tree: Tree) -> str:
    tok: Token = tree.children[0]
    if tok.type == "DELIMITED_ID":
        return tok.value[1:-1].replace('""', '"')
    if tok.value.upper() in _STRUCTURE_WORDS:
        raise AdqlSyntaxError(
            f"ADQL syntax error at line {tok.line}, column {tok.column}: {tok.value!r} is a "
            'reserved word (write it "delimited" to use it as a name)'
        )
    return tok.value


def _names(tree: Tree) -> list[str]:
    return [_ident(c) for c in tree.children]


def quote(name: str) -> str:
    """A double-quoted SQL identifier."""
    if "\x00" in name:
        raise AdqlError("identifiers may not contain NUL characters")
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: object, engine: str) -> str:
    """A value as an SQL literal (strings quoted with '' doubled; non-finite floats NULL)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return ("1" if value else "0") if engine == "sqlite" else ("TRUE" if value else "FALSE")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "NULL"
    text = str(value)
    if "\x00" in text:
        raise AdqlError("strings may not contain NUL characters")
    return "'" + text.replace("'", "''") + "'"


_MATH_1 = {
    "abs": "abs",
    "ceiling": "ceil",
    "degrees": "degrees",
    "exp": "exp",
    "floor": "floor",
    "log": "ln",
    "log10": "log10",
    "radians": "radians",
    "sqrt": "sqrt",
    "acos": "acos",
    "asin": "asin",
    "atan": "atan",
    "cos": "cos",
    "sin": "sin",
    "tan": "tan",
}
_MATH_2 = {"atan2": "atan2", "mod": "mod", "power": "power"}
_AGGREGATES = {"count", "sum", "avg", "min", "max"}
_GEOMETRY = {
    "point",
    "circle",
    "box",
    "polygon",
    "contains",
    "intersects",
    "distance",
    "area",
    "coord1",
    "coord2",
    "coordsys",
    "centroid",
    "region",
}
_CAST_TYPES = {
    "smallint": ("SMALLINT", "INTEGER", "short"),
    "integer": ("INTEGER", "INTEGER", "int"),
    "int": ("INTEGER", "INTEGER", "int"),
    "bigint": ("BIGINT", "INTEGER", "long"),
    "real": ("REAL", "REAL", "float"),
    "double precision": ("DOUBLE PRECISION", "REAL", "double"),
    "char": ("CHAR", "TEXT", "char"),
    "varchar": ("VARCHAR", "TEXT", "char"),
    "timestamp": ("TIMESTAMP", "TEXT", "char"),
}


class Translator:
    """Translates one ADQL parse tree for ``engine`` ('sqlite' or 'postgresql') against
    ``catalog``; ``virtual`` maps SQL names of tables served from VALUES rows to them."""

    def __init__(
        self,
        catalog: Catalog,
        engine: str,
        virtual: dict | None = None,
        filters: dict[str, str] | None = None,
    ) -> None:
        if engine not in ("sqlite", "postgresql"):
            raise AdqlError(f"no ADQL translation for the {engine} engine")
        self.catalog = catalog
        self.engine = engine
        self.sql = geo.Sql(engine)
        self.virtual = virtual or {}
        self.filters = filters or {}
        self.ctes_needed: dict[str, str] = {}
        self.user_ctes: dict[str, Source] = {}
        self._alias_counter = itertools.count()
        self.n_tables = 0
        self.sources: list[Source] = []  # every table source of the query, for prefilters

    # ---------------------------------------------------------------- queries
    def translate(self, tree: Tree) -> Translation:
        query = tree.children[0]
        sql, outputs, top = self.query(query, None, top_level=True)
        if self.ctes_needed:
            with_sql = ", ".join(self.ctes_needed.values())
            if sql.startswith("WITH "):
                sql = f"WITH {with_sql}, {sql[5:]}"
            else:
                sql = f"WITH {with_sql} {sql}"
        return Translation(sql=sql, columns=tuple(outputs), top=top)

    def query(
        self, tree: Tree, parent: Scope | None, top_level: bool = False
    ) -> tuple[str, list[OutputColumn], int | None]:
        with_sql = ""
        body = None
        order = None
        offset = None
        for child in tree.children:
            if child.data == "with_clause":
                with_sql = self.with_clause(child, parent)
            elif child.data == "order_by":
                order = child
            elif child.data == "offset_clause":
                offset = int(child.children[0])
            else:
                body = child
        assert body is not None
        if body.data == "select_core":
            sql, outputs, scope, top = self.select_core(body, parent)
        else:
            sql, outputs, scope, top = self.set_expr(body, parent), None, None, None
            sql, outputs = sql
        if order is not None:
            sql += " ORDER BY " + ", ".join(
                self.sort_key(k, scope, outputs) for k in order.children
            )
        if top is not None:
            sql += f" LIMIT {top}"
        if offset is not None:
            if top is None and self.engine == "sqlite":
                sql += " LIMIT -1"
            sql += f" OFFSET {offset}"
        if with_sql:
            sql = f"WITH {with_sql} {sql}"
        return sql, outputs, top

    def with_clause(self, tree: Tree, parent: Scope | None) -> str:
        parts = []
        for cte in tree.children:
            name = _ident(cte.children[0])
            inner, outputs, _ = self.query(cte.children[1], parent)
            sql_name = f"cte_{len(self.user_ctes)}"
            self.user_ctes[name.lower()] = self._derived_source((name,), sql_name, outputs)
            parts.append(f"{quote(sql_name)} AS ({inner})")
        return ", ".join(parts)

    def set_expr(self, tree: Tree, parent: Scope | None) -> tuple[str, list[OutputColumn]]:
        if tree.data == "select_core":
            sql, outputs, _, top = self.select_core(tree, parent)
            if top is not None:
                sql = f"SELECT * FROM ({sql} LIMIT {top}) AS {quote(self._alias())}"
            return sql, outputs
        if tree.data == "sub_set":
            sql, outputs, _ = self.query(tree.children[0], parent)
            return f"SELECT * FROM ({sql}) AS {quote(self._alias())}", outputs
        left, op, quant, right = tree.children
        lsql, louts = self.set_expr(left, parent)
        rsql, routs = self.set_expr(right, parent)
        if sum(o.width for o in louts) != sum(o.width for o in routs):
            raise AdqlError(f"{op.upper()}: both queries must select the same number of columns")
        all_ = " ALL" if quant.children else ""
        if all_ and op.upper() != "UNION" and self.engine == "sqlite":
            raise AdqlError(f"{op.upper()} ALL is not supported on this service's SQLite engine")
        return f"{lsql} {op.upper()}{all_} {rsql}", louts

    def sort_key(self, tree: Tree, scope: Scope | None, outputs: list[OutputColumn]) -> str:
        expr = tree.children[0]
        direction = ""
        if len(tree.children) > 1:
            direction = " " + tree.children[1].children[0].value.upper()
        if expr.data == "int_lit":
            n = int(expr.children[0])
            if not 1 <= n <= len(outputs):
                raise AdqlError(f"ORDER BY {n}: the query selects {len(outputs)} columns")
            pos = sum(o.width for o in outputs[: n - 1]) + 1
            return f"{pos}{direction}"
        if expr.data == "column_ref":
            parts = _names(expr.children[0])
            if len(parts) == 1:
                for i, o in enumerate(outputs):
                    if o.meta.name.lower() == parts[0].lower():
                        pos = sum(x.width for x in outputs[:i]) + 1
                        return f"{pos}{direction}"
        if scope is None:
            raise AdqlError("ORDER BY of a set operation must name an output column or position")
        return self.value(expr, scope).sql + direction

    def select_core(
        self, tree: Tree, parent: Scope | None
    ) -> tuple[str, list[OutputColumn], Scope, int | None]:
        scope = Scope(parent=parent)
        parts: dict[str, Tree] = {}
        distinct = ""
        top = None
        for child in tree.children:
            if child.data == "distinct":
                distinct = " DISTINCT" if child.children[0].type == "DISTINCT" else ""
            elif child.data == "top":
                top = int(child.children[0])
            else:
                parts[child.data] = child
        from_sql = self.from_clause(parts["from_clause"], scope)
        select_sql, outputs = self.select_list(parts["select_list"], scope)
        sql = f"SELECT{distinct} {select_sql} FROM {from_sql}"
        if "where_clause" in parts:
            sql += " WHERE " + self.condition(parts["where_clause"].children[0], scope)
        if "group_by" in parts:
            keys = [self.group_key(k, scope) for k in parts["group_by"].children]
            sql += " GROUP BY " + ", ".join(keys)
        if "having" in parts:
            sql += " HAVING " + self.condition(parts["having"].children[0], scope)
        return sql, outputs, scope, top

    def group_key(self, tree: Tree, scope: Scope) -> str:
        if tree.data == "column_ref":
            parts = _names(tree.children[0])
            if len(parts) == 1 and self._find_column(parts, scope) is None:
                alias = scope.aliases.get(parts[0].lower())
                if alias is not None:
                    return alias.sql
        return self.value(tree, scope).sql

    # ---------------------------------------------------------------- select list
    def select_list(self, tree: Tree, scope: Scope) -> tuple[str, list[OutputColumn]]:
        items: list[str] = []
        outputs: list[OutputColumn] = []
        for item in tree.children:
            if item.data == "star":
                for src in scope.sources:
                    self._star(src, items, outputs)
            elif item.data == "table_star":
                names = _names(item.children[0])
                src = self._find_source(names, scope)
                self._star(src, items, outputs)
            else:
                self._derived_column(item, scope, items, outputs)
        # unique output names (VOTable FIELD names; pyvo/astropy tables need them unique)
        seen: dict[str, int] = {}
        final = []
        for o in outputs:
            low = o.meta.name.lower()
            seen[low] = seen.get(low, 0) + 1
            if seen[low] > 1:
                o = replace(o, meta=replace(o.meta, name=f"{o.meta.name}_{seen[low]}"))
            final.append(o)
        labelled = [f"{sql} AS {quote(f'c{i}')}" for i, sql in enumerate(items)]
        return ", ".join(labelled), final

    def _star(self, src: Source, items: list[str], outputs: list[OutputColumn]) -> None:
        for sql_col, meta in src.columns.values():
            items.append(f"{quote(src.sql_alias)}.{quote(sql_col)}")
            outputs.append(OutputColumn(meta))

    def _derived_column(
        self, item: Tree, scope: Scope, items: list[str], outputs: list[OutputColumn]
    ) -> None:
        expr = item.children[0]
        alias = None
        rest = [c for c in item.children[1:] if isinstance(c, Tree)]
        if rest:
            alias = _ident(rest[0])
        geom = self._maybe_geometry(expr, scope)
        if geom is not None:
            name = alias or str(expr.children[0].children[0]).lower()
            sqls, meta = self._geometry_columns(geom, name)
            items.extend(sqls)
            outputs.append(OutputColumn(meta, width=len(sqls)))
            return
        val = self.value(expr, scope)
        if val.meta is not None:
            meta = replace(val.meta, name=alias or val.meta.name, indexed=False)
        else:
            name = alias or self._default_name(expr, len(outputs))
            meta = ColumnMeta(
                name=name,
                datatype=val.datatype,
                arraysize="*" if val.datatype == "char" else None,
                description="",
            )
        if alias:
            scope.aliases[alias.lower()] = val
        items.append(val.sql)
        outputs.append(OutputColumn(meta))

    @staticmethod
    def _default_name(expr: Tree, index: int) -> str:
        if expr.data == "func_call":
            return _ident(expr.children[0]).lower()
        return f"col{index + 1}"

    def _geometry_columns(self, geom: Geom, name: str) -> tuple[list[str], ColumnMeta]:
        if isinstance(geom, GPoint):
            sqls = [geom.ra.sql, geom.dec.sql]
            meta = ColumnMeta(name, "double", "", "deg", None, "2", "point")
        elif isinstance(geom, GCircle):
            sqls = [geom.center.ra.sql, geom.center.dec.sql, geom.radius.sql]
            meta = ColumnMeta(name, "double", "", "deg", None, "3", "circle")
        else:
            sqls = [repr(float(x)) for v in geom.poly.vertices for x in v]
            meta = ColumnMeta(name, "double", "", "deg", None, "*", "polygon")
        return sqls, meta

    # ---------------------------------------------------------------- FROM
    def from_clause(self, tree: Tree, scope: Scope) -> str:
        return ", ".join(self.table_ref(t, scope) for t in tree.children)

    def table_ref(self, tree: Tree, scope: Scope) -> str:
        if tree.data == "table_name":
            return self.table_name(tree, scope)
        if tree.data == "derived_table":
            inner, outputs, _ = self.query(tree.children[0], scope.parent)
            name = _ident(tree.children[-1])
            alias = self._alias()
            scope.sources.append(self._derived_source((name,), alias, outputs))
            return f"({inner}) AS {quote(alias)}"
        if tree.data == "paren_join":
            return "(" + self.table_ref(tree.children[0], scope) + ")"
        if tree.data == "cross_join":
            left = self.table_ref(tree.children[0], scope)
            right = self.table_ref(tree.children[1], scope)
            return f"{left} CROSS JOIN {right}"
        return self.joined_table(tree, scope)

    def joined_table(self, tree: Tree, scope: Scope) -> str:
        children = list(tree.children)
        left = self.table_ref(children.pop(0), scope)
        natural = ""
        if isinstance(children[0], Token) and children[0].type == "NATURAL":
            natural = "NATURAL "
            children.pop(0)
        kind = "INNER"
        if isinstance(children[0], Tree) and children[0].data == "join_type":
            words = [t.value.upper() for t in children.pop(0).children]
            kind = words[0] + (" OUTER" if words[0] in ("LEFT", "RIGHT", "FULL") else "")
        right = self.table_ref(children.pop(0), scope)
        spec = ""
        if children:
            s = children[0]
            if s.data == "join_on":
                spec = " ON " + self.condition(s.children[0], scope)
            else:
                cols = [_ident(c) for c in s.children]
                for c in cols:
                    for src in scope.sources[-2:]:
                        if c.lower() not in src.columns:
                            raise AdqlError(f"USING column {c!r} is not in both tables")
                spec = (
                    " USING ("
                    + ", ".join(quote(scope.sources[-1].columns[c.lower()][0]) for c in cols)
                    + ")"
                )
        elif not natural:
            raise AdqlError("JOIN needs ON or USING (or NATURAL)")
        return f"{left} {natural}{kind} JOIN {right}{spec}"

    def table_name(self, tree: Tree, scope: Scope) -> str:
        names = _names(tree.children[0])
        alias_trees = [c for c in tree.children[1:] if isinstance(c, Tree)]
        alias_name = _ident(alias_trees[0]) if alias_trees else None
        self.n_tables += 1
        if self.n_tables > MAX_TABLES:
            raise AdqlError(f"a query may name at most {MAX_TABLES} tables")
        if len(names) == 1 and names[0].lower() in self.user_ctes:
            cte = self.user_ctes[names[0].lower()]
            alias = self._alias()
            src = replace(cte, names=(alias_name or names[0],), sql_alias=alias)
            scope.sources.append(src)
            return f"{quote(cte.sql_alias)} AS {quote(alias)}"
        table = self.catalog.find(names)
        if table is None:
            known = ", ".join(sorted(t.qualified for t in self.catalog.tables.values()))
            raise AdqlError(f"no table {'.'.join(names)!r}; published tables: {known}")
        if table.sql_name in self.virtual:
            vt = self.virtual[table.sql_name]
            self.ctes_needed[table.sql_name] = self._values_cte(vt)
        alias = self._alias()
        visible = (alias_name,) if alias_name else (table.name, table.qualified)
        src = Source(
            names=visible,
            sql_alias=alias,
            columns={c.name.lower(): (c.name, c) for c in table.columns},
            position=table.position,
        )
        scope.sources.append(src)
        self.sources.append(src)
        condition = self.filters.get(table.sql_name)
        if condition is not None:  # rows the caller may read (publish/vo/tap/access.py)
            return f"(SELECT * FROM {quote(table.sql_name)} WHERE {condition}) AS {quote(alias)}"
        return f"{quote(table.sql_name)} AS {quote(alias)}"

    def _values_cte(self, vt) -> str:
        cols = ", ".join(quote(c.name) for c in vt.meta.columns)
        if not vt.rows:
            nulls = ", ".join(
                "CAST(NULL AS TEXT)" if c.datatype == "char" else "CAST(NULL AS INTEGER)"
                for c in vt.meta.columns
            )
            return f"{quote(vt.meta.sql_name)}({cols}) AS (SELECT {nulls} WHERE 1 = 0)"
        rows = []
        for row in vt.rows:
            rows.append("(" + ", ".join(sql_literal(v, self.engine) for v in row) + ")")
        return f"{quote(vt.meta.sql_name)}({cols}) AS (VALUES {', '.join(rows)})"

    def _derived_source(
        self, names: tuple[str, ...], sql_alias: str, outputs: list[OutputColumn]
    ) -> Source:
        columns: dict[str, tuple[str, ColumnMeta]] = {}
        for i, o in enumerate(outputs):
            if o.width != 1:
                raise AdqlError("a subquery in FROM may not select geometry values")
            columns[o.meta.name.lower()] = (f"c{i}", o.meta)
        return Source(names=names, sql_alias=sql_alias, columns=columns)

    def _alias(self) -> str:
        return f"t{next(self._alias_counter)}"

    # ---------------------------------------------------------------- names
    def _find_source(self, names: list[str], scope: Scope) -> Source:
        low = [n.lower() for n in names]
        s: Scope | None = scope
        while s is not None:
            for src in s.sources:
                visible = [n.lower() for n in src.names]
                if ".".join(low) in visible or low[-1] in visible and len(low) == 1:
                    return src
                if len(low) == 2 and ".".join(low) in visible:
                    return src
            s = s.parent
        raise AdqlError(f"no table {'.'.join(names)!r} in the FROM clause")

    def _find_column(self, parts: list[str], scope: Scope) -> tuple[Source, str, ColumnMeta] | None:
        col = parts[-1].lower()
        qual = parts[:-1]
        s: Scope | None = scope
        while s is not None:
            hits = []
            for src in s.sources:
                if qual:
                    visible = [n.lower() for n in src.names]
                    q = ".".join(p.lower() for p in qual)
                    if q not in visible:
                        continue
                if col in src.columns:
                    sql_col, meta = src.columns[col]
                    hits.append((src, sql_col, meta))
            if len(hits) > 1:
                raise AdqlError(f"column {'.'.join(parts)!r} is ambiguous: qualify it")
            if hits:
                return hits[0]
            s = s.parent
        return None

    def column_ref(self, tree: Tree, scope: Scope) -> Val:
        parts = _names(tree.children[0])
        if len(parts) > 4:
            raise AdqlError(f"bad column name {'.'.join(parts)!r}")
        hit = self._find_column(parts, scope)
        if hit is None:
            if len(parts) == 1 and parts[0].lower() in scope.aliases:
                return scope.aliases[parts[0].lower()]
            raise AdqlError(f"no column {'.'.join(parts)!r} in the tables of the FROM clause")
        src, sql_col, meta = hit
        return Val(
            sql=f"{quote(src.sql_alias)}.{quote(sql_col)}",
            meta=meta,
            datatype=meta.datatype if meta.xtype is None else "char",
            column=(src.sql_alias, sql_col),
        )

    # ---------------------------------------------------------------- conditions
    def condition(self, tree: Tree, scope: Scope) -> str:
        return self.value(tree, scope).sql

    def value(self, tree: Tree | Token, scope: Scope) -> Val:
        if isinstance(tree, Token):
            raise AdqlError(f"unexpected {tree.value!r}")
        handler: Callable[[Tree, Scope], Val] | None = getattr(self, f"v_{tree.data}", None)
        if handler is None:
            raise AdqlError(f"unsupported ADQL construct: {tree.data}")
        return handler(tree, scope)

    def v_column_ref(self, t: Tree, scope: Scope) -> Val:
        return self.column_ref(t, scope)

    def v_or_(self, t: Tree, scope: Scope) -> Val:
        a, b = (self.value(c, scope) for c in t.children)
        return Val(f"({a.sql} OR {b.sql})", datatype="boolean")

    def v_and_(self, t: Tree, scope: Scope) -> Val:
        a, b = (self.value(c, scope) for c in t.children)
        return Val(f"({a.sql} AND {b.sql})", datatype="boolean")

    def v_not_(self, t: Tree, scope: Scope) -> Val:
        return Val(f"(NOT {self.value(t.children[0], scope).sql})", datatype="boolean")

    def v_comparison(self, t: Tree, scope: Scope) -> Val:
        left, op, right = t.children
        op_s = "<>" if op.value == "!=" else op.value
        region = self._region_predicate(left, op_s, right, scope)
        if region is not None:
            return Val(region, datatype="boolean")
        a, b = self.value(left, scope), self.value(right, scope)
        return Val(f"({a.sql} {op_s} {b.sql})", datatype="boolean")

    def _region_predicate(self, left: Tree, op: str, right: Tree, scope: Scope) -> str | None:
        """``CONTAINS(...) = 1`` (or ``0``, either order) as a boolean with a prefilter."""

        def is_region(x: Tree) -> bool:
            return x.data == "func_call" and _ident(x.children[0]).lower() in (
                "contains",
                "intersects",
            )

        def is_01(x: Tree) -> bool:
            return x.data == "int_lit" and x.children[0].value in ("0", "1")

        if is_region(left) and is_01(right):
            fn, num = left, int(right.children[0].value)
        elif is_region(right) and is_01(left):
            fn, num = right, int(left.children[0].value)
        else:
            return None
        if op not in ("=", "<>"):
            return None
        cond = self._region_condition(fn, scope, prefilter=True)
        truth = (num == 1) == (op == "=")
        return cond if truth else f"(NOT {cond})"

    def v_between(self, t: Tree, scope: Scope) -> Val:
        kids = list(t.children)
        neg = " NOT" if isinstance(kids[1], Token) else ""
        vals = [self.value(c, scope) for c in kids if isinstance(c, Tree)]
        return Val(
            f"({vals[0].sql}{neg} BETWEEN {vals[1].sql} AND {vals[2].sql})", datatype="boolean"
        )

    def v_like(self, t: Tree, scope: Scope) -> Val:
        kids = list(t.children)
        neg = "NOT " if len(kids) == 4 else ""
        a = self.value(kids[0], scope)
        op = kids[-2].value.upper()
        b = self.value(kids[-1], scope)
        if op == "ILIKE":
            if self.engine == "sqlite":  # SQLite's LIKE is case-insensitive (ASCII)
                return Val(f"({a.sql} {neg}LIKE {b.sql})", datatype="boolean")
            return Val(f"({a.sql} {neg}ILIKE {b.sql})", datatype="boolean")
        if self.engine == "sqlite":
            if b.text is None:
                raise AdqlError("LIKE on this service's SQLite engine needs a literal pattern")
            return Val(
                f"({a.sql} {neg}GLOB {sql_literal(_like_to_glob(b.text), 'sqlite')})",
                datatype="boolean",
            )
        return Val(f"({a.sql} {neg}LIKE {b.sql})", datatype="boolean")

    def v_is_null(self, t: Tree, scope: Scope) -> Val:
        neg = " NOT" if len(t.children) == 2 else ""
        return Val(f"({self.value(t.children[0], scope).sql} IS{neg} NULL)", datatype="boolean")

    def v_in_query(self, t: Tree, scope: Scope) -> Val:
        kids = list(t.children)
        neg = " NOT" if isinstance(kids[1], Token) else ""
        a = self.value(kids[0], scope)
        sql, outputs, _ = self.query(kids[-1], scope)
        return Val(f"({a.sql}{neg} IN ({sql}))", datatype="boolean")

    def v_in_list(self, t: Tree, scope: Scope) -> Val:
        kids = [c for c in t.children if isinstance(c, Tree)]
        neg = " NOT" if any(isinstance(c, Token) for c in t.children) else ""
        a = self.value(kids[0], scope)
        items = ", ".join(self.value(c, scope).sql for c in kids[1:])
        return Val(f"({a.sql}{neg} IN ({items}))", datatype="boolean")

    def v_exists(self, t: Tree, scope: Scope) -> Val:
        sql, _, _ = self.query(t.children[0], scope)
        return Val(f"(EXISTS ({sql}))", datatype="boolean")

    def v_paren(self, t: Tree, scope: Scope) -> Val:
        v = self.value(t.children[0], scope)
        return replace(v, sql=f"({v.sql})", column=None)

    def v_scalar_query(self, t: Tree, scope: Scope) -> Val:
        sql, outputs, _ = self.query(t.children[0], scope)
        dt = outputs[0].meta.datatype if len(outputs) == 1 else ""
        return Val(f"({sql})", datatype=dt)

    def v_concat(self, t: Tree, scope: Scope) -> Val:
        a, b = (self.value(c, scope) for c in t.children)
        return Val(f"({a.sql} || {b.sql})", datatype="char")

    def v_arith(self, t: Tree, scope: Scope) -> Val:
        a = self.value(t.children[0], scope)
        b = self.value(t.children[2], scope)
        op = t.children[1].value
        dt = _num_type(a, b)
        const = None
        if a.const is not None and b.const is not None:
            try:
                const = {
                    "+": a.const + b.const,
                    "-": a.const - b.const,
                    "*": a.const * b.const,
                }.get(op, a.const / b.const if b.const else None)
            except (ZeroDivisionError, OverflowError):
                const = None
        return Val(f"({a.sql} {op} {b.sql})", datatype=dt, const=const)

    def v_neg(self, t: Tree, scope: Scope) -> Val:
        v = self.value(t.children[1], scope)
        if t.children[0].value == "+":
            return v
        return Val(
            f"(-{v.sql})", datatype=v.datatype, const=-v.const if v.const is not None else None
        )

    def v_int_lit(self, t: Tree, scope: Scope) -> Val:
        n = int(t.children[0].value)
        return Val(str(n), datatype="long" if abs(n) > 2**31 else "int", const=float(n))

    def v_hex_lit(self, t: Tree, scope: Scope) -> Val:
        n = int(t.children[0].value, 16)
        return Val(str(n), datatype="long", const=float(n))

    def v_real_lit(self, t: Tree, scope: Scope) -> Val:
        x = float(t.children[0].value)
        if not math.isfinite(x):
            raise AdqlError(f"number out of range: {t.children[0].value}")
        return Val(repr(x), datatype="double", const=x)

    def v_str_lit(self, t: Tree, scope: Scope) -> Val:
        text = t.children[0].value[1:-1].replace("''", "'")
        return Val(sql_literal(text, self.engine), datatype="char", text=text)

    def v_null_lit(self, t: Tree, scope: Scope) -> Val:
        return Val("NULL")

    def v_true_lit(self, t: Tree, scope: Scope) -> Val:
        return Val(sql_literal(True, self.engine), datatype="boolean")

    def v_false_lit(self, t: Tree, scope: Scope) -> Val:
        return Val(sql_literal(False, self.engine), datatype="boolean")

    def v_case_expr(self, t: Tree, scope: Scope) -> Val:
        parts = ["CASE"]
        kids = list(t.children)
        if kids and kids[0].data != "when_clause":
            parts.append(self.value(kids.pop(0), scope).sql)
        results = []
        for k in kids:
            if k.data == "when_clause":
                cond, res = (self.value(c, scope) for c in k.children)
                parts.append(f"WHEN {cond.sql} THEN {res.sql}")
                results.append(res)
            else:
                res = self.value(k, scope)
                parts.append(f"ELSE {res.sql}")
                results.append(res)
        parts.append("END")
        dts = {r.datatype for r in results if r.sql != "NULL"}
        dt = dts.pop() if len(dts) == 1 else _num_type(*[r for r in results if r.sql != "NULL"])
        return Val("(" + " ".join(parts) + ")", datatype=dt)

    def v_cast_expr(self, t: Tree, scope: Scope) -> Val:
        v = self.value(t.children[0], scope)
        type_tree = t.children[1]
        words = " ".join(tok.value.lower() for tok in type_tree.children if tok.type == "TYPE_WORD")
        length = [tok.value for tok in type_tree.children if tok.type == "INT"]
        if words not in _CAST_TYPES:
            raise AdqlError(
                f"CAST to {words.upper()!r} is not supported; use one of "
                f"{', '.join(k.upper() for k in _CAST_TYPES)}"
            )
        pg, lite, dt = _CAST_TYPES[words]
        target = pg if self.engine == "postgresql" else lite
        if length and self.engine == "postgresql" and pg in ("CHAR", "VARCHAR"):
            target += f"({int(length[0])})"
        return Val(f"CAST({v.sql} AS {target})", datatype=dt)

    # ---------------------------------------------------------------- functions
    def v_func_call(self, t: Tree, scope: Scope) -> Val:
        name = _ident(t.children[0]).lower()
        args_tree = t.children[1] if len(t.children) > 1 else None
        if name in _GEOMETRY:
            return self.geometry_value(name, t, scope)
        if name in _AGGREGATES:
            return self.aggregate(name, args_tree, scope)
        args = self._args(args_tree, scope)
        if name in _MATH_1:
            self._arity(name, args, 1)
            return Val(f"{_MATH_1[name]}({args[0].sql})", datatype="double")
        if name in _MATH_2:
            self._arity(name, args, 2)
            dt = _num_type(*args) if name == "mod" else "double"
            return Val(f"{_MATH_2[name]}({args[0].sql}, {args[1].sql})", datatype=dt)
        if name == "pi":
            self._arity(name, args, 0)
            return Val("pi()", datatype="double", const=math.pi)
        if name == "cot":
            self._arity(name, args, 1)
            return Val(f"(1.0 / tan({args[0].sql}))", datatype="double")
        if name == "rand":
            if self.engine == "sqlite":
                return Val("((random() / 18446744073709551616.0) + 0.5)", datatype="double")
            return Val("random()", datatype="double")
        if name in ("round", "truncate"):
            if len(args) not in (1, 2):
                raise AdqlError(f"{name.upper()} takes 1 or 2 arguments")
            n = args[1].sql if len(args) == 2 else "0"
            if self.engine == "postgresql":
                fn = "round" if name == "round" else "trunc"
                return Val(
                    f"CAST({fn}(CAST({args[0].sql} AS numeric), {n}) AS double precision)",
                    datatype="double",
                )
            if name == "round":
                return Val(f"round({args[0].sql}, {n})", datatype="double")
            return Val(
                f"(trunc({args[0].sql} * power(10, {n})) / power(10, {n}))", datatype="double"
            )
        if name in ("lower", "upper"):
            self._arity(name, args, 1)
            return Val(f"{name}({args[0].sql})", datatype="char")
        if name == "coalesce":
            return Val(
                "coalesce(" + ", ".join(a.sql for a in args) + ")",
                datatype=_num_type(*args) or args[0].datatype,
            )
        raise AdqlError(f"unknown function {name.upper()}")

    def _args(self, args_tree: Tree | None, scope: Scope) -> list[Val]:
        if args_tree is None:
            return []
        if args_tree.data != "args":
            raise AdqlError("* and DISTINCT are only allowed in aggregate functions")
        return [self.value(c, scope) for c in args_tree.children]

    @staticmethod
    def _arity(name: str, args: list, n: int) -> None:
        if len(args) != n:
            raise AdqlError(f"{name.upper()} takes {n} argument{'s' if n != 1 else ''}")

    def aggregate(self, name: str, args_tree: Tree | None, scope: Scope) -> Val:
        if args_tree is None:
            raise AdqlError(f"{name.upper()} needs an argument")
        if args_tree.data == "count_star":
            if name != "count":
                raise AdqlError(f"{name.upper()}(*) is not allowed")
            return Val("COUNT(*)", datatype="long")
        distinct = ""
        if args_tree.data == "distinct_args":
            distinct = "DISTINCT "
            arg = self.value(args_tree.children[1], scope)
        else:
            args = self._args(args_tree, scope)
            self._arity(name, args, 1)
            arg = args[0]
        dt = {"count": "long", "avg": "double"}.get(name, arg.datatype)
        if name == "sum" and dt in ("short", "int"):
            dt = "long"
        meta = None
        if name in ("min", "max") and arg.meta is not None:
            meta = replace(arg.meta, name=name)
        return Val(f"{name.upper()}({distinct}{arg.sql})", datatype=dt, meta=meta)

    # ---------------------------------------------------------------- geometry
    def _maybe_geometry(self, expr: Tree, scope: Scope) -> Geom | None:
        if expr.data == "func_call":
            name = _ident(expr.children[0]).lower()
            if name in ("point", "circle", "box", "polygon", "centroid"):
                return self.geometry(expr, scope)
        return None

    def _geo_args(self, t: Tree, scope: Scope) -> list[Tree]:
        if len(t.children) < 2:
            return []
        if t.children[1].data != "args":
            raise AdqlError("* and DISTINCT are only allowed in aggregate functions")
        return list(t.children[1].children)

    def _const(self, v: Val, what: str) -> float:
        if v.const is None:
            raise AdqlError(f"{what} must be a constant number here")
        return v.const

    def _strip_coordsys(self, args: list[Tree], scope: Scope, n_numeric: int) -> list[Tree]:
        if args and args[0].data == "str_lit":
            try:
                geo.check_coordsys(self.value(args[0], scope).text)
            except ValueError as exc:
                raise AdqlError(str(exc)) from None
            return args[1:]
        if args and args[0].data == "null_lit" and len(args) == n_numeric + 1:
            return args[1:]
        return args

    def geometry(self, t: Tree, scope: Scope) -> Geom:
        """A geometry constructor (POINT, CIRCLE, BOX, POLYGON, CENTROID) as a :data:`Geom`."""
        name = _ident(t.children[0]).lower()
        args = self._geo_args(t, scope)
        try:
            if name == "point":
                args = self._strip_coordsys(args, scope, 2)
                if len(args) != 2:
                    raise AdqlError("POINT takes a coordinate system (optional), ra and dec")
                return GPoint(self.value(args[0], scope), self.value(args[1], scope))
            if name == "circle":
                args = self._strip_coordsys(args, scope, 3)
                if len(args) == 2:
                    center = self.geometry_arg(args[0], scope)
                    if not isinstance(center, GPoint):
                        raise AdqlError("CIRCLE(centre, radius) needs a POINT centre")
                    return GCircle(center, self.value(args[1], scope))
                if len(args) != 3:
                    raise AdqlError("CIRCLE takes a coordinate system (optional), ra, dec, radius")
                vals = [self.value(a, scope) for a in args]
                return GCircle(GPoint(vals[0], vals[1]), vals[2])
            if name == "box":
                args = self._strip_coordsys(args, scope, 4)
                vals = [self._const(self.value(a, scope), "a BOX parameter") for a in args]
                if len(vals) != 4:
                    raise AdqlError(
                        "BOX takes a coordinate system (optional), ra, dec, width, height"
                    )
                return GPolygon(geo.box_polygon(*vals))
            if name == "polygon":
                args = self._strip_coordsys(args, scope, 6)
                nums: list[float] = []
                for a in args:
                    if a.data == "func_call" and _ident(a.children[0]).lower() == "point":
                        p = self.geometry(a, scope)
                        nums += [
                            self._const(p.ra, "a POLYGON vertex"),
                            self._const(p.dec, "a POLYGON vertex"),
                        ]
                    else:
                        nums.append(self._const(self.value(a, scope), "a POLYGON vertex"))
                return GPolygon(geo.polygon_from_numbers(nums))
            if name == "centroid":
                if len(args) != 1:
                    raise AdqlError("CENTROID takes one geometry")
                g = self.geometry_arg(args[0], scope)
                if isinstance(g, GPoint):
                    return g
                if isinstance(g, GCircle):
                    return g.center
                ra, dec = g.poly.center
                return GPoint(
                    Val(repr(ra), datatype="double", const=ra),
                    Val(repr(dec), datatype="double", const=dec),
                )
        except ValueError as exc:
            raise AdqlError(f"{name.upper()}: {exc}") from None
        raise AdqlError(f"{name.upper()} is not a geometry constructor")

    def geometry_arg(self, t: Tree, scope: Scope) -> Geom:
        if t.data == "func_call" and _ident(t.children[0]).lower() in (
            "point",
            "circle",
            "box",
            "polygon",
            "centroid",
        ):
            return self.geometry(t, scope)
        if t.data == "paren":
            return self.geometry_arg(t.children[0], scope)
        raise AdqlError("expected a geometry (POINT, CIRCLE, BOX or POLYGON) here")

    def geometry_value(self, name: str, t: Tree, scope: Scope) -> Val:
        """A geometry function used as a scalar: DISTANCE, AREA, COORD1/2, COORDSYS,
        CONTAINS/INTERSECTS (as 0/1)."""
        args = self._geo_args(t, scope)
        if name in ("point", "circle", "box", "polygon", "centroid"):
            raise AdqlError(
                f"{name.upper()} is a geometry: use it in the select list or inside CONTAINS, "
                "INTERSECTS, DISTANCE, AREA or COORD1/COORD2"
            )
        if name == "region":
            raise AdqlError("REGION is not supported (deprecated in ADQL 2.1)")
        if name == "distance":
            if len(args) == 4:
                v = [self.value(a, scope) for a in args]
                return Val(
                    self.sql.distance(v[0].sql, v[1].sql, v[2].sql, v[3].sql), datatype="double"
                )
            if len(args) != 2:
                raise AdqlError("DISTANCE takes two POINTs (or ra1, dec1, ra2, dec2)")
            p, q = (self.geometry_arg(a, scope) for a in args)
            if not isinstance(p, GPoint) or not isinstance(q, GPoint):
                raise AdqlError("DISTANCE takes two POINTs")
            return Val(
                self.sql.distance(p.ra.sql, p.dec.sql, q.ra.sql, q.dec.sql),
                datatype="double",
                meta=ColumnMeta("distance", "double", "angular distance", "deg", "pos.angDistance"),
            )
        if name in ("coord1", "coord2"):
            if len(args) != 1:
                raise AdqlError(f"{name.upper()} takes one POINT")
            p = self.geometry_arg(args[0], scope)
            if not isinstance(p, GPoint):
                raise AdqlError(f"{name.upper()} takes a POINT")
            return p.ra if name == "coord1" else p.dec
        if name == "coordsys":
            if len(args) != 1:
                raise AdqlError("COORDSYS takes one geometry")
            self.geometry_arg(args[0], scope)
            return Val(sql_literal(geo.COORDSYS, self.engine), datatype="char", text=geo.COORDSYS)
        if name == "area":
            if len(args) != 1:
                raise AdqlError("AREA takes one geometry")
            g = self.geometry_arg(args[0], scope)
            if isinstance(g, GPoint):
                return Val("0.0", datatype="double", const=0.0)
            if isinstance(g, GPolygon):
                a = g.poly.area
                return Val(repr(a), datatype="double", const=a)
            r = g.radius.sql
            return Val(
                f"(2 * pi() * (1 - cos(radians({r}))) * power(180 / pi(), 2))", datatype="double"
            )
        # contains / intersects used as a value
        cond = self._region_condition(t, scope, prefilter=False)
        return Val(f"(CASE WHEN {cond} THEN 1 ELSE 0 END)", datatype="int")

    def _region_condition(self, t: Tree, scope: Scope, prefilter: bool) -> str:
        name = _ident(t.children[0]).lower()
        args = self._geo_args(t, scope)
        if len(args) != 2:
            raise AdqlError(f"{name.upper()} takes two geometries")
        a, b = (self.geometry_arg(x, scope) for x in args)
        if name == "intersects":
            if isinstance(b, GPoint) and not isinstance(a, GPoint):
                a, b = b, a
            if isinstance(a, GCircle) and isinstance(b, GCircle):  # centres r_a + r_b apart
                return self._centres_within(a, b, f"({a.radius.sql}) + ({b.radius.sql})")
            if not isinstance(a, GPoint):
                raise AdqlError(
                    "INTERSECTS is supported for a POINT or CIRCLE with a region and "
                    "for two CIRCLEs"
                )
        if isinstance(a, GCircle) and isinstance(b, GCircle):  # centres r_b - r_a apart
            return self._centres_within(a, b, f"({b.radius.sql}) - ({a.radius.sql})")
        if not isinstance(a, GPoint):
            raise AdqlError(
                "CONTAINS is supported for a POINT (or a CIRCLE in a CIRCLE) in a region"
            )
        if isinstance(b, GPoint):
            raise AdqlError(f"{name.upper()}: the second argument must be a CIRCLE, BOX or POLYGON")
        if isinstance(b, GCircle):
            exact = self.sql.within(
                a.ra.sql, a.dec.sql, b.center.ra.sql, b.center.dec.sql, b.radius.sql
            )
            cone = None
            if (
                b.center.ra.const is not None
                and b.center.dec.const is not None
                and b.radius.const is not None
            ):
                cone = (b.center.ra.const, b.center.dec.const, b.radius.const)
        else:
            exact = self.sql.in_polygon(a.ra.sql, a.dec.sql, b.poly)
            cone = (*b.poly.center, b.poly.radius)
        pre = self._prefilter(a, cone) if prefilter and cone is not None else None
        return f"({pre} AND {exact})" if pre else exact

    def _centres_within(self, a: GCircle, b: GCircle, radius_sql: str) -> str:
        """SQL boolean: the centres of two circles are at most ``radius_sql`` degrees apart
        (INTERSECTS: the radii added; CONTAINS of a circle in a circle: subtracted)."""
        return self.sql.within(
            a.center.ra.sql, a.center.dec.sql, b.center.ra.sql, b.center.dec.sql, radius_sql
        )

    def _prefilter(self, p: GPoint, cone: tuple[float, float, float]) -> str | None:
        """HEALPix ranges of the cone on the point's table, when the point is a table's own
        (ra, dec) position columns."""
        if p.ra.column is None or p.dec.column is None or p.ra.column[0] != p.dec.column[0]:
            return None
        alias = p.ra.column[0]
        pos = None
        for src in self.sources:
            if src.sql_alias == alias:
                pos = src.position
        if pos is None or p.ra.column[1] != pos.ra or p.dec.column[1] != pos.dec:
            return None
        ra, dec, r = cone
        if r < 0 or not -90 <= dec <= 90:
            return None
        ranges = geo.cover_ranges(ra % 360.0, dec, r)
        if not ranges:
            return None
        col = f"{quote(alias)}.{quote(pos.healpix)}"
        return "(" + " OR ".join(f"{col} BETWEEN {lo} AND {hi}" for lo, hi in ranges) + ")"


def _like_to_glob(pattern: str) -> str:
    """An SQL LIKE pattern (``%``, ``_``) as a case-sensitive SQLite GLOB pattern."""
    out = []
    for ch in pattern:
        if ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        elif ch in "*?[":
            out.append(f"[{ch}]")
        else:
            out.append(ch)
    return "".join(out)


def translate(
    text: str,
    catalog: Catalog,
    engine: str,
    virtual: dict | None = None,
    filters: dict[str, str] | None = None,
) -> Translation:
    """Translate ADQL ``text`` into SQL for ``engine`` ('sqlite' or 'postgresql').

    Args:
        text: one ADQL 2.1 query.
        catalog: the tables the query may read (published tables, TAP_SCHEMA, uploads).
        engine: the registry's engine.
        virtual: tables served from VALUES rows, by SQL name (TAP_SCHEMA, uploads).
        filters: SQL conditions by table SQL name: such a table is read as
            ``(SELECT * FROM table WHERE condition)`` (the caller's readable rows; trusted
            SQL from :func:`surveydm.publish.vo.tap.access.row_filters`, never user text).

    Raises:
        AdqlSyntaxError: not ADQL (with line and column).
        AdqlError: unknown table/column/function, unsupported geometry, too many tables.
    """
    return Translator(catalog, engine, virtual, filters).translate(parse(text))
