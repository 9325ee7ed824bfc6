"""Pipelines: tasks that glue reduction, archive and registry.

* :mod:`~surveydm.pipelines.manifest` -- the obs set manifest written by the DAQ.
* :mod:`~surveydm.pipelines.transfer` -- observatory buffer -> archive + ``archive_file`` /
  ``obs_set`` rows (adler32-verified copy, quarantine of bad input).
* :mod:`~surveydm.pipelines.verify` -- re-verification of the archive against the registry.
* :mod:`~surveydm.pipelines.register` -- archived raw file -> ``mosaic`` + ``image`` rows.
* :mod:`~surveydm.pipelines.raw_exposure` -- headers and quick statistics of a raw exposure.
* :mod:`~surveydm.pipelines.ingest` -- transfer + register with a per-obs-set summary.
* :mod:`~surveydm.pipelines.base` -- the task shape: connections and the one recording helper.
* :mod:`~surveydm.pipelines.nightly` -- the job-system tasks: register, nightly, master bias,
  flats and fringe frames, single epoch per mosaic and per CCD, in the task shape
  (docs/architecture.md, docs/nightly.md); their science is :mod:`surveydm.reduction`.
* :mod:`~surveydm.pipelines.night` -- ``surveydm night``: transfer -> register -> nightly.
* :mod:`~surveydm.pipelines.calibrations` -- master calibrations chosen by validity range.
* :mod:`~surveydm.pipelines.refcat` -- reference catalogs: load files, query sky regions.
* :mod:`~surveydm.pipelines.productions` -- productions and product lineage.
* :mod:`~surveydm.pipelines.fitsio` -- FITS reading of raw CCDs, writing of products.
* :mod:`~surveydm.pipelines.accuracy` -- a reduced night against the simulator's truth.
* :mod:`~surveydm.pipelines.lineage` -- lineage, validity flags, staleness, ``make`` and
  ``reprocess``, data releases.
* :mod:`~surveydm.pipelines.coadd` -- sky tilings, tile co-adds and tile catalogs
  (docs/coadd.md).

Modules are imported on demand (``from surveydm.pipelines.transfer import transfer_buffer``) so
that importing one pipeline does not pull in the others.
"""

#: Modules declaring the job-system task types of the pipelines; pilots import these.
TASK_MODULES = [
    "surveydm.pipelines.nightly",
    "surveydm.pipelines.memba",
    "surveydm.pipelines.association",
    "surveydm.pipelines.coadd",
    "surveydm.pipelines.lineage.remake",
]
