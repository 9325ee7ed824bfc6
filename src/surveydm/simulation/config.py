"""Simulator-only parameters (not part of the camera description): the sky, the site, the
observing plan and the amplitudes of the instrumental effects the instrument file does not give.

Every value has a default tuned so that a ``paucam-mini`` night looks like a PAUCam night and
every CCD holds >= 30 usable reference stars; pass ``SimulationConfig(...)`` to
:func:`surveydm.simulation.simulate_night` to change them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from surveydm.errors import SurveydmError


class SimulationError(SurveydmError):
    """Bad simulator input (unknown tray, bad night date, truth inside the buffer...)."""


class SimulationConfig(BaseModel):
    """Parameters of the simulated sky, site, plan and detector effects (units in the names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Field and sky -------------------------------------------------------------------------
    field_ra_deg: float = Field(150.1, description="centre of the first pointing (COSMOS)")
    field_dec_deg: float = Field(2.2)
    pointing_offsets_deg: list[tuple[float, float]] = Field(
        [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5)],
        description="(dRA*cos(dec), dDec) of the pointings from the field centre, deg",
    )
    dither_offsets_arcsec: list[tuple[float, float]] = Field(
        [(0.0, 0.0), (60.0, 45.0), (-45.0, 60.0)], description="dithers around each pointing"
    )
    dithers_per_pointing: int = Field(
        2, ge=1, description="science exposures per tray at a pointing before moving on"
    )
    first_pointing: int = Field(
        0,
        ge=0,
        description="index of the pointing the night's science starts at (a survey "
        "spreads its pointings over nights, simulation/survey.py)",
    )
    sky_seed: int = Field(
        20261120,
        description="seed of the sky realisation (objects, refcat): fixed so every night and "
        "every night seed sees the same sky",
    )
    star_density_r22_deg2: float = Field(4000.0, description="stars brighter than r=22 per deg2")
    star_count_slope: float = Field(0.2, description="d log10 N(<m) / dm of faint star counts")
    star_mag_range: tuple[float, float] = (10.0, 23.5)
    galaxy_density_r23_deg2: float = Field(13000.0, description="galaxies brighter than r=23")
    galaxy_count_slope: float = 0.33
    galaxy_mag_range: tuple[float, float] = (16.0, 23.0)
    galsim_exact_mag: float = Field(
        19.5,
        description="galaxies brighter than this (r) are drawn by GalSim's full convolution, "
        "fainter ones from GalSim's tabulated Sersic profile (speed)",
    )
    refcat_mag_limit: float = Field(21.0, description="reference catalog limit, r band (AB)")
    refcat_epoch: float = Field(2016.0, description="epoch of refcat positions (Gaia DR3)")

    # Site and conditions -------------------------------------------------------------------
    site_lat_deg: float = Field(28.7606, description="La Palma (ORM); Javalambre for T80")
    site_lon_deg: float = Field(-17.8816, description="east positive")
    seeing_range_arcsec: tuple[float, float] = (0.7, 1.3)
    psf_beta: float = Field(3.5, description="Moffat beta")
    psf_field_variation: float = Field(0.08, description="FWHM increase at the field edge")
    transparency_sigma: float = Field(0.04, description="1 - transparency ~ |N(0, sigma)|")
    pointing_error_arcsec: float = Field(30.0, description="max header pointing error")
    rotation_error_deg: float = Field(0.05, description="rms true instrument rotation")

    # Plan ---------------------------------------------------------------------------------
    exptime_narrow_s: float = Field(150.0, description="science exposure, narrow-band trays")
    exptime_broad_s: float = Field(60.0, description="science exposure, broad-band trays")
    exptime_flat_s: float = 8.0
    exptime_test_s: float = Field(60.0, description="TEST files are closed-shutter darks")
    exptime_focus_s: float = 20.0
    focus_defocus_arcsec: float = Field(
        2.0, description="FOCUS frames: defocus FWHM (quadrature) at the sequence ends"
    )
    focus_steps: int = Field(5, ge=1, description="FOCUS frames: images stacked per frame")
    focus_shift_arcsec: float = Field(20.0, description="FOCUS frames: shift between images")
    overhead_s: float = Field(35.0, description="readout + slew between exposures")
    flat_level_e: float = Field(80000.0, description="dome-flat level, e-/pixel")

    # Detector effects ---------------------------------------------------------------------
    detector_seed: int = Field(2015, description="seed of the static detector maps")
    ccd_thickness_um: float = Field(200.0, description="silicon thickness (cosmic-ray tracks)")
    bias_row_gradient_adu: float = Field(4.0, description="max bias slope along rows")
    bias_column_pattern_adu: float = Field(1.5, description="rms fixed column pattern")
    bias_glow_adu: float = Field(8.0, description="amplifier glow at the readout corner")
    bias_drift_adu: float = Field(3.0, description="rms exposure-to-exposure bias offset")
    prnu_rms: float = Field(0.01, description="pixel-to-pixel response rms")
    prnu_large_scale: float = Field(0.02, description="amplitude of smooth QE variations")
    vignetting_edge: float = Field(0.12, description="loss of illumination at the field edge")
    illumination_gradient: float = Field(0.03, description="max per-filter linear gradient")
    fringe_amplitude: float = Field(0.02, description="fringe rms / sky in fringing filters")
    hot_pixel_fraction: float = 2e-4
    hot_pixel_dark_e_s: tuple[float, float] = Field((0.5, 50.0), description="log-uniform")
    bad_columns_per_ccd: int = 2
    cosmic_ray_rate_cm2_s: float = Field(0.02, description="events per cm2 per s")
    cosmic_ray_charge_e_um: float = Field(80.0, description="e- per um of track in silicon")
    readout_time_s: float = Field(10.0, description="cosmic rays accumulate during readout")
    satellite_trail_probability: float = Field(
        0.15, ge=0, le=1, description="chance that a science exposure holds a satellite trail"
    )
    satellite_mag_range: tuple[float, float] = Field((5.0, 9.0), description="AB, every band")
    satellite_speed_deg_s: tuple[float, float] = Field((0.3, 1.0), description="across the sky")
    satellite_defocus_arcsec: tuple[float, float] = Field(
        (0.5, 1.5), description="FWHM of the defocus blur, added to the PSF in quadrature"
    )
    operator: str = "pixelsim"
    project: str = "surveydm-simulation"
