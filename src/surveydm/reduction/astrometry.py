"""Astrometric calibration of one CCD: reference-catalog matching and a TAN-SIP fit.

Starting from the header WCS guess (pointing errors up to ~1.5 arcmin, rotation up to ~1.5 deg),
the solver

1. projects the reference stars (proper motions applied to the observation epoch) onto the
   pixel grid with the guess WCS;
2. finds the rotation and offset with a coarse search: for each trial rotation about the CCD
   centre it histograms the offsets between all pairs of bright sources and bright reference
   stars and keeps the rotation whose offset histogram has the highest, significant peak
   (the "offset vote" of Pan-STARRS' psastro and of SCAMP's cross-correlation, Bertin 2006);
3. refines with iterative nearest-neighbour matching (scipy ``cKDTree``, one-to-one) and an
   affine fit in pixel space with a shrinking match radius;
4. fits the TAN-SIP WCS (Shupe et al. 2005 SIP convention) by linear least squares
   (:func:`fit_tan_sip`; ``fitter="astropy"`` uses ``astropy.wcs.utils.fit_wcs_from_points``
   instead), with sigma clipping of the 2-D residuals and re-matching on the sky.

A CCD with too few stars, or whose stars do not match the reference catalog, gives a solution
with status ``too_few_stars`` / ``no_match`` and the initial WCS, never an exception (seed 000:
the astro status of an image is a quality flag, not a crash).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS, Sip
from astropy.wcs.utils import fit_wcs_from_points, proj_plane_pixel_scales
from scipy.spatial import cKDTree
from scipy.stats import poisson

from surveydm.errors import SurveydmError

__all__ = [
    "STATUS_OK",
    "STATUS_TOO_FEW_STARS",
    "STATUS_NO_MATCH",
    "AstrometryError",
    "AstrometrySolution",
    "apply_proper_motion",
    "fit_tan_sip",
    "solve_astrometry",
]

STATUS_OK = "ok"
STATUS_TOO_FEW_STARS = "too_few_stars"
STATUS_NO_MATCH = "no_match"


class AstrometryError(SurveydmError):
    """Inputs to the astrometric solver are malformed (missing columns, non-celestial WCS)."""


@dataclass
class AstrometrySolution:
    """Result of :func:`solve_astrometry`.

    Attributes:
        wcs: fitted TAN-SIP WCS (status ``ok``) or a copy of the initial WCS.
        status: ``"ok"``, ``"too_few_stars"`` or ``"no_match"``.
        n_matches: matched source/reference pairs used in the final fit (after clipping).
        rms_arcsec: 2-D RMS sqrt(<dRA*^2 + dDec^2>) of the fit residuals of bright unsaturated
            stars (flags == 0, flux above the median of the used matches), arcsec.
        rms_ra_arcsec, rms_dec_arcsec: per-axis RMS of the same stars (RA includes cos Dec).
        n_bright: stars in the RMS.
        matches: one row per matched pair: ``source_index, reference_index, x, y, ra, dec``
            (reference at epoch), ``dra_arcsec, ddec_arcsec`` (fit - reference), ``used``.
        rotation_deg: rotation (deg) of the sources relative to the guess, about the CCD
            centre (refined affine match; the coarse value if matching failed).
        offset_arcsec: (dx, dy) shift of the CCD centre relative to the guess, in the guess's
            pixel axes converted to arcsec.
        message: human-readable summary (why it failed, if it did).
    """

    wcs: WCS
    status: str
    n_matches: int = 0
    rms_arcsec: float = float("nan")
    rms_ra_arcsec: float = float("nan")
    rms_dec_arcsec: float = float("nan")
    n_bright: int = 0
    matches: Table = field(default_factory=Table)
    rotation_deg: float = float("nan")
    offset_arcsec: tuple[float, float] = (float("nan"), float("nan"))
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when the fit succeeded (``status == "ok"``)."""
        return self.status == STATUS_OK

    @property
    def rms_ra(self) -> float:
        """Alias of ``rms_ra_arcsec`` (arcsec)."""
        return self.rms_ra_arcsec

    @property
    def rms_dec(self) -> float:
        """Alias of ``rms_dec_arcsec`` (arcsec)."""
        return self.rms_dec_arcsec


