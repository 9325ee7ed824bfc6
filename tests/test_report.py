"""The nightly report computed without the web (surveydm.publish.report), on SQLite and
PostgreSQL, over the processed demo night of tests/webdata.py."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.publish.report import PLOTS, QualityCuts, build_report, latest_night
from surveydm.publish.report.nightly import ExposureQuality, ReportError, apply_cuts
from webdata import NIGHT, DemoNight, build_demo_night


@pytest.fixture
def demo(registry: Registry, settings: Settings) -> DemoNight:
    return build_demo_night(registry, settings.archive_root)


def test_report_table_and_pass_fraction(registry: Registry, demo: DemoNight) -> None:
    with registry.session(write=False) as s:
        assert latest_night(s) == NIGHT
        report = build_report(s, NIGHT)
    assert report.n_science == 8 and report.n_pass == 4
    assert report.pass_percent == pytest.approx(50.0)
    assert report.pass_percent_by_night() == {"2026-11-20": pytest.approx(50.0)}
    assert report.failed_by_cut() == {"astrometry": 1, "not_reduced": 1, "seeing": 1,
                                      "transparency": 1}  # fmt: skip
    by_exp = {e.exp_num: e for e in report.exposures}
    # Reduced rows replace the raw rows of the same exposure; CCD aggregates are used.
    assert by_exp[1].seeing == pytest.approx(0.9)
    assert by_exp[1].worst_psf_fwhm == pytest.approx(0.9 + 0.05 * 4)
    assert by_exp[1].zp_err == pytest.approx(0.01)
    assert [e.exp_num for e in report.exposures] == list(range(1, 9))  # ordered by time
    rows = list(csv.DictReader(io.StringIO(report.failing_csv())))
    assert [int(r["exp_num"]) for r in rows] == [2, 3, 5, 7]
    assert rows[2]["failed_cuts"] == "transparency" and rows[2]["transparency"] == "0.41"


def test_cuts_change_the_verdicts(registry: Registry, demo: DemoNight) -> None:
    with registry.session(write=False) as s:
        none = build_report(s, NIGHT, NIGHT, QualityCuts(None, None, None, None, None, None))
        psf = build_report(s, NIGHT, NIGHT, QualityCuts(None, None, 1.2, None, None, None))
        zp = build_report(s, NIGHT, NIGHT, QualityCuts(None, None, None, None, None, 25.5))
        later = build_report(s, "2026-11-21", "2026-11-30")
    assert none.n_pass == 7  # only the unreduced exposure fails
    # Worst CCD PSF = seeing + 0.2: above 1.2 for seeing >= 1.1.
    assert {e.exp_num for e in psf.failing} == {2, 3, 5, 6, 7}
    assert {e.exp_num for e in zp.failing} == {3, 5}
    assert later.n_science == 0 and later.pass_percent is None


def test_figures_are_png(registry: Registry, demo: DemoNight) -> None:
    from matplotlib.image import imread

    with registry.session(write=False) as s:
        figures = build_report(s, NIGHT).figures()
    assert set(figures) == {*PLOTS, "pass_fraction"}
    for name, png in figures.items():
        img = imread(io.BytesIO(png), format="png")
        assert img.shape[1] > 200 and img[..., :3].std() > 0.01, name


def test_bad_parameters_raise_clear_errors(registry: Registry) -> None:
    with registry.session(write=False) as s:
        with pytest.raises(ReportError, match="YYYY-MM-DD"):
            build_report(s, "20/11/2026")
        with pytest.raises(ReportError, match="before"):
            build_report(s, "2026-11-20", "2026-11-19")
        with pytest.raises(ReportError, match="one year"):
            build_report(s, "2020-01-01", "2026-01-01")
        assert latest_night(s) is None
        with pytest.raises(ReportError, match="unknown plot"):
            build_report(s, date(2026, 11, 20)).plot("humidity")
    with pytest.raises(ReportError, match="finite non-negative"):
        QualityCuts(max_seeing=-1.0)
    with pytest.raises(ReportError, match="fraction"):
        QualityCuts(min_transparency=70.0)


def test_apply_cuts_missing_metric_fails_and_statuses() -> None:
    e = ExposureQuality(
        mosaic_id=1, obs_set="x", night="2026-11-20", filename="f", exp_num=1, date_obs=None,
        filter_tray=None, object=None, ra=None, dec=None, exptime=60, airmass=1.1, seeing=1.0,
        worst_psf_fwhm=1.1, sky_background=20, transparency=None, zp_nightly=25.8,
        zp_err=0.01, astro_rms=0.1, statuses={"astrometry_status": "failed"},
    )  # fmt: skip
    assert apply_cuts(e, QualityCuts()) == ["transparency", "astrometry_status"]
    assert apply_cuts(e, QualityCuts(min_transparency=None, require_status_ok=False)) == []
