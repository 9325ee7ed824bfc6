"""The deep reference catalog of forced photometry in the registry: load it from a file (the
simulator's ``deep_refcat.fits``, or any table with ``id, ra, dec, a, b, theta`` and
optionally ``mag_r, magerr_r, point_source``) and select the sources over an image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert, or_, select

from surveydm.db import Registry
from surveydm.db.models.multiepoch import DeepRefSource
from surveydm.db.models.refcat import RefCat
from surveydm.db.spatial import cone_ranges, healpix_index
from surveydm.pipelines.productions import add_product
from surveydm.pipelines.refcat import RefCatError, read_catalog_file

_BATCH = 20_000
_REQUIRED = ("id", "ra", "dec", "a", "b", "theta")


@dataclass(frozen=True)
class DeepSources:
    """Deep reference sources (arrays of length n): ``ref_id``; ``ra, dec`` deg; ``a, b``
    arcsec (half-light semi-axes); ``theta`` deg east of north; ``point_source`` bool."""

    ref_id: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    point_source: np.ndarray

    def __len__(self) -> int:
        return len(self.ref_id)


def load_deep_refcat(registry: Registry, path: Path, name: str, *, replace: bool = False) -> int:
    """Load a deep reference catalog file as catalog ``name``; returns the number of sources.

    Raises:
        RefCatError: unreadable file, a required column missing, non-finite positions or
            shapes, duplicate ids, or a catalog of that name already loaded (without
            ``replace``).
    """
    t = read_catalog_file(Path(path))
    cols = {c.lower(): c for c in t.colnames}
    missing = [c for c in _REQUIRED if c not in cols]
    if missing:
        raise RefCatError(f"{path}: deep reference catalog lacks column(s) {', '.join(missing)}")
    arr = {c: np.asarray(t[cols[c]], float) for c in _REQUIRED}
    ids = np.asarray(t[cols["id"]], np.int64)
    if not all(np.isfinite(v).all() for v in arr.values()):
        raise RefCatError(f"{path}: non-finite positions or shapes")
    if len(np.unique(ids)) != len(ids):
        raise RefCatError(f"{path}: duplicate source ids")
    mag = np.asarray(t[cols["mag_r"]], float) if "mag_r" in cols else np.full(len(t), np.nan)
    err = np.asarray(t[cols["magerr_r"]], float) if "magerr_r" in cols else np.full(len(t), np.nan)
    point = np.asarray(t[cols["point_source"]], bool) if "point_source" in cols else (arr["a"] <= 0)
    hp = healpix_index(arr["ra"], arr["dec"])
    with registry.session() as s:
        old = s.scalar(select(RefCat).where(RefCat.name == name))
        if old is not None and not replace:
            raise RefCatError(f"a reference catalog {name!r} is loaded (use --replace)")
        if old is not None:
            s.execute(delete(DeepRefSource).where(DeepRefSource.refcat_id == old.id))
            s.delete(old)
            s.flush()
        prod = add_product(
            s, "deep_refcat", data_id={"refcat": name}, production_id=None, job_id=None
        )
        cat = RefCat(name=name, description="deep reference catalog (forced photometry)",
                     source_file=str(path), epoch=float(t.meta.get("EPOCH", 2016.0)),
                     bands="r", n_sources=len(t), product_id=prod.id)  # fmt: skip
        s.add(cat)
        s.flush()
        for lo in range(0, len(t), _BATCH):
            sl = slice(lo, lo + _BATCH)
            s.execute(
                insert(DeepRefSource),
                [
                    {
                        "refcat_id": cat.id,
                        "ref_id": int(ids[i]),
                        "ra": float(arr["ra"][i]),
                        "dec": float(arr["dec"][i]),
                        "healpix": int(hp[i]),
                        "a": float(arr["a"][i]),
                        "b": float(arr["b"][i]),
                        "theta": float(arr["theta"][i]),
                        "mag_r": _opt(mag[i]),
                        "magerr_r": _opt(err[i]),
                        "point_source": bool(point[i]),
                    }  # fmt: skip
                    for i in range(len(t))[sl]
                ],
            )
    return len(t)


def _opt(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def deep_refcat_id(registry: Registry, name: str) -> tuple[int, int | None]:
    """(refcat id, product id) of deep catalog ``name``.

    Raises:
        RefCatError: no such catalog, or it holds no deep sources.
    """
    with registry.session(write=False) as s:
        cat = s.scalar(select(RefCat).where(RefCat.name == name))
        if cat is None:
            raise RefCatError(
                f"no reference catalog {name!r} (load it with 'surveydm memba load-refcat')"
            )
        if s.scalar(select(DeepRefSource.id).where(DeepRefSource.refcat_id == cat.id)) is None:
            raise RefCatError(f"reference catalog {name!r} has no shapes: not a deep catalog")
        return cat.id, cat.product_id


def deep_sources_in_cone(
    registry: Registry, refcat_id: int, ra: float, dec: float, radius: float
) -> DeepSources:
    """Deep sources of catalog ``refcat_id`` within about ``radius`` deg of (ra, dec) (HEALPix
    ranges covering the cone: callers cut exactly, e.g. by pixel bounds)."""
    ranges = cone_ranges(ra, dec, radius)
    with registry.session(write=False) as s:
        rows = s.execute(
            select(
                DeepRefSource.ref_id, DeepRefSource.ra, DeepRefSource.dec, DeepRefSource.a,
                DeepRefSource.b, DeepRefSource.theta, DeepRefSource.point_source,
            ).where(
                DeepRefSource.refcat_id == refcat_id,
                or_(*(DeepRefSource.healpix.between(lo, hi) for lo, hi in ranges)),
            )
        ).all()  # fmt: skip
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 7
    kinds = (np.int64, float, float, float, float, float, bool)
    return DeepSources(*(np.asarray(c, dtype=k) for c, k in zip(cols, kinds, strict=True)))
