"""The raw-night simulator (PAUdm's *pixelsim*, seed 000 section 6): raw multi-extension FITS
mosaics with the full instrumental signature, an obs-set manifest, and the truth (objects,
per-exposure conditions and WCS, a Gaia-like reference catalog) beside the buffer.

>>> from surveydm.simulation import simulate_night
>>> night = simulate_night("paucam-mini", Path("buffer"), n_science=2)  # doctest: +SKIP
>>> night.obs_set, len(night.files), night.refcat
"""

from surveydm.simulation.config import SimulationConfig, SimulationError
from surveydm.simulation.night import SimulatedFile, SimulatedNight, simulate_night

__all__ = [
    "SimulatedFile",
    "SimulatedNight",
    "SimulationConfig",
    "SimulationError",
    "simulate_night",
]
