"""IVOA Virtual Observatory services: TAP 1.1 with ADQL 2.1, UWS 1.1 asynchronous jobs and VOSI
(seed 001: CEFCA's J-PLUS TAP service over PostgreSQL; docs/vo.md).

* :mod:`.adql` -- the ADQL grammar (lark, LALR) and its translation to SQLite or PostgreSQL SQL;
* :mod:`.tap` -- published table metadata (TAP_SCHEMA), read-only execution, output writers
  (VOTable TABLEDATA/BINARY2, CSV, TSV, FITS), UWS jobs and the FastAPI router under ``/tap``.
"""
