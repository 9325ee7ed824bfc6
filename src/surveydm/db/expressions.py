"""SQL expressions written per engine so that they match the expression indexes built on them
(a bound parameter, e.g. a JSON path, would not match an index)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class obs_set_key(FunctionElement[str]):  # noqa: N801 (an SQL function name)
    """``obs_set_key(product.data_id)``: the data ID's ``obs_set`` as text, written exactly as
    the expression index ``ix_product_obs_set`` (migration 0010_lineage) is, so a night's
    products are an index lookup: ``json_extract(data_id, '$.obs_set')`` on SQLite,
    ``(data_id ->> 'obs_set')`` on PostgreSQL (a bound JSON path would not match the index)."""

    type = String()
    name = "obs_set_key"
    inherit_cache = True


@compiles(obs_set_key, "sqlite")
def _obs_set_key_sqlite(element: obs_set_key, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_extract({compiler.process(element.clauses, **kw)}, '$.obs_set')"


@compiles(obs_set_key, "postgresql")
def _obs_set_key_postgresql(element: obs_set_key, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} ->> 'obs_set')"
