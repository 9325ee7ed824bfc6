"""Productions (code version + configuration + release) and product lineage records."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from surveydm import __version__
from surveydm.config import load_settings
from surveydm.db import Registry
from surveydm.db.models.production import Product, ProductInput, Production
from surveydm.db.models.release import DataRelease, ReleaseProduction
from surveydm.errors import SurveydmError
from surveydm.orchestration import JobContext
from surveydm.orchestration.qc import QCResult


class ProductionExistsError(SurveydmError):
    """A new production was asked for under a release its pipeline already uses."""


class ProductionFrozenError(SurveydmError):
    """A production frozen in a data release was asked to take new products."""


def frozen_in(session: Session, production_id: int | None) -> str | None:
    """Name of a data release that froze ``production_id``, or None."""
    if production_id is None:
        return None
    return session.scalar(
        select(DataRelease.name)
        .join(ReleaseProduction, ReleaseProduction.release_id == DataRelease.id)
        .where(ReleaseProduction.production_id == production_id)
        .limit(1)
    )


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def get_or_create_production(
    registry: Registry, pipeline: str, release: str, config: dict[str, Any]
) -> int:
    """Id of the production for this pipeline, release, software version and configuration.

    The same inputs always give the same production, so re-running a night adds to it rather
    than duplicating it; any change of code version or configuration opens a new production.
    """
    key = {
        "pipeline": pipeline,
        "release": release,
        "software_version": __version__,
        "config_hash": config_hash(config),
    }
    for _ in range(2):
        with registry.session() as s:
            found = s.scalar(select(Production.id).filter_by(**key))
            if found is not None:
                release_name = frozen_in(s, found)
                if release_name is not None:
                    raise ProductionFrozenError(
                        f"production {found} ({pipeline}, release {release}) is frozen in data "
                        f"release {release_name!r}: reduce into another release "
                        "(SURVEYDM_RELEASE)"
                    )
                return found
            try:
                prod = Production(config=config, **key)
                s.add(prod)
                s.flush()
                return prod.id
            except IntegrityError:
                s.rollback()  # created concurrently: read it on the next pass
    raise RuntimeError("could not create production")  # pragma: no cover


def production_release(session: Session, production_id: int | None, default: str) -> str:
    """The release a production files its products under (``red/<release>/``); ``default``
    (the configured release) for a job outside any production."""
    if production_id is None:
        return default
    prod = session.get(Production, production_id)
    return default if prod is None else prod.release


def job_release(ctx: JobContext) -> str:
    """The release a job files its products under: its production's, else the configured
    one (``SURVEYDM_RELEASE``), so a reprocessing production writes to its own folder."""
    with ctx.registry.session(write=False) as s:
        return production_release(s, ctx.production_id, load_settings().release)


def open_reprocessing(registry: Registry, source_id: int, release: str, comments: str = "") -> int:
    """A new production that remakes products of production ``source_id``: same pipeline,
    code version and configuration, a new ``release`` (so its files go to a new folder and
    nothing is overwritten), consuming the source production's other products
    (``input_production_id``; seed 000 section 7.4).

    Raises:
        ProductionExistsError: a production of that pipeline already uses ``release``.
    """
    with registry.session() as s:
        src = s.get(Production, source_id)
        if src is None:
            raise ProductionExistsError(f"no production {source_id}")
        taken = s.scalar(
            select(Production.id).where(
                Production.pipeline == src.pipeline, Production.release == release
            )
        )
        if taken is not None:
            raise ProductionExistsError(
                f"production {taken} of {src.pipeline} already uses release {release!r}: "
                "choose another name (--release)"
            )
        prod = Production(
            pipeline=src.pipeline,
            release=release,
            software_version=__version__,
            config=dict(src.config),
            config_hash=config_hash(dict(src.config)),
            input_production_id=src.id,
            comments=comments or f"reprocessing of production {src.id}",
        )
        s.add(prod)
        s.flush()
        return prod.id


def raw_product(session: Session, file_id: int, data_id: dict[str, Any]) -> Product:
    """The ``raw`` product of an archived raw file, created on first use."""
    prod = session.scalar(
        select(Product).where(Product.file_id == file_id, Product.product_type == "raw")
    )
    if prod is None:
        prod = Product(product_type="raw", file_id=file_id, data_id=data_id)
        session.add(prod)
        session.flush()
    return prod


def add_product(
    session: Session,
    product_type: str,
    *,
    data_id: dict[str, Any],
    production_id: int | None,
    job_id: int | None,
    file_id: int | None = None,
    inputs: dict[str, list[int]] | None = None,
    quality: QCResult = QCResult.PASS,
) -> Product:
    """Insert a product with its lineage (``inputs``: role -> input product ids) and its
    quality (the worst QC result of the job that made it).

    Raises:
        ProductionFrozenError: ``production_id`` is frozen in a data release.
    """
    release_name = frozen_in(session, production_id)
    if release_name is not None:
        raise ProductionFrozenError(
            f"production {production_id} is frozen in data release {release_name!r}"
        )
    prod = Product(
        product_type=product_type,
        data_id=data_id,
        production_id=production_id,
        job_id=job_id,
        file_id=file_id,
        quality=quality,
    )
    session.add(prod)
    session.flush()
    for role, ids in (inputs or {}).items():
        for input_id in dict.fromkeys(ids):
            session.add(ProductInput(product_id=prod.id, input_id=input_id, role=role))
    return prod
