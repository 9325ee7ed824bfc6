"""All registry models; importing this package fills ``Base.metadata``.

One module per area: ``production`` (productions and product lineage), ``raw`` (project,
obs set, mosaic, image, archive files), ``jobs`` (job system), ``calibration`` (master frames,
detections, zero-points), ``refcat`` (reference catalogs), ``tiles`` (tilings, co-added
tiles and their catalogs).
"""

from surveydm.db.models import calibration, jobs, production, raw, refcat, tiles  # noqa: F401
from surveydm.db.models.production import Product, ProductInput, Production

__all__ = ["Product", "ProductInput", "Production"]
