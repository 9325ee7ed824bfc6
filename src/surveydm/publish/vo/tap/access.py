"""Which rows of the published tables a TAP caller may read (issue 16: access control by data
release, on every path).

A caller who may not read some data release gets, for each published table that holds release
data, a SQL condition its rows must meet; the ADQL translator reads such a table through
``(SELECT * FROM table WHERE condition)`` (a derived table both engines flatten into the
query, so indexes and the HEALPix prefilter still apply). Release membership follows the
registry's keys: a reduced exposure (``mosaic``) belongs to its ``production_id``, a CCD image to
its exposure, a detection to its image, a ``production`` row to itself; a production is in a
release through ``release_production``. What a caller reads is
:func:`surveydm.db.access.visible_releases`:

* curators and admins: everything, no condition;
* otherwise, with the unreleased data readable (an *open* installation): every row except those
  of productions that are in some release and in none the caller may read;
* otherwise (a *closed* installation): only the rows of productions in a release the caller
  may read; the observation sets of those exposures; no reference catalog (loaded catalogs are
  unreleased data).

The conditions hold integer ids only (no user text); the routes work them out per user (one
query on ``release_production``) and reuse them for ``routes.FILTERS_TTL_S``; with nothing
hidden there are none, and queries are unchanged.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.db.access import VisibleReleases
from surveydm.db.models.release import ReleaseProduction

#: SQL condition of a table's rows: ``{ids}`` is replaced by the production id list.
_OPEN_HIDE = {
    "production": "id NOT IN ({ids})",
    "mosaic": "production_id IS NULL OR production_id NOT IN ({ids})",
    "image": "mosaic_id NOT IN (SELECT id FROM mosaic WHERE production_id IN ({ids}))",
    "detection": (
        "image_id IS NULL OR image_id NOT IN (SELECT image.id FROM image "
        "JOIN mosaic ON mosaic.id = image.mosaic_id WHERE mosaic.production_id IN ({ids}))"
    ),
}
_CLOSED_KEEP = {
    "production": "id IN ({ids})",
    "mosaic": "production_id IN ({ids})",
    "image": "mosaic_id IN (SELECT id FROM mosaic WHERE production_id IN ({ids}))",
    "detection": (
        "image_id IN (SELECT image.id FROM image JOIN mosaic ON mosaic.id = image.mosaic_id "
        "WHERE mosaic.production_id IN ({ids}))"
    ),
    "obs_set": "id IN (SELECT obs_set_id FROM mosaic WHERE production_id IN ({ids}))",
    "refcat": "1 = 0",
    "refcat_source": "1 = 0",
    "refcat_magnitude": "1 = 0",
}


def row_filters(session: Session, vis: VisibleReleases) -> dict[str, str]:
    """SQL conditions by published table name (SQL relation name) restricting its rows to
    what ``vis`` may read (see the module docstring); empty when nothing is hidden.

    Returns:
        ``{"mosaic": "production_id IS NULL OR production_id NOT IN (3)", ...}``: conditions
        on the bare table's columns, integers only.
    """
    if vis.everything:
        return {}
    pairs = session.execute(
        select(ReleaseProduction.production_id, ReleaseProduction.release_id)
    ).all()
    readable = {p for p, r in pairs if r in vis.release_ids}
    if vis.unreleased:
        hidden = {p for p, _ in pairs} - readable
        if not hidden:
            return {}
        return _fill(_OPEN_HIDE, hidden)
    return _fill(_CLOSED_KEEP, readable)


def _fill(templates: dict[str, str], ids: set[int]) -> dict[str, str]:
    # NULL never matches IN (...), and an empty IN list is not SQL: -1 is no row id
    listed = ", ".join(str(int(i)) for i in sorted(ids)) or "-1"
    return {table: cond.format(ids=listed) for table, cond in templates.items()}
