"""The nightly task shape without a night: declarations, named QC limits and the checks built
from typed CCD metrics (pure functions; the end-to-end behaviour is tests/test_nightly.py)."""

from __future__ import annotations

import pytest

from surveydm.orchestration import QualityFailure
from surveydm.orchestration.qc import QCResult
from surveydm.orchestration.tasks import TASKS
from surveydm.pipelines.base.connections import Output, require_calibrations
from surveydm.pipelines.nightly import QC_LIMITS, SingleEpochCCD
from surveydm.pipelines.nightly.qc import (
    bad_pixel_checks,
    bias_checks,
    ccd_checks,
    mosaic_checks,
)
from surveydm.reduction.single_epoch import CCDMetrics, SingleEpochConfig


def _metrics(**changes) -> CCDMetrics:  # noqa: ANN003
    base = dict(
        psf_fwhm=1.2, psf_stars=40, bkg_mean=10.0, bkg_std=5.0, bkg_offset=0.0,
        n_extracted=500, astro_status="ok", astro_rms=0.02, astro_nstars=80, astro_message="",
        cosmic_ratio=0.001, saturate_ratio=0.0, masked_fraction=0.01, overscan={1: 1500.0},
        read_noise={1: 5.0}, zp=25.9, zp_err=0.005, zp_stars=60, aperture_correction=1.02,
        transparency=0.95, photo_status="ok",
    )  # fmt: skip
    return CCDMetrics(**{**base, **changes})


def test_task_names_are_the_stored_job_task_names():
    assert {
        "register", "register_file", "nightly", "master_bias", "master_flat", "master_fringe",
        "single_epoch", "single_epoch_ccd", "bad_pixel_mask",
    } <= set(TASKS)  # fmt: skip


def test_ccd_checks_use_named_limits():
    checks = {c.name: c for c in ccd_checks(_metrics())}
    assert list(checks) == ["psf_fwhm", "astro_nstars", "astro_rms", "zp_err", "transparency"]
    assert checks["psf_fwhm"].limit is QC_LIMITS.psf_fwhm and QC_LIMITS.psf_fwhm.max == 2.5
    assert all(c.limit.judge(c.value) == QCResult.PASS for c in checks.values())
    bad = {c.name: c for c in ccd_checks(_metrics(psf_fwhm=2.0, zp=None, photo_status="x"))}
    assert bad["psf_fwhm"].limit.judge(2.0) == QCResult.WARN
    assert bad["zp_measured"].limit.judge(bad["zp_measured"].value) == QCResult.FAIL
    assert "zp_err" not in bad


def test_mosaic_transparency_has_no_upper_limit_and_bias_checks_take_the_worst_ccd():
    (_, _, transp, _) = mosaic_checks(1.0, 1.0, 1.5, 0.02)
    assert transp.limit.judge(1.5) == QCResult.PASS
    level = bias_checks({1: {"level": 2.0}, 2: {"level": -12.0}})[0]
    assert level.value == 12.0 and level.limit.judge(level.value) == QCResult.WARN


def test_bad_pixel_checks_take_the_worst_ccd_and_warn_without_darks():
    fraction, darks = bad_pixel_checks(
        {1: {"bad_fraction": 0.002, "n_darks": 1.0}, 2: {"bad_fraction": 0.02, "n_darks": 1.0}}
    )
    assert fraction.value == 0.02 and fraction.limit.judge(fraction.value) == QCResult.WARN
    assert darks.limit.judge(darks.value) == QCResult.PASS
    (_, darks) = bad_pixel_checks({1: {"bad_fraction": 0.002, "n_darks": 0.0}})
    assert darks.limit.judge(darks.value) == QCResult.WARN
    assert bad_pixel_checks({}) == []


def test_declarations_select_data_ids_and_required_calibrations_say_why():
    out = Output("reduced_sci", ("obs_set", "ccd"))
    assert out.data_id({"obs_set": "o", "ccd": 3, "filter": "r"}) == {"obs_set": "o", "ccd": 3}
    data_id = {"filter_tray": "BB-r"}
    with pytest.raises(QualityFailure, match="no valid master flat for tray BB-r"):
        require_calibrations(SingleEpochCCD.calibrations, {"bias": object(), "flat": None},
                             data_id)  # fmt: skip
    # the fringe frame is optional: missing it is not a failure
    require_calibrations(
        SingleEpochCCD.calibrations, {"bias": object(), "flat": object(), "fringe": None}, data_id
    )


def test_metrics_scalars_and_config_from_mapping():
    out = _metrics().scalars()
    assert out["zp"] == 25.9 and "overscan" not in out and "read_noise" not in out
    cfg = SingleEpochConfig.from_mapping({"sip_degree": 2, "from_a_newer_version": 1})
    assert cfg.sip_degree == 2 and cfg == SingleEpochConfig(sip_degree=2)