def _decimal_year(epoch: Time | float | str | None) -> float | None:
    if epoch is None:
        return None
    if isinstance(epoch, Time):
        return float(epoch.jyear)
    if isinstance(epoch, str):
        return float(Time(epoch).jyear)
    return float(epoch)


def apply_proper_motion(
    reference: Table, epoch: Time | float | str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Reference positions at the observation epoch (linear proper motion on the sphere).

    Args:
        reference: table with ``ra, dec`` (deg) and optionally ``pmra`` (mas/yr, mu_alpha* =
            mu_alpha cos(dec), the Gaia convention), ``pmdec`` (mas/yr) and the catalog epoch
            (Julian year) as an ``epoch``/``ref_epoch`` column or an ``EPOCH``/``epoch``
            ``meta`` keyword (as FITS catalogs carry it); missing/NaN motions count as 0.
        epoch: observation epoch (Time, Julian year or ISO string); None leaves positions.

    Returns:
        (ra, dec) float64 arrays in degrees.
    """
    ra = np.asarray(reference["ra"], dtype=np.float64)
    dec = np.asarray(reference["dec"], dtype=np.float64)
    t_obs = _decimal_year(epoch)
    if t_obs is None or "pmra" not in reference.colnames or "pmdec" not in reference.colnames:
        return ra, dec
    col = next((c for c in ("epoch", "ref_epoch") if c in reference.colnames), None)
    meta_key = next((k for k in reference.meta if str(k).lower() in ("epoch", "ref_epoch")), None)
    if col is not None:
        t_ref = np.asarray(reference[col], dtype=np.float64)
    elif meta_key is not None:
        t_ref = np.full(len(ra), _decimal_year(reference.meta[meta_key]))
    else:
        return ra, dec
    dt = np.nan_to_num(t_obs - t_ref)
    pmra = np.nan_to_num(np.asarray(np.ma.filled(reference["pmra"], np.nan), dtype=np.float64))
    pmdec = np.nan_to_num(np.asarray(np.ma.filled(reference["pmdec"], np.nan), dtype=np.float64))
    dec_new = dec + pmdec * dt / 3.6e6
    cosd = np.maximum(np.cos(np.deg2rad(dec)), 1e-6)
    ra_new = (ra + pmra * dt / 3.6e6 / cosd) % 360.0
    return ra_new, dec_new


def _column(table: Table, names: tuple[str, ...], what: str) -> np.ndarray:
    for n in names:
        if n in table.colnames:
            return np.asarray(np.ma.filled(table[n], np.nan), dtype=np.float64)
    raise AstrometryError(f"{what} table needs one of the columns {', '.join(names)}")


def _tangent_offsets(ra, dec, ra0, dec0) -> tuple[np.ndarray, np.ndarray]:
    """Small-angle offsets (dRA cos dec, dDec) in arcsec of (ra, dec) from (ra0, dec0)."""
    dra = ((ra - ra0 + 180.0) % 360.0 - 180.0) * np.cos(np.deg2rad(dec0))
    return dra * 3600.0, (dec - dec0) * 3600.0


def _unique_nearest(tree: cKDTree, pts: np.ndarray, radius: float) -> tuple[np.ndarray, ...]:
    """One-to-one nearest-neighbour matches within radius: (query idx, tree idx, distance)."""
    if len(pts) == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, np.zeros(0)
    d, j = tree.query(pts, k=1, distance_upper_bound=radius)
    ok = np.isfinite(d)
    qi = np.nonzero(ok)[0]
    d, j = d[ok], j[ok]
    order = np.argsort(d, kind="stable")
    qi, j, d = qi[order], j[order], d[order]
    _, first = np.unique(j, return_index=True)
    keep = np.sort(first)
    return qi[keep], j[keep], d[keep]


def _lstsq(design: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Least squares via the normal equations of the column-equilibrated design.

    The designs here are low-order polynomials of coordinates scaled to [-1, 1] (condition
    number of the normal matrix < 1e6), so this is accurate and ~40x faster than an SVD
    solver for these small problems; a rank-deficient system falls back to SVD.
    """
    norms = np.sqrt(np.sum(design * design, axis=0))
    norms[norms == 0] = 1.0
    d = design / norms
    try:
        coef = np.linalg.solve(d.T @ d, d.T @ rhs)
    except np.linalg.LinAlgError:
        coef = scipy.linalg.lstsq(d, rhs, check_finite=False)[0]
    return coef / norms[:, None] if coef.ndim == 2 else coef / norms


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares affine map (3x2 matrix M, dst = [x, y, 1] @ M)."""
    return _lstsq(np.column_stack([src, np.ones(len(src))]), dst)


def _apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.column_stack([pts, np.ones(len(pts))]) @ m


def _coarse_search(
    src: np.ndarray,
    ref: np.ndarray,
    center: np.ndarray,
    max_offset_px: float,
    max_rotation_deg: float,
    bin_px: float,
) -> tuple[float, np.ndarray, int, float]:
    """Rotation/offset vote.

    Returns (rotation_deg, offset (2,), peak votes, mean votes per cell, cells searched).
    """
    rmax = float(np.max(np.hypot(*(src - center).T))) if len(src) else 1.0
    step = math.degrees(0.5 * bin_px / max(rmax, 1.0))
    n_steps = int(math.ceil(max_rotation_deg / step)) if max_rotation_deg > 0 else 0
    rotations = np.linspace(-max_rotation_deg, max_rotation_deg, 2 * n_steps + 1)
    if len(rotations) == 0:
        rotations = np.array([0.0])
    nb = int(math.ceil(2 * max_offset_px / bin_px)) + 1
    edges = (np.arange(nb + 1) - nb / 2.0) * bin_px
    best = (0.0, np.zeros(2), -1, 0.0, 1)
    n_cells = len(rotations) * (nb - 1) ** 2
    rel = src - center
    for rot in rotations:
        c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
        rs = np.column_stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]])
        rs += center
        dx = (ref[None, :, 0] - rs[:, None, 0]).ravel()
        dy = (ref[None, :, 1] - rs[:, None, 1]).ravel()
        sel = (np.abs(dx) < edges[-1]) & (np.abs(dy) < edges[-1])
        h, _, _ = np.histogram2d(dx[sel], dy[sel], bins=(edges, edges))
        # 2x2 box sums so that a peak split over bin edges still counts fully.
        h2 = h[:-1, :-1] + h[1:, :-1] + h[:-1, 1:] + h[1:, 1:]
        k = int(np.argmax(h2))
        i, j = np.unravel_index(k, h2.shape)
        peak = int(h2[i, j])
        if peak > best[2]:
            # Vote-weighted mean of the offsets in the 2x2 cell block.
            lo_x, hi_x = edges[i], edges[i + 2]
            lo_y, hi_y = edges[j], edges[j + 2]
            inb = sel.copy()
            inb[sel] = (dx[sel] >= lo_x) & (dx[sel] < hi_x) & (dy[sel] >= lo_y) & (dy[sel] < hi_y)
            off = np.array([np.mean(dx[inb]), np.mean(dy[inb])])
            noise = float(sel.sum()) * 4.0 / (nb * nb)
            best = (float(rot), off, peak, noise, n_cells)
    return best


def _sip_degree_for(n: int, requested: int | None) -> int | None:
    """Highest SIP degree <= requested with at least 2 matches per free parameter pair."""
    if not requested or requested < 2:
        return None
    for d in range(int(requested), 1, -1):
        ncoef = sum(k + 1 for k in range(2, d + 1))
        if n >= 6 + 2 * ncoef:
            return d
    return None


def _gnomonic(ra, dec, ra0, dec0) -> tuple[np.ndarray, np.ndarray]:
    """TAN (gnomonic) projection of (ra, dec) about (ra0, dec0): standard coordinates, deg."""
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    cosc = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return np.rad2deg(xi), np.rad2deg(eta)


def _deproject(xi: float, eta: float, ra0: float, dec0: float) -> tuple[float, float]:
    """Inverse gnomonic projection of standard coordinates (deg) about (ra0, dec0)."""
    x, y = math.radians(xi), math.radians(eta)
    d0 = math.radians(dec0)
    rho = math.hypot(x, y)
    if rho == 0:
        return ra0, dec0
    c = math.atan(rho)
    dec = math.asin(math.cos(c) * math.sin(d0) + y * math.sin(c) * math.cos(d0) / rho)
    num = x * math.sin(c)
    den = rho * math.cos(d0) * math.cos(c) - y * math.sin(d0) * math.sin(c)
    return (ra0 + math.degrees(math.atan2(num, den))) % 360.0, math.degrees(dec)


def _poly_terms(degree: int, min_order: int) -> list[tuple[int, int]]:
    return [(p, n - p) for n in range(min_order, degree + 1) for p in range(n, -1, -1)]


def _poly_design(u, v, terms, scale) -> np.ndarray:
    us, vs = u / scale, v / scale
    return np.column_stack([us**p * vs**q for p, q in terms])


def fit_tan_sip(
    x: np.ndarray,
    y: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    *,
    crpix: tuple[float, float],
    sip_degree: int | None,
    image_shape: tuple[int, int],
    crval: tuple[float, float] | None = None,
) -> WCS:
    """Linear least-squares TAN-SIP fit of pixel (x, y) (0-based) to sky (ra, dec) (deg).

    With CRPIX fixed (FITS 1-based) and the tangent point CRVAL iterated onto the sky position
    of CRPIX, the SIP model is linear in its coefficients: the standard coordinates are a
    polynomial in the pixel offsets whose first-order part is the CD matrix and whose higher
    orders are CD (A, B) (Shupe et al. 2005). The inverse polynomials (AP, BP, degree + 1) are
    fitted on a grid over the CCD so FITS readers without iterative inversion also get pixel
    positions right. Same forward model as ``astropy.wcs.utils.fit_wcs_from_points(...,
    sip_degree=...)``, but exact and ~100x faster. ``image_shape`` is (ny, nx).
    """
    ny, nx = image_shape
    deg = int(sip_degree) if sip_degree and sip_degree >= 2 else 1
    cpx, cpy = float(crpix[0]) - 1.0, float(crpix[1]) - 1.0  # 0-based reference pixel
    u = np.asarray(x, dtype=np.float64) - cpx
    v = np.asarray(y, dtype=np.float64) - cpy
    scale = max(nx, ny) / 2.0
    terms = _poly_terms(deg, 0)
    design = _poly_design(u, v, terms, scale)
    if crval is None:
        ra0, dec0 = float(np.median(ra)), float(np.median(dec))
    else:
        ra0, dec0 = float(crval[0]), float(crval[1])
    for _ in range(6):
        xi, eta = _gnomonic(ra, dec, ra0, dec0)
        coef = _lstsq(design, np.column_stack([xi, eta]))
        cx, cy = coef[:, 0], coef[:, 1]
        # The constant terms are the standard coordinates of CRPIX: move the tangent point.
        ra0, dec0 = _deproject(cx[0], cy[0], ra0, dec0)
        if math.hypot(cx[0], cy[0]) < 1e-11:
            break
    idx = {t: i for i, t in enumerate(terms)}
    cd = np.array([[cx[idx[(1, 0)]], cx[idx[(0, 1)]]], [cy[idx[(1, 0)]], cy[idx[(0, 1)]]]])
    cd = cd / scale
    w = WCS(naxis=2)
    w.wcs.crpix = [cpx + 1.0, cpy + 1.0]
    w.wcs.crval = [ra0, dec0]
    w.wcs.cd = cd
    w.pixel_shape = (nx, ny)
    if deg < 2:
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.set()
        return w
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    cd_inv = np.linalg.inv(cd)
    a = np.zeros((deg + 1, deg + 1))
    b = np.zeros((deg + 1, deg + 1))
    for (p, q), i in idx.items():
        if p + q >= 2:
            a[p, q], b[p, q] = cd_inv @ np.array([cx[i], cy[i]]) / scale ** (p + q)
    # Inverse SIP on a grid: U = u + A(u, v), V = v + B(u, v); fit u - U, v - V in (U, V).
    gu, gv = np.meshgrid(np.linspace(-cpx, nx - 1 - cpx, 40), np.linspace(-cpy, ny - 1 - cpy, 40))
    gu, gv = gu.ravel(), gv.ravel()
    fu = gu + sum(a[p, q] * gu**p * gv**q for p in range(deg + 1) for q in range(deg + 1))
    fv = gv + sum(b[p, q] * gu**p * gv**q for p in range(deg + 1) for q in range(deg + 1))
    ideg = deg + 1
    iterms = _poly_terms(ideg, 1)
    idesign = _poly_design(fu, fv, iterms, scale)
    coef = _lstsq(idesign, np.column_stack([gu - fu, gv - fv]))
    cu, cv = coef[:, 0], coef[:, 1]
    ap = np.zeros((ideg + 1, ideg + 1))
    bp = np.zeros((ideg + 1, ideg + 1))
    for i, (p, q) in enumerate(iterms):
        ap[p, q] = cu[i] / scale ** (p + q)
        bp[p, q] = cv[i] / scale ** (p + q)
    w.sip = Sip(a, b, ap, bp, w.wcs.crpix)
    w.wcs.set()
    return w


def _residuals_arcsec(wcs: WCS, x, y, ra, dec) -> tuple[np.ndarray, np.ndarray]:
    pra, pdec = wcs.all_pix2world(x, y, 0)
    dra = ((pra - ra + 180.0) % 360.0 - 180.0) * np.cos(np.deg2rad(dec)) * 3600.0
    return dra, (pdec - dec) * 3600.0


def solve_astrometry(
    sources: Table,
    reference: Table,
    initial_wcs: WCS,
    *,
    max_offset_arcsec: float = 90.0,
    max_rotation_deg: float = 1.5,
    sip_degree: int | None = 3,
    match_radius_arcsec: float = 1.0,
    min_matches: int = 6,
    epoch: Time | float | str | None = None,
    image_shape: tuple[int, int] | None = None,
    max_sources: int = 150,
    clip_sigma: float = 3.5,
    flux_column: str | None = None,
    mag_column: str = "mag",
    fitter: str = "linear",
) -> AstrometrySolution:
    """Calibrate the WCS of one CCD against a reference catalog, from the header guess.

    Args:
        sources: detections with ``x, y`` (0-based pixels), a flux (``flux``/``flux_auto``/
            ``flux_aper`` or ``flux_column``) and optionally ``flags`` (non-zero rows are not
            used for the fit).
        reference: reference stars with ``ra, dec`` (deg), a magnitude (``mag_column``,
            brighter first in the coarse search), optional ``pmra, pmdec`` (mas/yr) and the
            catalog epoch (see :func:`apply_proper_motion`).
        initial_wcs: celestial WCS guess from the header (pointing and rotation errors).
        max_offset_arcsec: largest pointing error searched.
        max_rotation_deg: largest rotation error searched.
        sip_degree: SIP polynomial degree (lowered automatically when matches are few;
            None or < 2 fits a linear TAN WCS).
        match_radius_arcsec: final one-to-one match radius on the sky.
        min_matches: fewer usable stars or matches than this gives ``too_few_stars`` /
            ``no_match``.
        epoch: observation epoch for proper motions (default: the WCS ``MJD-OBS`` /
            ``DATE-OBS`` if set).
        image_shape: (ny, nx) of the CCD (default: ``initial_wcs.pixel_shape`` or the extent
            of the sources).
        max_sources: brightest sources used in the coarse vote.
        clip_sigma: residual clipping threshold (Rayleigh sigma of the 2-D residuals).
        flux_column: name of the flux column to rank sources by.
        mag_column: reference magnitude column to rank reference stars by (e.g. ``mag_r``;
            without a ``mag`` column all stars rank equally).
        fitter: "linear" (:func:`fit_tan_sip`, exact linear least squares with CRPIX at the
            CCD centre, default) or "astropy" (``fit_wcs_from_points``, same model, ~100x
            slower, no inverse SIP terms).

    Returns:
        :class:`AstrometrySolution` (never raises for data that simply does not solve).

    Raises:
        AstrometryError: missing columns or a non-celestial initial WCS.
    """
    if fitter not in ("linear", "astropy"):
        raise AstrometryError(f"fitter must be 'linear' or 'astropy', got {fitter!r}")
    if not initial_wcs.has_celestial:
        raise AstrometryError("initial_wcs must be a celestial WCS")
    x = _column(sources, ("x",), "sources")
    y = _column(sources, ("y",), "sources")
    names = (flux_column,) if flux_column else ("flux", "flux_auto", "flux_aper")
    flux = _column(sources, names, "sources")
    flags = (
        np.asarray(sources["flags"], dtype=np.int64)
        if "flags" in sources.colnames
        else np.zeros(len(x), dtype=np.int64)
    )
    if epoch is None:
        if np.isfinite(initial_wcs.wcs.mjdobs):
            epoch = Time(initial_wcs.wcs.mjdobs, format="mjd")
        elif initial_wcs.wcs.dateobs:
            epoch = Time(initial_wcs.wcs.dateobs)
    for col in ("ra", "dec"):
        if col not in reference.colnames:
            raise AstrometryError(f"reference table needs an {col!r} column (deg)")
    ra_ref, dec_ref = apply_proper_motion(reference, epoch)
    if mag_column not in reference.colnames and mag_column != "mag":
        raise AstrometryError(f"reference table has no {mag_column!r} column")
    mag_ref = (
        np.asarray(np.ma.filled(reference[mag_column], np.nan), dtype=np.float64)
        if mag_column in reference.colnames
        else np.zeros(len(ra_ref))
    )

    fallback = copy.deepcopy(initial_wcs)
    if image_shape is not None:
        ny, nx = int(image_shape[0]), int(image_shape[1])
    elif initial_wcs.pixel_shape is not None:
        nx, ny = (int(v) for v in initial_wcs.pixel_shape)
    else:
        nx = int(np.nanmax(x)) + 1 if len(x) else 1
        ny = int(np.nanmax(y)) + 1 if len(y) else 1

    good_src = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux) & (flux > 0) & (flags == 0)
    src_idx = np.nonzero(good_src)[0]
    src_idx = src_idx[np.argsort(-flux[src_idx], kind="stable")]

    scale = float(np.mean(proj_plane_pixel_scales(initial_wcs.celestial))) * 3600.0
    crpix = np.asarray(initial_wcs.wcs.crpix, dtype=np.float64) - 1.0
    center = np.array([(nx - 1) / 2.0, (ny - 1) / 2.0])
    lever = float(np.hypot(*(center - crpix)))
    max_off_px = max_offset_arcsec / scale + math.radians(max_rotation_deg) * lever
    pad = max_off_px + math.radians(max_rotation_deg) * float(np.hypot(nx, ny)) / 2 + 5

    with np.errstate(invalid="ignore"):
        finite_ref = np.isfinite(ra_ref) & np.isfinite(dec_ref)
        xr = np.full(len(ra_ref), np.nan)
        yr = np.full(len(ra_ref), np.nan)
        if finite_ref.any():
            xr[finite_ref], yr[finite_ref] = initial_wcs.all_world2pix(
                ra_ref[finite_ref], dec_ref[finite_ref], 0, quiet=True
            )
    in_area = finite_ref & (xr > -pad) & (xr < nx - 1 + pad) & (yr > -pad) & (yr < ny - 1 + pad)
    ref_idx = np.nonzero(in_area)[0]
    ref_idx = ref_idx[np.argsort(np.nan_to_num(mag_ref[ref_idx], nan=99.0), kind="stable")]

    def failed(status: str, message: str, **kw) -> AstrometrySolution:
        return AstrometrySolution(wcs=fallback, status=status, message=message, **kw)

    if len(src_idx) < min_matches or len(ref_idx) < min_matches:
        return failed(
            STATUS_TOO_FEW_STARS,
            f"{len(src_idx)} usable sources and {len(ref_idx)} reference stars in the field; "
            f"at least {min_matches} of each needed",
        )

    # Coarse rotation + offset vote on the brightest sources and reference stars.
    n_s = min(len(src_idx), max_sources)
    area_ratio = (nx + 2 * pad) * (ny + 2 * pad) / float(nx * ny)
    n_r = min(len(ref_idx), int(math.ceil(1.5 * n_s * area_ratio)))
    s_xy = np.column_stack([x[src_idx[:n_s]], y[src_idx[:n_s]]])
    r_xy = np.column_stack([xr[ref_idx[:n_r]], yr[ref_idx[:n_r]]])
    bin_px = max(2.0, 2.0 * match_radius_arcsec / scale, 4.0 / scale)
    rot, off, peak, noise, n_cells = _coarse_search(
        s_xy, r_xy, center, max_off_px, max_rotation_deg, bin_px
    )
    # Chance peaks: Poisson counts over every (rotation, offset) cell searched; require a
    # false-alarm probability below 1e-4 for the whole search.
    threshold = max(float(min_matches), float(poisson.isf(1e-4 / n_cells, max(noise, 1e-3))) + 1)
    if peak < threshold:
        return failed(
            STATUS_NO_MATCH,
            f"no significant offset/rotation peak: {peak} votes, {threshold:.1f} needed "
            f"(noise {noise:.1f})",
        )

    # Iterative nearest-neighbour matching with an affine map (pixels -> guess pixels).
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    rmat = np.array([[c, s], [-s, c]])  # row-vector convention: p @ rmat rotates by +rot
    t = -center @ rmat + center + off
    aff = np.vstack([rmat, t])
    all_src = np.column_stack([x[src_idx], y[src_idx]])
    ref_pts = np.column_stack([xr[ref_idx], yr[ref_idx]])
    tree = cKDTree(ref_pts)
    radius = 1.5 * bin_px
    final_px = max(1.0, 3.0 * match_radius_arcsec / scale)
    qi = ti = np.zeros(0, dtype=np.int64)
    for _ in range(8):
        qi, ti, _d = _unique_nearest(tree, _apply_affine(aff, all_src), radius)
        if len(qi) < max(3, min_matches // 2):
            break
        aff = _fit_affine(all_src[qi], ref_pts[ti])
        if radius <= final_px:
            break
        radius = max(final_px, radius * 0.6)
    if len(qi) < min_matches:
        return failed(
            STATUS_NO_MATCH,
            f"only {len(qi)} matches after refinement ({min_matches} needed)",
            rotation_deg=rot,
            offset_arcsec=(float(off[0] * scale), float(off[1] * scale)),
        )

    # Rotation and offset of the guess from the refined affine map (about the CCD centre).
    fine_rot = math.degrees(math.atan2(aff[0, 1] - aff[1, 0], aff[0, 0] + aff[1, 1]))
    fine_off = center @ aff[:2] + aff[2] - center

    # TAN-SIP fit with sigma clipping and re-matching on the sky.
    s_i = src_idx[qi]
    r_i = ref_idx[ti]
    wcs = fallback
    used = np.ones(len(s_i), dtype=bool)
    sky_tree = None
    ra0, dec0 = float(np.median(ra_ref[r_i])), float(np.median(dec_ref[r_i]))
    ref_t = np.column_stack(_tangent_offsets(ra_ref[ref_idx], dec_ref[ref_idx], ra0, dec0))
    sky_tree = cKDTree(ref_t)
    for it in range(4):
        for _clip in range(5):
            deg = _sip_degree_for(int(used.sum()), sip_degree)
            if fitter == "astropy":
                world = SkyCoord(ra_ref[r_i[used]], dec_ref[r_i[used]], unit="deg")
                wcs = fit_wcs_from_points(
                    (x[s_i[used]], y[s_i[used]]),
                    world,
                    proj_point="center",
                    projection="TAN",
                    sip_degree=deg,
                )
            else:
                wcs = fit_tan_sip(
                    x[s_i[used]],
                    y[s_i[used]],
                    ra_ref[r_i[used]],
                    dec_ref[r_i[used]],
                    crpix=((nx + 1) / 2.0, (ny + 1) / 2.0),
                    sip_degree=deg,
                    image_shape=(ny, nx),
                )
            dra, ddec = _residuals_arcsec(wcs, x[s_i], y[s_i], ra_ref[r_i], dec_ref[r_i])
            r = np.hypot(dra, ddec)
            sigma = float(np.median(r[used])) / math.sqrt(2.0 * math.log(2.0))
            limit = max(clip_sigma * sigma, 0.02)
            new_used = r <= limit
            if new_used.sum() < min_matches:
                new_used = used
            if np.array_equal(new_used, used):
                break
            used = new_used
        if it == 3:
            break
        # Re-match all usable sources on the sky with the fitted WCS.
        pra, pdec = wcs.all_pix2world(x[src_idx], y[src_idx], 0)
        pts = np.column_stack(_tangent_offsets(pra, pdec, ra0, dec0))
        radius_as = max(match_radius_arcsec, min(3.0 * limit, 3.0 * match_radius_arcsec))
        q2, t2, _d = _unique_nearest(sky_tree, pts, radius_as)
        if len(q2) < min_matches:
            break
        s_new, r_new = src_idx[q2], ref_idx[t2]
        if np.array_equal(s_new, s_i) and np.array_equal(r_new, r_i):
            break
        s_i, r_i = s_new, r_new
        used = np.ones(len(s_i), dtype=bool)

    if nx and ny:
        wcs.pixel_shape = (nx, ny)
    dra, ddec = _residuals_arcsec(wcs, x[s_i], y[s_i], ra_ref[r_i], dec_ref[r_i])
    n_used = int(used.sum())
    if n_used < min_matches:
        return failed(STATUS_NO_MATCH, f"only {n_used} matches survive clipping")
    # Chance coincidences: usable sources x reference density x match area.
    area = float((nx + 2 * pad) * (ny + 2 * pad)) * scale**2
    chance = len(src_idx) * len(ref_idx) / area * math.pi * max(limit, match_radius_arcsec) ** 2
    if n_used < float(poisson.isf(1e-4, max(chance, 1e-3))) + 1:
        return failed(
            STATUS_NO_MATCH,
            f"{n_used} matches are not above the {chance:.1f} expected by chance",
        )
    f_used = flux[s_i[used]]
    bright = used & (flux[s_i] >= np.median(f_used))
    n_bright = int(bright.sum())
    rms_ra = float(np.sqrt(np.mean(dra[bright] ** 2)))
    rms_dec = float(np.sqrt(np.mean(ddec[bright] ** 2)))
    matches = Table()
    matches["source_index"] = s_i
    matches["reference_index"] = r_i
    matches["x"] = x[s_i]
    matches["y"] = y[s_i]
    matches["ra"] = ra_ref[r_i]
    matches["dec"] = dec_ref[r_i]
    matches["dra_arcsec"] = dra
    matches["ddec_arcsec"] = ddec
    matches["used"] = used
    return AstrometrySolution(
        wcs=wcs,
        status=STATUS_OK,
        n_matches=n_used,
        rms_arcsec=float(math.hypot(rms_ra, rms_dec)),
        rms_ra_arcsec=rms_ra,
        rms_dec_arcsec=rms_dec,
        n_bright=n_bright,
        matches=matches,
        rotation_deg=fine_rot,
        offset_arcsec=(float(fine_off[0] * scale), float(fine_off[1] * scale)),
        message=f"{n_used} matches, SIP degree {_sip_degree_for(n_used, sip_degree)}",
    )
