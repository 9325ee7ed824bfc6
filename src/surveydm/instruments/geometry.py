"""Focal-plane geometry: the WCS of each CCD from the instrument description and a pointing.

Conventions (see also :mod:`surveydm.instruments.model`):

* Pixel coordinates are those of the assembled, trimmed CCD, ``(ny, nx) = ccd.shape``;
  functions taking or returning arrays use 0-based numpy order ``(x, y)`` as astropy's
  ``origin=0`` does; the FITS header written by :func:`ccd_wcs` is 1-based as FITS requires.
* Focal plane: ``ccd.center_mm`` is the CCD centre relative to the optical axis; a CCD's
  pixel x axis points along focal-plane +x rotated by ``ccd.rotation_deg`` (counter-clockwise).
* Sky: with zero instrument rotation, focal-plane +y points north and +x points west (east is
  to the left, as on the sky seen from below), i.e. the standard intermediate world coordinates
  are ``xi = -x_mm * plate_scale``, ``eta = +y_mm * plate_scale``. A positive
  ``rotation_deg`` rotates the focal plane counter-clockwise with respect to the sky (east of
  north, position angle).
* The optical axis is the telescope pointing (CRVAL) and the tangent point of the projection.
* Radial distortion: the instrument's ``distortion_radial`` ``[k1, k2, ...]`` maps a true
  radius r (deg, in the tangent plane) to the focal-plane radius
  ``r_d = r * (1 + k1 r^2 + k2 r^4 + ...)``. The true WCS is TAN-SIP (Shupe et al. 2005,
  ASP Conf. Ser. 347, 491) whose polynomials are fitted to this model over each CCD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from surveydm.instruments.model import CCD, Instrument

SIP_ORDER = 4


def distort_radius(r_deg: np.ndarray, radial: list[float]) -> np.ndarray:
    """Focal-plane radius r_d (deg) of a true tangent-plane radius ``r_deg`` (deg)."""
    r = np.asarray(r_deg, dtype=float)
    factor = np.ones_like(r)
    for k, c in enumerate(radial):
        factor = factor + c * r ** (2 * k + 2)
    return r * factor


def undistort_radius(rd_deg: np.ndarray, radial: list[float]) -> np.ndarray:
    """True radius r (deg) whose distorted radius is ``rd_deg``: the inverse of
    :func:`distort_radius`, by Newton iteration (converges to 1e-14 deg in a few steps for
    distortions of a few percent)."""
    rd = np.asarray(rd_deg, dtype=float)
    r = rd.copy()
    if not radial:
        return r
    for _ in range(20):
        f = distort_radius(r, radial) - rd
        df = np.ones_like(r)
        for k, c in enumerate(radial):
            df = df + c * (2 * k + 3) * r ** (2 * k + 2)
        step = f / df
        r = r - step
        if np.all(np.abs(step) < 1e-14):
            break
    return r


@dataclass(frozen=True)
class CCDPlacement:
    """Affine map of a CCD's pixels to distorted tangent-plane coordinates (deg).

    ``(xi_d, eta_d) = matrix @ ((x, y) - center_pix) + center_deg`` with 0-based pixels.
    """

    matrix: np.ndarray  # (2, 2), deg/pixel
    center_pix: np.ndarray  # (2,) 0-based (x, y) of the CCD centre
    center_deg: np.ndarray  # (2,) distorted (xi, eta) of the CCD centre, deg

    @property
    def axis_pix(self) -> np.ndarray:
        """0-based (x, y) pixel position of the optical axis (CRPIX - 1), usually off-chip."""
        return self.center_pix - np.linalg.solve(self.matrix, self.center_deg)

    def pixel_to_distorted(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel coordinates -> distorted tangent-plane (xi_d, eta_d), deg."""
        d = np.stack([np.asarray(x, float) - self.center_pix[0], np.asarray(y, float)])
        d[1] -= self.center_pix[1]
        out = np.tensordot(self.matrix, d, axes=1)
        return out[0] + self.center_deg[0], out[1] + self.center_deg[1]


