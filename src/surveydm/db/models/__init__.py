"""All registry models; importing this package fills ``Base.metadata``.

One module per area: ``production`` (productions and product lineage), ``raw`` (project,
obs set, mosaic, image, archive files), ``jobs`` (job system), ``calibration`` (master frames,
detections, zero-points), ``refcat`` (reference catalogs), ``multiepoch`` (memba forced
photometry, detection-to-object association), ``tiles`` (tilings, co-added tiles and their
catalogs), ``validity`` (human validity flags), ``release`` (data releases), ``access``
(users, API tokens, portal sessions, release grants).
"""

from surveydm.db.models import (  # noqa: F401
    access,
    calibration,
    jobs,
    multiepoch,
    production,
    raw,
    refcat,
    release,
    tiles,
    validity,
)
from surveydm.db.models.production import Product, ProductInput, Production

__all__ = ["Product", "ProductInput", "Production"]
