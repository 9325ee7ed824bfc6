"""ADQL 2.1: parsed by a lark LALR grammar (``adql.lark``), translated per engine.

:func:`~surveydm.publish.vo.adql.translate.translate` is the entry point: ADQL text in,
:class:`~surveydm.publish.vo.adql.translate.Translation` (engine SQL and output columns) out.
"""

from surveydm.publish.vo.adql.parser import AdqlSyntaxError, parse
from surveydm.publish.vo.adql.translate import AdqlError, Translation, translate

__all__ = ["AdqlError", "AdqlSyntaxError", "Translation", "parse", "translate"]
