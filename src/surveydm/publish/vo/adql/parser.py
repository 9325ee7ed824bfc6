"""Parse ADQL 2.1 text into a lark tree with the LALR(1) grammar in ``adql.lark``.

Why lark and our own grammar rather than ``queryparser-python3``: queryparser translates ADQL to
MySQL or to PostgreSQL with pgSphere only, while surveydm needs SQLite too and its own geometry
(HEALPix range prefilter + exact test); lark is a small, maintained, pure-Python parser and the
grammar follows the ADQL 2.1 BNF (IVOA REC 2023-12-15, appendix A) for the parts we translate.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import lark

from surveydm.errors import SurveydmError

#: Longest ADQL text accepted, characters.
MAX_QUERY_CHARS = 100_000


class AdqlSyntaxError(SurveydmError):
    """The text is not valid ADQL; the message gives the line, column and what was expected."""


@cache
def _parser() -> lark.Lark:
    grammar = (Path(__file__).parent / "adql.lark").read_text()
    return lark.Lark(grammar, parser="lalr", maybe_placeholders=False, propagate_positions=False)


def parse(text: str) -> lark.Tree:
    """Parse one ADQL query (an optional trailing ``;``) into a lark tree.

    Raises:
        AdqlSyntaxError: empty or too long text, or a syntax error (line, column, expected).
    """
    text = (text or "").strip()
    if not text:
        raise AdqlSyntaxError("empty ADQL query")
    if len(text) > MAX_QUERY_CHARS:
        raise AdqlSyntaxError(f"ADQL query longer than {MAX_QUERY_CHARS} characters")
    try:
        return _parser().parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        near = text[max(0, exc.pos_in_stream or 0) :][:30] if exc.pos_in_stream else ""
        expected = sorted(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or [])
        hint = f"; expected one of {', '.join(expected[:12])}" if expected else ""
        raise AdqlSyntaxError(
            f"ADQL syntax error at line {exc.line}, column {exc.column} near {near!r}{hint}"
        ) from None
