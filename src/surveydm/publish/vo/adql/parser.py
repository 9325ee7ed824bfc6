"""Parse ADQL 2.1 text into a lark tree with the LALR(1) grammar in ``adql.lark``.

Why lark and our own grammar rather than ``queryparser-python3``: queryparser translates ADQL to
MySQL or to PostgreSQL with pgSphere only, while surveydm needs SQLite too and its own geometry
(HEALPix range prefilter + exact test); lark is a small, maintained, pure-Python parser and the
grammar follows the ADQL 2.1 BNF (IVOA REC 2023-12-15, appendix A) for the parts we translate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache, lru_cache
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
    template, numbers = _template(text)
    if numbers:
        cached = _template_tree(template)
        if cached is not None:
            filled = _fill(*cached, iter(numbers))
            if filled is not None:
                return filled
    return _parse(text)


def _parse(text: str) -> lark.Tree:
    try:
        return _parser().parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        near = text[max(0, exc.pos_in_stream or 0) :][:30] if exc.pos_in_stream else ""
        expected = sorted(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or [])
        hint = f"; expected one of {', '.join(expected[:12])}" if expected else ""
        raise AdqlSyntaxError(
            f"ADQL syntax error at line {exc.line}, column {exc.column} near {near!r}{hint}"
        ) from None


# ----------------------------------------------------------------- parse-tree cache
# Queries a service sees repeat their shape with other numbers (cone searches at other
# positions), and lark's pure-Python LALR parse is most of a small query's latency. So the
# tree of the query's *template* (every numeric literal replaced by ``1`` or ``1.0``, which
# lex as the same INT / DECIMAL terminals) is cached, and a query's own tree is a copy of it
# with the literals put back in order. The result is the tree ``_parse(text)`` would give.

#: A string literal, quoted identifier or comment (kept), or a numeric literal (replaced).
_LITERALS = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*"""
    r"|(?<![\w.])((?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)(?![\w.])"
    r"|(?<![\w.])(\d+)(?![\w.])"
)
_PLACEHOLDER = {"DECIMAL": "1.0", "INT": "1"}


def _template(text: str) -> tuple[str, list[str]]:
    """``text`` with numeric literals replaced by placeholders, and those literals in order."""
    numbers: list[str] = []

    def sub(m: re.Match) -> str:
        if m.group(1) is not None:
            numbers.append(m.group(1))
            return _PLACEHOLDER["DECIMAL"]
        if m.group(2) is not None:
            numbers.append(m.group(2))
            return _PLACEHOLDER["INT"]
        return m.group(0)

    return _LITERALS.sub(sub, text), numbers


@lru_cache(maxsize=512)
def _template_tree(template: str) -> tuple[lark.Tree, frozenset[int]] | None:
    """The (never mutated) tree of a template and the ids of its subtrees holding a numeric
    placeholder, or None when it does not parse."""
    try:
        tree = _parser().parse(template)
    except lark.exceptions.UnexpectedInput:
        return None
    marked: set[int] = set()

    def mark(t: lark.Tree) -> bool:
        hit = False
        for c in t.children:
            if isinstance(c, lark.Tree):
                hit = mark(c) or hit
            elif isinstance(c, lark.Token) and _PLACEHOLDER.get(c.type) == c.value:
                hit = True
        if hit:
            marked.add(id(t))
        return hit

    mark(tree)
    return tree, frozenset(marked)


def _fill(tree: lark.Tree, marked: frozenset[int], numbers: Iterator[str]) -> lark.Tree | None:
    """A copy of a template tree with its numeric tokens set from ``numbers`` in order; None
    when the counts differ (then the caller parses the text itself). Only the subtrees
    holding a placeholder (``marked``) are copied; the others are shared with the template,
    which nobody mutates."""

    def copy(t: lark.Tree) -> lark.Tree:
        children: list = []
        for c in t.children:
            if isinstance(c, lark.Tree):
                children.append(copy(c) if id(c) in marked else c)
            elif isinstance(c, lark.Token) and _PLACEHOLDER.get(c.type) == c.value:
                children.append(c.update(value=next(numbers)))
            else:
                children.append(c)
        return lark.Tree(t.data, children, t._meta)

    try:
        out = copy(tree)
    except StopIteration:
        return None
    if next(numbers, None) is not None:
        return None
    return out
