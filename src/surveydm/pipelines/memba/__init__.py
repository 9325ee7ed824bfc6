"""The memba (multi-epoch multi-band) pipeline as job-system tasks (seed 000 section 6.1 item 3).

Per run (``surveydm memba``)::

    memba (prolog: one forced_phot per reduced CCD image not yet measured in the production;
           epilog: one forced_coadd per chunk of the reference sources those images touched)
      forced_phot (forced elliptical aperture photometry of the deep reference sources on one
                   image: forced_aperture rows)
      forced_coadd (database only: per source and band, the weighted mean of the unflagged
                    measurements: forced_aperture_coadd rows)

The memba pipeline makes no files: its results are the registry tables of seed 000 table .3
(:mod:`surveydm.db.models.multiepoch`). Modules: ``refcat`` (the deep reference catalog),
``forced``, ``coadd``, ``plan`` (the root job and :func:`run_memba`). Science:
:mod:`surveydm.reduction.forced_photometry`, :mod:`surveydm.reduction.flux_coadd`.
"""

from surveydm.pipelines.memba.coadd import ForcedCoadd
from surveydm.pipelines.memba.forced import ForcedPhot
from surveydm.pipelines.memba.plan import Memba, MembaSummary, run_memba

__all__ = ["ForcedCoadd", "ForcedPhot", "Memba", "MembaSummary", "run_memba"]
