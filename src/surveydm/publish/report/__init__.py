"""The nightly report (seed 000 section 7.3): observing conditions and data quality of a range of
nights, the share of science frames passing user-set quality cuts, and the failing exposures to
reschedule. Usable without the web::

    from surveydm.publish.report import QualityCuts, build_report
    with registry.session(write=False) as s:
        report = build_report(s, "2026-11-20", "2026-11-20", QualityCuts(max_seeing=1.5))
    report.pass_percent, report.failing_csv(), report.figures()["seeing"]  # PNG bytes
"""

from surveydm.publish.report.nightly import (
    PLOTS,
    ExposureQuality,
    NightlyReport,
    QualityCuts,
    build_report,
    latest_night,
)

__all__ = [
    "PLOTS",
    "ExposureQuality",
    "NightlyReport",
    "QualityCuts",
    "build_report",
    "latest_night",
]
