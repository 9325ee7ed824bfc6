"""The aperture inspector pages (seed 000 section 7.5): search reference sources, an object's
co-added fluxes against wavelength, the forced measurements of a band with the image around
the object (aperture and annulus drawn), and the JSON twin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from surveydm.errors import SurveydmError
from surveydm.publish.web.inspector import band_fluxes, cutout_png, measurements, search, sed_png
from surveydm.publish.web.portal import PageNotFound, Portal, portal

router = APIRouter()
PNG = {200: {"content": {"image/png": {}}, "description": "PNG image"}}


def _number(value: str | None, name: str, kind: type = float) -> float | int | None:
    if value is None or not value.strip():
        return None
    try:
        return kind(value)
    except ValueError:
        raise SurveydmError(f"{name} must be a number, got {value!r}") from None


@router.get("/inspector", response_class=HTMLResponse, summary="Aperture inspector")
def inspector_page(
    request: Request,
    p: Annotated[Portal, Depends(portal)],
    ref_id: Annotated[str | None, Query(description="reference source id")] = None,
    ra: Annotated[str | None, Query(description="deg")] = None,
    dec: Annotated[str | None, Query(description="deg")] = None,
    radius: Annotated[str | None, Query(description="arcsec (default 10)")] = None,
    band: Annotated[str | None, Query(description="band to list / to cut on")] = None,
    min_flux: Annotated[str | None, Query(description="co-added flux cut, nJy")] = None,
) -> HTMLResponse:
    """Search form and results; with one object, its fluxes and (with ``band``) the
    measurements behind that band."""
    rid = _number(ref_id, "ref_id", int)
    ra_v, dec_v = _number(ra, "ra"), _number(dec, "dec")
    cut = _number(min_flux, "min_flux")
    found, fluxes, rows = [], [], []
    searched = any(v is not None for v in (rid, ra_v, dec_v, cut))
    with p.registry.session(write=False) as s:
        if searched:
            found = search(s, ref_id=rid, ra=ra_v, dec=dec_v,
                           radius_arcsec=_number(radius, "radius") or 10.0,
                           band=band or None, min_flux=cut)  # fmt: skip
        if rid is not None and found:
            fluxes = band_fluxes(s, rid)
            if band:
                rows = measurements(s, rid, band)
    return p.render(request, "inspector.html", found=found, fluxes=fluxes, rows=rows,
                    ref_id=rid, band=band or "", searched=searched,
                    form={"ref_id": ref_id or "", "ra": ra or "", "dec": dec or "",
                          "radius": radius or "", "band": band or "",
                          "min_flux": min_flux or ""})  # fmt: skip


@router.get("/inspector/{ref_id}/fluxes.png", responses=PNG, response_class=Response,
            summary="An object's co-added fluxes against wavelength")  # fmt: skip
def inspector_sed(ref_id: int, p: Annotated[Portal, Depends(portal)]) -> Response:
    with p.registry.session(write=False) as s:
        bands = band_fluxes(s, ref_id)
    if not bands:
        raise PageNotFound(f"no co-added fluxes for reference source {ref_id}")
    return Response(sed_png(bands, ref_id), media_type="image/png")


@router.get("/inspector/measurement/{forced_id}.png", responses=PNG, response_class=Response,
            summary="The image around a forced measurement with its aperture")  # fmt: skip
def inspector_cutout(forced_id: int, p: Annotated[Portal, Depends(portal)]) -> Response:
    with p.registry.session(write=False) as s:
        try:
            png = cutout_png(s, p.archive_root, forced_id)
        except LookupError as exc:
            raise PageNotFound(str(exc)) from None
    return Response(png, media_type="image/png")


@router.get("/api/inspector/{ref_id}", summary="An object's co-added fluxes and measurements")
def inspector_json(ref_id: int, p: Annotated[Portal, Depends(portal)]) -> dict:
    with p.registry.session(write=False) as s:
        bands = band_fluxes(s, ref_id)
        if not bands:
            raise PageNotFound(f"no co-added fluxes for reference source {ref_id}")
        return {
            "ref_id": ref_id,
            "bands": [vars(b) for b in bands],
            "measurements": {
                b.band: [vars(m) for m in measurements(s, ref_id, b.band)] for b in bands
            },  # fmt: skip
        }
