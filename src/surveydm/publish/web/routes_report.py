"""Nightly report pages (seed 000 section 7.3) and the quick-look images of exposures
(section 7.2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic, ObsSet
from surveydm.publish.report import PLOTS, NightlyReport, QualityCuts, build_report, latest_night
from surveydm.publish.web.portal import PageNotFound, Portal, portal
from surveydm.publish.web.quicklook import MAX_BIN, CcdFile, ccd_png, mosaic_png
from surveydm.publish.web.safepath import safe_archive_path
from surveydm.publish.web.schemas import (
    ErrorBody,
    ExposureQuickLook,
    ExposureRow,
    NightlyReportModel,
    ReportCuts,
)

router = APIRouter()
ERRORS = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}}
PNG = {200: {"content": {"image/png": {}}, "description": "PNG image"}}
_DEFAULT = QualityCuts()


def _opt(value: str | None) -> float | None:
    from surveydm.publish.report.nightly import ReportError

    if value is None or not str(value).strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise ReportError(f"not a number: {value!r}") from None


class ReportParams:
    """Query parameters of the nightly report: the night range and the cuts (empty = no cut;
    absent = the default cut)."""

    def __init__(
        self,
        first: Annotated[str | None, Query(description="first night, YYYY-MM-DD")] = None,
        last: Annotated[str | None, Query(description="last night, YYYY-MM-DD")] = None,
        min_transparency: Annotated[str | None, Query(description="fraction")] = None,
        max_seeing: Annotated[str | None, Query(description="arcsec")] = None,
        max_psf_fwhm: Annotated[str | None, Query(description="worst CCD, arcsec")] = None,
        max_astro_rms: Annotated[str | None, Query(description="arcsec")] = None,
        max_zp_err: Annotated[str | None, Query(description="mag")] = None,
        min_zp: Annotated[str | None, Query(description="mag")] = None,
    ) -> None:
        self.first = first or None
        self.last = last or None
        raw = {
            "min_transparency": min_transparency,
            "max_seeing": max_seeing,
            "max_psf_fwhm": max_psf_fwhm,
            "max_astro_rms": max_astro_rms,
            "max_zp_err": max_zp_err,
            "min_zp": min_zp,
        }
        self.given = {k: v for k, v in raw.items() if v is not None}
        values = {k: (_opt(v) if v is not None else getattr(_DEFAULT, k)) for k, v in raw.items()}
        self.cuts = QualityCuts(**values)

    def query(self, first: str, last: str) -> str:
        """The query string reproducing these parameters for a resolved night range."""
        params = {"first": first, "last": last}
        for k in ReportParams._CUTS:
            v = getattr(self.cuts, k)
            params[k] = "" if v is None else repr(v)
        return urlencode(params)

    _CUTS = (
        "min_transparency", "max_seeing", "max_psf_fwhm", "max_astro_rms", "max_zp_err", "min_zp",
    )  # fmt: skip


def _report(p: Portal, params: ReportParams) -> NightlyReport:
    with p.registry.session(write=False) as s:
        # Default: the latest night with science exposures (today on an empty registry).
        first = params.first or latest_night(s) or datetime.now(UTC).date()
        return build_report(s, first, params.last or first, params.cuts)


def _model(report: NightlyReport, params: ReportParams) -> NightlyReportModel:
    q = params.query(report.first_night.isoformat(), report.last_night.isoformat())
    return NightlyReportModel(
        first_night=report.first_night.isoformat(),
        last_night=report.last_night.isoformat(),
        cuts=ReportCuts(**{k: getattr(report.cuts, k) for k in ReportParams._CUTS}),
        n_science=report.n_science,
        n_pass=report.n_pass,
        pass_percent=report.pass_percent,
        pass_percent_by_night=report.pass_percent_by_night(),
        failed_by_cut=report.failed_by_cut(),
        exposures=[ExposureRow.model_validate(e) for e in report.exposures],
        plots={name: f"/report/plot/{name}.png?{q}" for name in [*PLOTS, "pass_fraction"]},
        csv_url=f"/report/failing.csv?{q}",
    )


@router.get("/api/report", response_model=NightlyReportModel, responses=ERRORS, tags=["report"])
def api_report(
    p: Annotated[Portal, Depends(portal)], params: Annotated[ReportParams, Depends()]
) -> NightlyReportModel:
    """Nightly report of a range of nights (default: the latest night) under quality cuts."""
    return _model(_report(p, params), params)


@router.get("/report", response_class=HTMLResponse, include_in_schema=False)
def page_report(
    request: Request,
    p: Annotated[Portal, Depends(portal)],
    params: Annotated[ReportParams, Depends()],
) -> HTMLResponse:
    model = _model(_report(p, params), params)
    return p.render(request, "report.html", r=model)


@router.get(
    "/report/plot/{name}.png", response_class=Response, responses={**PNG, **ERRORS}, tags=["report"]
)
def report_plot(
    name: str, p: Annotated[Portal, Depends(portal)], params: Annotated[ReportParams, Depends()]
) -> Response:
    """One report plot: seeing, sky_background, transparency, zero_point, airmass (against
    time) or pass_fraction (per night)."""
    return Response(_report(p, params).plot(name), media_type="image/png")


@router.get(
    "/report/failing.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **ERRORS},
    tags=["report"],
)
def report_csv(
    p: Annotated[Portal, Depends(portal)], params: Annotated[ReportParams, Depends()]
) -> Response:
    """The exposures failing the cuts, for rescheduling, as CSV."""
    report = _report(p, params)
    name = f"failing_{report.first_night.isoformat()}_{report.last_night.isoformat()}.csv"
    return Response(
        report.failing_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# -- quick-look images ------------------------------------------------------------------------


def _reduced_mosaic(s, mosaic_id: int) -> Mosaic:  # noqa: ANN001
    m = s.get(Mosaic, mosaic_id)
    if m is None:
        raise PageNotFound(f"no exposure {mosaic_id}")
    if m.kind != "red_science":
        child = s.scalars(
            select(Mosaic)
            .where(Mosaic.parent_id == m.id, Mosaic.kind == "red_science")
            .order_by(Mosaic.id.desc())
        ).first()
        if child is not None:
            return child
    return m


def _ccd_files(p: Portal, mosaic_id: int) -> tuple[Mosaic, str, list[CcdFile]]:
    with p.registry.session(write=False) as s:
        m = _reduced_mosaic(s, mosaic_id)
        obs_set = s.scalar(select(ObsSet.obs_set).where(ObsSet.id == m.obs_set_id)) or ""
        rows = s.execute(
            select(Image.ccd_num, ArchiveFile.path)
            .join(Product, Image.product_id == Product.id)
            .join(ArchiveFile, Product.file_id == ArchiveFile.id)
            .where(Image.mosaic_id == m.id, Image.amp_num.is_(None))
            .order_by(Image.ccd_num)
        ).all()
    files = [CcdFile(ccd, safe_archive_path(p.archive_root, path)) for ccd, path in rows]
    return m, obs_set, files


def _quicklook(p: Portal, mosaic_id: int) -> ExposureQuickLook:
    m, obs_set, files = _ccd_files(p, mosaic_id)
    return ExposureQuickLook(
        mosaic_id=m.id,
        obs_set=obs_set,
        filename=m.filename,
        kind=m.kind,
        ccds=[f.ccd_num for f in files],
        mosaic_png=f"/exposures/{m.id}/mosaic.png" if files else None,
        ccd_png={f.ccd_num: f"/exposures/{m.id}/ccd/{f.ccd_num}.png" for f in files},
    )


@router.get(
    "/api/exposures/{mosaic_id}",
    response_model=ExposureQuickLook,
    responses=ERRORS,
    tags=["quality"],
)
def api_exposure(mosaic_id: int, p: Annotated[Portal, Depends(portal)]) -> ExposureQuickLook:
    """Reduced CCDs of an exposure (a raw exposure leads to its reduced mosaic) and the URLs of
    their quick-look images."""
    return _quicklook(p, mosaic_id)


@router.get("/exposures/{mosaic_id}", response_class=HTMLResponse, include_in_schema=False)
def page_exposure(
    mosaic_id: int, request: Request, p: Annotated[Portal, Depends(portal)]
) -> HTMLResponse:
    return p.render(request, "exposure.html", ql=_quicklook(p, mosaic_id))


@router.get(
    "/exposures/{mosaic_id}/mosaic.png",
    response_class=Response,
    responses={**PNG, **ERRORS},
    tags=["quality"],
)
def exposure_mosaic_png(
    mosaic_id: int,
    p: Annotated[Portal, Depends(portal)],
    bin: Annotated[  # noqa: A002
        int | None, Query(ge=1, le=MAX_BIN, description="binning factor (default: ~800 px)")
    ] = None,
) -> Response:
    """Binned focal-plane image of the exposure (zscale + asinh stretch)."""
    _, _, files = _ccd_files(p, mosaic_id)
    if not files:
        raise PageNotFound(f"exposure {mosaic_id} has no reduced CCD files")
    return Response(mosaic_png(files, bin), media_type="image/png")


@router.get(
    "/exposures/{mosaic_id}/ccd/{ccd_num}.png",
    response_class=Response,
    responses={**PNG, **ERRORS},
    tags=["quality"],
)
def exposure_ccd_png(
    mosaic_id: int,
    ccd_num: int,
    p: Annotated[Portal, Depends(portal)],
    bin: Annotated[  # noqa: A002
        int | None, Query(ge=1, le=MAX_BIN, description="binning factor (default: ~500 px)")
    ] = None,
) -> Response:
    """Quick-look image of one reduced CCD (binned, zscale + asinh stretch)."""
    _, _, files = _ccd_files(p, mosaic_id)
    match = [f for f in files if f.ccd_num == ccd_num]
    if not match:
        raise PageNotFound(f"exposure {mosaic_id} has no reduced CCD {ccd_num}")
    return Response(ccd_png(match[0].path, bin), media_type="image/png")
