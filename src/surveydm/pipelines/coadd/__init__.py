"""The co-add pipeline: sky tilings, tile co-adds with pixel rejection, single- and dual-mode
tile catalogs (seed 002 tile coadding; seed 004 sections 3.5-3.7), as job-system tasks in the
task shape of the nightly pipeline (docs/coadd.md).

Modules: ``tiles`` (tilings in the registry), ``inputs`` (selecting and reading the reduced
images of a tile), ``files`` (the FITS products), ``catalogs`` (catalog tables and rows),
``qc`` (named limits and checks), ``tasks`` (``coadd``, ``coadd_tile``, ``tile_catalog``) and
``run`` (``surveydm coadd``: production, submission, local pilots). The science is
:mod:`surveydm.reduction.coadd`.
"""

from surveydm.pipelines.coadd.tasks import Coadd, CoaddTile, TileCatalog

__all__ = ["Coadd", "CoaddTile", "TileCatalog"]
