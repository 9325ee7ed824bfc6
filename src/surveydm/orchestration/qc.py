"""One vocabulary for quality control: the result of a check, of a product, of a job tree.

A QC check measures one value against limits and gives a :class:`QCResult`. The quality of a
product (``product.quality``, ``mosaic.qc_status``) is the worst result of its checks, in the
same vocabulary; the colour shown for a job tree in the portal and the CLI is derived from it
(:attr:`QCResult.colour`), never stored. Seed 000 table .4 (``quality_control``) and seed 003
(system quality flags, apart from the human validity flag).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class QCResult(StrEnum):
    """Outcome of a QC check, and the quality of whatever the checks were about."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def colour(self) -> str:
        """Display colour: ``green`` (pass), ``yellow`` (warn), ``red`` (fail)."""
        return _COLOURS[self]

    @property
    def severity(self) -> int:
        """0 (pass), 1 (warn), 2 (fail): the order in which results are worse."""
        return _SEVERITY[self]

    @classmethod
    def from_severity(cls, severity: int) -> QCResult:
        """The result of a given :attr:`severity` (0, 1 or 2)."""
        return _BY_SEVERITY[severity]

    @classmethod
    def worst(cls, results: Iterable[str]) -> QCResult:
        """The worst of ``results`` (``PASS`` when there are none)."""
        return cls.from_severity(max((cls(r).severity for r in results), default=0))


_COLOURS = {QCResult.PASS: "green", QCResult.WARN: "yellow", QCResult.FAIL: "red"}
_SEVERITY = {QCResult.PASS: 0, QCResult.WARN: 1, QCResult.FAIL: 2}
_BY_SEVERITY = {v: k for k, v in _SEVERITY.items()}
#: The display colours, best first.
COLOURS: tuple[str, ...] = tuple(_COLOURS.values())


@dataclass(frozen=True)
class QCLimit:
    """Limits of one QC measurement: outside ``[min, max]`` fails, outside
    ``[warn_min, warn_max]`` warns. ``None`` leaves that side open."""

    min: float | None = None
    max: float | None = None
    warn_min: float | None = None
    warn_max: float | None = None

    def judge(self, value: float | None) -> QCResult:
        """Classify ``value``; a missing or NaN value fails when any limit is set."""
        limits = (self.min, self.max, self.warn_min, self.warn_max)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return QCResult.FAIL if any(x is not None for x in limits) else QCResult.PASS
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            return QCResult.FAIL
        if (self.warn_min is not None and value < self.warn_min) or (
            self.warn_max is not None and value > self.warn_max
        ):
            return QCResult.WARN
        return QCResult.PASS
