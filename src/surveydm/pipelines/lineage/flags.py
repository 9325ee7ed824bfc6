"""Human validity flags on products (seed 003: the user's ``is_valid`` = 0 bad, 1 ok,
2 qualified, kept apart from the system's QC ``quality``): set one with who, when and why,
undo the last change, read the history. Raw exposures, calibration frames, reduced images and
catalog products are all products, so one flag serves them all.

A flag on a product of a frozen data release also records an erratum of that release
(:mod:`surveydm.pipelines.lineage.releases`); the release itself is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.db.models.production import Product
from surveydm.db.models.release import DataRelease, Erratum, ReleaseProduction
from surveydm.db.models.validity import ValidityFlag
from surveydm.errors import SurveydmError


class Validity(StrEnum):
    """The human validity flag (seed 003 ``is_valid``)."""

    BAD = "bad"
    OK = "ok"
    QUALIFIED = "qualified"


class FlagError(SurveydmError):
    """A flag that cannot be set or undone (says why)."""


@dataclass(frozen=True)
class FlagChange:
    """One recorded change: its ``validity_flag`` id, the product, old and new flag, who, when,
    why, the change it undoes (for an undo) and the errata it recorded (release names)."""

    id: int
    product_id: int
    previous: str
    validity: str
    author: str
    reason: str
    time: datetime
    undoes_id: int | None
    errata: tuple[str, ...] = ()


def set_validity(
    session: Session, product_id: int, validity: Validity, *, author: str, reason: str
) -> FlagChange:
    """Set the human flag of a product and record the change (and an erratum for each frozen
    release holding its production).

    Raises:
        FlagError: no such product, an empty reason for ``bad``, or no change.
    """
    product = session.get(Product, product_id)
    if product is None:
        raise FlagError(f"no product {product_id}")
    validity = Validity(validity)
    if validity == Validity.BAD and not reason.strip():
        raise FlagError("say why the product is bad (--reason)")
    if product.validity == validity:
        raise FlagError(f"product {product_id} is already {validity}")
    return _record(session, product, validity, author, reason, None)


def undo_last(session: Session, product_id: int, *, author: str) -> FlagChange:
    """Undo the last change of a product's flag that was not itself undone: the product gets
    back the flag that change replaced, recorded as a new change naming the one it undoes.

    Raises:
        FlagError: no such product, or no change left to undo.
    """
    product = session.get(Product, product_id)
    if product is None:
        raise FlagError(f"no product {product_id}")
    undone = select(ValidityFlag.undoes_id).where(ValidityFlag.undoes_id.is_not(None))
    last = session.scalar(
        select(ValidityFlag)
        .where(
            ValidityFlag.product_id == product_id,
            ValidityFlag.undoes_id.is_(None),
            ValidityFlag.id.not_in(undone),
        )
        .order_by(ValidityFlag.id.desc())
        .limit(1)
    )
    if last is None:
        raise FlagError(f"product {product_id} has no flag change to undo")
    return _record(session, product, Validity(last.previous), author, f"undo #{last.id}", last.id)


def history(session: Session, product_id: int) -> list[FlagChange]:
    """Every change of a product's flag, oldest first."""
    rows = session.scalars(
        select(ValidityFlag).where(ValidityFlag.product_id == product_id).order_by(ValidityFlag.id)
    )
    return [_change(r) for r in rows]


def _record(
    session: Session,
    product: Product,
    validity: Validity,
    author: str,
    reason: str,
    undoes: int | None,
) -> FlagChange:
    row = ValidityFlag(
        product_id=product.id,
        validity=validity,
        previous=product.validity,
        reason=reason,
        author=author,
        undoes_id=undoes,
    )
    product.validity = validity
    product.valid = validity != Validity.BAD
    session.add(row)
    session.flush()
    errata = _errata(session, product, row)
    return _change(row, errata)


def _errata(session: Session, product: Product, flag: ValidityFlag) -> tuple[str, ...]:
    """An erratum in every frozen release holding the product's production."""
    if product.production_id is None:
        return ()
    releases = session.scalars(
        select(DataRelease)
        .join(ReleaseProduction, ReleaseProduction.release_id == DataRelease.id)
        .where(ReleaseProduction.production_id == product.production_id)
    ).all()
    for rel in releases:
        session.add(
            Erratum(
                release_id=rel.id,
                product_id=product.id,
                flag_id=flag.id,
                text=f"{product.product_type} {product.uuid} {flag.previous} -> "
                f"{flag.validity} by {flag.author}: {flag.reason}",
            )
        )
    return tuple(r.name for r in releases)


def _change(row: ValidityFlag, errata: tuple[str, ...] = ()) -> FlagChange:
    return FlagChange(
        row.id, row.product_id, row.previous, row.validity, row.author, row.reason, row.time,
        row.undoes_id, errata,
    )  # fmt: skip
