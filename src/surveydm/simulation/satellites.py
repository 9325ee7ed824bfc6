"""Satellite trails: straight streaks across the focal plane of some science exposures.

A trail is a great circle through a point of the field at a position angle; the satellite
(magnitude ``mag`` in every band, a flat spectrum) crosses the field at ``speed_deg_s``, so a
pixel of the trail receives ``10**(-0.4 (mag - zp)) * pixel_scale / (3600 speed)`` electrons
per pixel of length (zp: the exposure's zero-point for 1 e-/s, with extinction and
transparency). Across the trail the light follows a Gaussian whose FWHM adds the PSF and the
satellite's defocus (a satellite at ~500-1000 km is out of focus by ~D / range, ~0.5-1.5" for a
2-4 m telescope) in quadrature. The trail crosses the whole field (the satellite never
starts or ends inside it). Formats and parameters: docs/simulate.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from surveydm.simulation.config import SimulationConfig

#: Electrons a trail must add to a pixel for the pixel to be in the truth mask.
TRUTH_THRESHOLD_E = 2.0


@dataclass(frozen=True)
class SatelliteTrail:
    """One satellite's passage in one exposure.

    Attributes:
        ra, dec: a point of the trail, deg (ICRS); position_angle_deg: direction of motion,
            east of north; mag: AB magnitude; speed_deg_s: angular speed; defocus_arcsec:
            FWHM of the defocus blur.
    """

    ra: float
    dec: float
    position_angle_deg: float
    mag: float
    speed_deg_s: float
    defocus_arcsec: float


def draw_trails(
    rng: np.random.Generator, ra: float, dec: float, field_radius_deg: float, cfg: SimulationConfig
) -> list[SatelliteTrail]:
    """The trails of one science exposure pointed at (``ra``, ``dec``): one with probability
    ``cfg.satellite_trail_probability`` (none otherwise), through a point within 0.7 field radii
    of the centre, at a uniform position angle, magnitude, speed and defocus in the
    configured ranges."""
    if rng.random() >= cfg.satellite_trail_probability:
        return []
    r = 0.7 * field_radius_deg * math.sqrt(rng.random())
    phi = rng.uniform(0, 360)
    centre = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(phi * u.deg, r * u.deg)
    return [
        SatelliteTrail(
            ra=float(centre.ra.deg),
            dec=float(centre.dec.deg),
            position_angle_deg=float(rng.uniform(0, 180)),
            mag=float(rng.uniform(*cfg.satellite_mag_range)),
            speed_deg_s=float(rng.uniform(*cfg.satellite_speed_deg_s)),
            defocus_arcsec=float(rng.uniform(*cfg.satellite_defocus_arcsec)),
        )
    ]


def trail_line_pixels(
    trail: SatelliteTrail, wcs: WCS, shape: tuple[int, int], field_radius_deg: float
) -> tuple[float, float, float, float] | None:
    """Two pixel positions ``(x1, y1, x2, y2)`` (0-based) of the trail's line on a CCD whose
    true WCS is ``wcs``, or None when the trail misses the CCD (straight over one CCD: the
    distortion bends it by much less than its width)."""
    seps = np.linspace(-1.5, 1.5, 1201) * field_radius_deg
    pa = np.where(seps >= 0, trail.position_angle_deg, trail.position_angle_deg + 180.0)
    pts = SkyCoord(trail.ra * u.deg, trail.dec * u.deg).directional_offset_by(
        pa * u.deg, np.abs(seps) * u.deg
    )
    x, y = wcs.all_world2pix(pts.ra.deg, pts.dec.deg, 0)
    ny, nx = shape
    margin = 20
    inside = np.nonzero((x > -margin) & (x < nx + margin) & (y > -margin) & (y < ny + margin))[0]
    if inside.size < 2:
        return None
    i, j = inside[0], inside[-1]
    return float(x[i]), float(y[i]), float(x[j]), float(y[j])


def render_trail(
    image: np.ndarray,
    line: tuple[float, float, float, float],
    e_per_pixel: float,
    fwhm_pix: float,
    response: np.ndarray | None = None,
) -> np.ndarray:
    """Add a trail along ``line`` (``x1, y1, x2, y2``, pixels) to ``image`` (e-) in place.

    Args:
        e_per_pixel: electrons per pixel of trail length; fwhm_pix: FWHM across the trail.
        response: (ny, nx) pixel response the light goes through (None: 1).

    Returns:
        (ny, nx) bool, True where the trail added >= :data:`TRUTH_THRESHOLD_E` electrons.
    """
    x1, y1, x2, y2 = line
    length = math.hypot(x2 - x1, y2 - y1)
    ny, nx = image.shape
    sigma = fwhm_pix / 2.3548
    ys, xs = np.mgrid[0:ny, 0:nx].astype(np.float32)
    d = ((xs - x1) * (y2 - y1) - (ys - y1) * (x2 - x1)) / np.float32(length)
    trail = np.float32(e_per_pixel / (sigma * math.sqrt(2 * math.pi))) * np.exp(
        -0.5 * (d / np.float32(sigma)) ** 2
    )
    if response is not None:
        trail *= response
    image += trail
    return trail >= TRUTH_THRESHOLD_E


def trail_e_per_pixel(trail: SatelliteTrail, zp: float, pixel_scale: float) -> float:
    """Electrons per pixel of trail length for an exposure with zero-point ``zp`` (AB mag of
    1 e-/s) and ``pixel_scale`` (arcsec/pixel)."""
    return 10 ** (-0.4 * (trail.mag - zp)) * pixel_scale / (3600.0 * trail.speed_deg_s)
