"""A multi-night survey of one field (``surveydm simulate --nights A..B``): the same sky every
night, pointings planned so that the objects of a central area fall on every narrow-band CCD
of the simulated trays at least ``repeats`` times (PAUCam puts the 8 filters of a narrow-band
tray on its 8 inner CCDs, so an object must move across them; seed 000 section 1), and, beside
the truth, the deep reference catalog forced photometry uses (:mod:`.deep_refcat`).

The plan: one pointing per narrow-band CCD, offset from the field centre by minus that CCD's
centre on the sky, so the field centre lands in the middle of each of them in turn; every
pointing is visited ``repeats`` times in every tray, the visits dealt over the nights in order
(night k starts at pointing ``first_pointing``). Without a narrow-band tray the single
pointing is the field centre.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from surveydm.instruments import Instrument, load_instrument
from surveydm.instruments.geometry import ccd_wcs
from surveydm.simulation.config import SimulationConfig, SimulationError
from surveydm.simulation.deep_refcat import DEEP_REFCAT_FILE, write_deep_refcat
from surveydm.simulation.night import SimulatedNight, simulate_night
from surveydm.simulation.plan import default_trays, tray_is_narrow
from surveydm.simulation.truth import read_objects

#: Half-size margin (arcsec) kept between the central area and a CCD edge (pointing errors).
CENTRAL_MARGIN_ARCSEC = 45.0


@dataclass
class SimulatedSurvey:
    """What :func:`simulate_survey` wrote: one :class:`SimulatedNight` per night, the deep
    reference catalog, and the central area (``central_half_size_deg``: half widths in
    RA*cos(dec) and Dec around the field centre) whose objects every narrow band sees
    ``repeats`` times."""

    nights: list[SimulatedNight]
    deep_refcat: Path
    pointings_deg: list[tuple[float, float]]
    central_half_size_deg: tuple[float, float]
    repeats: int

    @property
    def truth_dir(self) -> Path:
        return self.nights[0].truth_dir


def parse_nights(text: str) -> list[dt.date]:
    """Nights from ``YYYY-MM-DD..YYYY-MM-DD`` (inclusive) or a comma-separated list.

    Raises:
        SimulationError: a malformed date, an empty or reversed range, or more than 366 nights.
    """
    try:
        if ".." in text:
            a, b = (dt.date.fromisoformat(x.strip()) for x in text.split("..", 1))
            if b < a:
                raise SimulationError(f"night range {text!r} ends before it starts")
            nights = [a + dt.timedelta(days=k) for k in range((b - a).days + 1)]
        else:
            nights = [dt.date.fromisoformat(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SimulationError(
            f"nights must be YYYY-MM-DD..YYYY-MM-DD or a comma-separated list, got {text!r}"
        ) from None
    if not nights or len(nights) > 366:
        raise SimulationError(f"{text!r}: give between 1 and 366 nights")
    return sorted(set(nights))


def survey_pointings(
    instrument: Instrument, trays: list[str], cfg: SimulationConfig
) -> tuple[list[tuple[float, float]], tuple[float, float]]:
    """Pointing offsets ``(dRA*cos(dec), dDec)`` deg that put the field centre at the centre of
    each CCD holding a narrow-band filter in ``trays``, and the half sizes (deg) of the central
    area that stays on those CCDs (CCD half size minus :data:`CENTRAL_MARGIN_ARCSEC`)."""
    narrow = [t for t in trays if tray_is_narrow(instrument, t)]
    ccds = sorted(
        {
            num
            for t in narrow
            for num, f in instrument.tray(t).filters.items()
            if instrument.filter(f).kind == "narrow"
        }
    )
    ra0, dec0 = cfg.field_ra_deg, cfg.field_dec_deg
    cosd = math.cos(math.radians(dec0))
    offsets: list[tuple[float, float]] = []
    half = (math.inf, math.inf)
    for num in ccds:
        ny, nx = instrument.ccd(num).shape
        w = ccd_wcs(instrument, num, ra0, dec0, 0.0, distortion=False)
        ra, dec = w.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
        dra = ((ra - ra0 + 180) % 360 - 180) * cosd
        offsets.append((round(-float(dra), 6), round(-float(dec - dec0), 6)))
        corners = w.all_pix2world([[0, 0], [nx - 1, ny - 1]], 0)
        size_ra = abs(corners[1][0] - corners[0][0]) * cosd / 2
        size_dec = abs(corners[1][1] - corners[0][1]) / 2
        half = (min(half[0], size_ra), min(half[1], size_dec))
    if not offsets:
        offsets, half = [(0.0, 0.0)], (0.0, 0.0)
    margin = CENTRAL_MARGIN_ARCSEC / 3600
    return offsets, (float(max(half[0] - margin, 0.0)), float(max(half[1] - margin, 0.0)))


def visits_per_night(n_visits: int, n_nights: int) -> list[int]:
    """Split ``n_visits`` over ``n_nights`` as evenly as possible, earlier nights first."""
    base, extra = divmod(n_visits, n_nights)
    return [base + (1 if k < extra else 0) for k in range(n_nights)]


def simulate_survey(
    instrument: Instrument | str,
    out_dir: Path,
    nights: list[dt.date],
    *,
    trays: list[str] | None = None,
    repeats: int = 2,
    seed: int = 0,
    n_bias: int = 3,
    n_flats_per_tray: int = 3,
    truth_dir: Path | None = None,
    deep_mag_limit: float = 23.0,
    config: SimulationConfig | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SimulatedSurvey:
    """Simulate a multi-night survey of one field into the buffer ``out_dir`` (one obs set per
    night, :func:`~surveydm.simulation.simulate_night`), then write the deep reference catalog
    (``deep_refcat.fits``) into the truth directory.

    Every pointing of :func:`survey_pointings` is visited ``repeats`` times in each tray; the
    visits are dealt over ``nights`` in order. ``progress(night, files_done, files_total)``.

    Raises:
        SimulationError: no nights, ``repeats`` < 1, bad trays or counts (as simulate_night).
    """
    inst = load_instrument(instrument) if isinstance(instrument, str | Path) else instrument
    if not nights:
        raise SimulationError("a survey needs at least one night")
    if repeats < 1:
        raise SimulationError(f"repeats must be >= 1, got {repeats}")
    trays = list(trays) if trays else default_trays(inst)
    for tr in trays:
        if tr not in inst.tray_names:
            raise SimulationError(f"{inst.name} has no filter tray {tr!r}")
    base = config or SimulationConfig()
    offsets, half = survey_pointings(inst, trays, base)
    base = base.model_copy(
        update={
            "pointing_offsets_deg": offsets,
            "dither_offsets_arcsec": [(0.0, 0.0)],
            "dithers_per_pointing": 1,
        }
    )
    per_night = visits_per_night(repeats * len(offsets), len(nights))
    done: list[SimulatedNight] = []
    first = 0
    for night, n_visits in zip(nights, per_night, strict=True):
        cfg = base.model_copy(update={"first_pointing": first % len(offsets)})
        first += n_visits
        label = night.isoformat()
        done.append(
            simulate_night(
                inst,
                out_dir,
                night=label,
                seed=seed,
                n_bias=n_bias,
                n_flats_per_tray=n_flats_per_tray,
                n_science=n_visits * len(trays),
                trays=trays,
                n_test=0,
                n_focus=0,
                truth_dir=truth_dir,
                config=cfg,
                progress=(lambda d, t, lb=label: progress(lb, d, t)) if progress else None,
            )
        )
    truth = done[0].truth_dir
    deep = write_deep_refcat(read_objects(truth), truth / DEEP_REFCAT_FILE, base, deep_mag_limit)
    return SimulatedSurvey(done, deep, offsets, half, repeats)