def ccd_placement(
    instrument: Instrument, ccd: CCD | int, rotation_deg: float = 0.0
) -> CCDPlacement:
    """Where CCD ``ccd`` sits in the (distorted) tangent plane for an instrument rotation.

    Raises:
        KeyError: the instrument has no such CCD.
    """
    if isinstance(ccd, int):
        ccd = instrument.ccd(ccd)
    scale_deg_per_mm = instrument.plate_scale_arcsec_per_mm / 3600.0
    pix_mm = instrument.pixel_size_um / 1000.0
    th = math.radians(ccd.rotation_deg)
    rot_ccd = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    ph = math.radians(rotation_deg)
    rot_sky = np.array([[math.cos(ph), -math.sin(ph)], [math.sin(ph), math.cos(ph)]])
    flip = np.diag([-1.0, 1.0])  # focal-plane +x is west: xi = -x
    to_deg = scale_deg_per_mm * rot_sky @ flip
    matrix = to_deg @ rot_ccd * pix_mm
    ny, nx = ccd.shape
    center_pix = np.array([(nx - 1) / 2.0, (ny - 1) / 2.0])
    center_deg = to_deg @ np.asarray(ccd.center_mm, dtype=float)
    return CCDPlacement(matrix=matrix, center_pix=center_pix, center_deg=center_deg)


def _poly_terms(u: np.ndarray, v: np.ndarray, order: int) -> tuple[np.ndarray, list[tuple]]:
    """Design matrix of SIP terms u^p v^q with 2 <= p + q <= order."""
    cols, terms = [], []
    for p in range(order + 1):
        for q in range(order + 1 - p):
            if p + q >= 2:
                cols.append(u**p * v**q)
                terms.append((p, q))
    return np.stack(cols, axis=1), terms


