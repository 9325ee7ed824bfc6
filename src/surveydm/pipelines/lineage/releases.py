"""Data releases: a named, frozen set of productions with generated release notes (contents,
counts, QC summary, code versions and configurations; seed 000 section 7.4 publishes the
production table with the release name as the common filter; seed 002 J-PLUS data releases).

Once a production is in a release it takes no new product
(:func:`surveydm.pipelines.productions.add_product` refuses), and a validity flag set on one of
its products records an erratum of the release (:mod:`surveydm.pipelines.lineage.flags`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from surveydm.db.models.production import Product, Production
from surveydm.db.models.release import DataRelease, Erratum, ReleaseProduction
from surveydm.errors import SurveydmError


class ReleaseError(SurveydmError):
    """A release that cannot be made or found (says why)."""


@dataclass(frozen=True)
class ReleaseContent:
    """One production of a release: its identity and what it holds.

    Attributes:
        counts: products by type; quality: products by QC result (pass/warn/fail);
        bad: products flagged bad by a human.
    """

    production_id: int
    pipeline: str
    release: str
    software_version: str
    config_hash: str
    counts: dict[str, int]
    quality: dict[str, int]
    bad: int


@dataclass(frozen=True)
class ReleaseInfo:
    """A frozen release: name, author, time, notes, contents, errata (texts) and visibility
    (``public``, or ``proprietary``: the users granted it, curators and admins)."""

    id: int
    name: str
    author: str
    created: datetime
    notes: str
    contents: list[ReleaseContent]
    errata: list[str]
    visibility: str = "proprietary"


def create_release(
    session: Session,
    name: str,
    production_ids: Sequence[int],
    *,
    author: str,
    visibility: str = "proprietary",
) -> ReleaseInfo:
    """Freeze ``production_ids`` as the release ``name`` with generated notes, readable by
    anyone (``visibility="public"``) or only by the users granted it, curators and admins
    (``proprietary``, the default; :func:`surveydm.db.access.set_visibility` publishes it).

    Raises:
        ReleaseError: no production given, an unknown production, the name is taken, or an
            unknown visibility.
    """
    if visibility not in ("public", "proprietary"):
        raise ReleaseError(f"visibility {visibility!r}: public or proprietary")
    if not production_ids:
        raise ReleaseError("a release needs at least one production (--production)")
    if session.scalar(select(DataRelease.id).where(DataRelease.name == name)) is not None:
        raise ReleaseError(f"release {name!r} exists already: releases are immutable")
    contents = [_content(session, pid) for pid in dict.fromkeys(production_ids)]
    rel = DataRelease(
        name=name, author=author, notes=release_notes(name, contents), visibility=visibility
    )
    session.add(rel)
    try:
        session.flush()
    except IntegrityError:
        raise ReleaseError(f"release {name!r} exists already") from None
    for c in contents:
        session.add(ReleaseProduction(release_id=rel.id, production_id=c.production_id))
    session.flush()
    return get_release(session, name)


def get_release(session: Session, name: str) -> ReleaseInfo:
    """The release ``name`` with its contents and errata.

    Raises:
        ReleaseError: no such release.
    """
    rel = session.scalar(select(DataRelease).where(DataRelease.name == name))
    if rel is None:
        raise ReleaseError(f"no release {name!r}")
    pids = session.scalars(
        select(ReleaseProduction.production_id)
        .where(ReleaseProduction.release_id == rel.id)
        .order_by(ReleaseProduction.production_id)
    )
    errata = session.scalars(
        select(Erratum.text).where(Erratum.release_id == rel.id).order_by(Erratum.id)
    )
    return ReleaseInfo(
        rel.id, rel.name, rel.author, rel.created, rel.notes,
        [_content(session, p) for p in pids], list(errata), rel.visibility,
    )  # fmt: skip


def list_releases(session: Session) -> list[ReleaseInfo]:
    """Every release, oldest first."""
    names = session.scalars(select(DataRelease.name).order_by(DataRelease.id))
    return [get_release(session, n) for n in names]


def release_notes(name: str, contents: Sequence[ReleaseContent]) -> str:
    """Release notes in Markdown: one section per production with its code version,
    configuration hash, product counts and QC summary."""
    lines = [f"# Data release {name}", ""]
    total = sum(sum(c.counts.values()) for c in contents)
    lines += [f"{len(contents)} production(s), {total} product(s).", ""]
    for c in contents:
        lines += [
            f"## Production {c.production_id}: {c.pipeline} ({c.release})",
            "",
            f"- code version: {c.software_version}",
            f"- configuration: sha256 {c.config_hash}",
            "- products: " + ", ".join(f"{k} {v}" for k, v in sorted(c.counts.items())),
            "- QC: " + ", ".join(f"{k} {v}" for k, v in sorted(c.quality.items())),
            f"- flagged bad: {c.bad}",
            "",
        ]
    return "\n".join(lines)


def _content(session: Session, production_id: int) -> ReleaseContent:
    prod = session.get(Production, production_id)
    if prod is None:
        raise ReleaseError(f"no production {production_id}")
    in_prod = Product.production_id == production_id
    counts = dict(
        session.execute(
            select(Product.product_type, func.count()).where(in_prod).group_by(Product.product_type)
        ).all()
    )
    quality = dict(
        session.execute(
            select(Product.quality, func.count()).where(in_prod).group_by(Product.quality)
        ).all()
    )
    bad = session.scalar(select(func.count()).where(in_prod, Product.validity == "bad")) or 0
    return ReleaseContent(
        prod.id, prod.pipeline, prod.release, prod.software_version, prod.config_hash,
        counts, {str(k): v for k, v in quality.items()}, bad,
    )  # fmt: skip