def _fit_sip(
    u: np.ndarray, v: np.ndarray, du: np.ndarray, dv: np.ndarray, order: int
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares SIP coefficient matrices for du(u, v), dv(u, v) (scaled for conditioning)."""
    s = max(np.abs(u).max(), np.abs(v).max(), 1.0)
    design, terms = _poly_terms(u / s, v / s, order)
    ca, *_ = np.linalg.lstsq(design, du, rcond=None)
    cb, *_ = np.linalg.lstsq(design, dv, rcond=None)
    a = np.zeros((order + 1, order + 1))
    b = np.zeros((order + 1, order + 1))
    for (p, q), x, y in zip(terms, ca, cb, strict=True):
        a[p, q] = x / s ** (p + q)
        b[p, q] = y / s ** (p + q)
    return a, b


def ccd_wcs(
    instrument: Instrument,
    ccd_num: int,
    ra_deg: float,
    dec_deg: float,
    rotation_deg: float = 0.0,
    distortion: bool = True,
) -> WCS:
    """WCS of one CCD's assembled, trimmed pixels for a telescope pointing.

    Args:
        instrument: the camera description.
        ccd_num: CCD number (``ccd.num``).
        ra_deg, dec_deg: ICRS position of the optical axis (tangent point), deg.
        rotation_deg: instrument position angle on the sky, deg (see module doc).
        distortion: True gives the true TAN-SIP WCS (the instrument's radial distortion as SIP
            polynomials of order 4, forward A/B and inverse AP/BP, fitted on a 21x21 grid over
            the CCD plus a 5 % margin; they reproduce the radial model to ~1 mas or better);
            False gives the plain TAN model a pipeline starts from.

    Returns:
        astropy WCS with ``pixel_shape = (nx, ny)``; use ``origin=0`` for numpy pixel indices.

    Raises:
        KeyError: the instrument has no CCD ``ccd_num``.
    """
    ccd = instrument.ccd(ccd_num)
    place = ccd_placement(instrument, ccd, rotation_deg)
    ny, nx = ccd.shape
    crpix0 = place.axis_pix
    hdr = fits.Header()
    hdr["NAXIS"] = 2
    hdr["NAXIS1"] = nx
    hdr["NAXIS2"] = ny
    hdr["CRPIX1"] = crpix0[0] + 1.0
    hdr["CRPIX2"] = crpix0[1] + 1.0
    hdr["CRVAL1"] = float(ra_deg) % 360.0
    hdr["CRVAL2"] = float(dec_deg)
    hdr["CD1_1"], hdr["CD1_2"] = place.matrix[0]
    hdr["CD2_1"], hdr["CD2_2"] = place.matrix[1]
    hdr["CUNIT1"] = "deg"
    hdr["CUNIT2"] = "deg"
    hdr["RADESYS"] = "ICRS"
    radial = list(instrument.distortion_radial)
    if not distortion or not any(radial):
        hdr["CTYPE1"] = "RA---TAN"
        hdr["CTYPE2"] = "DEC--TAN"
        return WCS(hdr)
    hdr["CTYPE1"] = "RA---TAN-SIP"
    hdr["CTYPE2"] = "DEC--TAN-SIP"
    # Grid over the CCD (0-based pixels) with a margin, relative to the axis pixel.
    gx, gy = np.meshgrid(
        np.linspace(-0.05 * nx, 1.05 * nx, 21), np.linspace(-0.05 * ny, 1.05 * ny, 21)
    )
    gx, gy = gx.ravel(), gy.ravel()
    u, v = gx - crpix0[0], gy - crpix0[1]
    xi_d, eta_d = place.pixel_to_distorted(gx, gy)
    rd = np.hypot(xi_d, eta_d)
    r_true = undistort_radius(rd, radial)
    ratio = np.divide(r_true, rd, out=np.ones_like(rd), where=rd > 0)
    inv = np.linalg.inv(place.matrix)
    # Forward: pixel offsets (u, v) -> corrected offsets whose CD image is the true (xi, eta).
    uv_true = inv @ np.stack([xi_d * ratio, eta_d * ratio])
    a, b = _fit_sip(u, v, uv_true[0] - u, uv_true[1] - v, SIP_ORDER)
    # Inverse: corrected offsets (U, V) -> pixel offsets.
    ap, bp = _fit_sip(uv_true[0], uv_true[1], u - uv_true[0], v - uv_true[1], SIP_ORDER)
    hdr["A_ORDER"] = SIP_ORDER
    hdr["B_ORDER"] = SIP_ORDER
    hdr["AP_ORDER"] = SIP_ORDER
    hdr["BP_ORDER"] = SIP_ORDER
    for p in range(SIP_ORDER + 1):
        for q in range(SIP_ORDER + 1 - p):
            if p + q >= 2:
                hdr[f"A_{p}_{q}"] = a[p, q]
                hdr[f"B_{p}_{q}"] = b[p, q]
                hdr[f"AP_{p}_{q}"] = ap[p, q]
                hdr[f"BP_{p}_{q}"] = bp[p, q]
    return WCS(hdr)


def true_tangent_plane(
    instrument: Instrument, ccd_num: int, x: np.ndarray, y: np.ndarray, rotation_deg: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (model, not SIP) true tangent-plane coordinates (xi, eta), deg, of 0-based CCD
    pixels: the reference the fitted SIP WCS is tested against."""
    place = ccd_placement(instrument, ccd_num, rotation_deg)
    xi_d, eta_d = place.pixel_to_distorted(x, y)
    rd = np.hypot(xi_d, eta_d)
    r_true = undistort_radius(rd, list(instrument.distortion_radial))
    ratio = np.divide(r_true, rd, out=np.ones_like(rd), where=rd > 0)
    return xi_d * ratio, eta_d * ratio


def focal_plane_footprint(
    instrument: Instrument,
    ra_deg: float,
    dec_deg: float,
    rotation_deg: float = 0.0,
    distortion: bool = True,
) -> dict[int, np.ndarray]:
    """Sky corners of every CCD for a pointing: ``{ccd_num: (4, 2) array of (ra, dec) deg}``
    in pixel order (0,0), (nx-1,0), (nx-1,ny-1), (0,ny-1)."""
    out = {}
    for ccd in instrument.ccds:
        ny, nx = ccd.shape
        w = ccd_wcs(instrument, ccd.num, ra_deg, dec_deg, rotation_deg, distortion)
        xs = np.array([0, nx - 1, nx - 1, 0], dtype=float)
        ys = np.array([0, 0, ny - 1, ny - 1], dtype=float)
        ra, dec = w.all_pix2world(xs, ys, 0)
        out[ccd.num] = np.stack([ra, dec], axis=1)
    return out


def field_radius_deg(instrument: Instrument) -> float:
    """Radius (deg) of the circle around the optical axis containing every CCD corner."""
    scale = instrument.plate_scale_arcsec_per_mm / 3600.0
    pix_mm = instrument.pixel_size_um / 1000.0
    r = 0.0
    for ccd in instrument.ccds:
        half = math.hypot(*ccd.shape) * pix_mm / 2
        r = max(r, math.hypot(*ccd.center_mm) + half)
    return r * scale
