"""What a user names when asking for lineage, a flag or a remake: a product by uuid, id or
archive path, or a reduced image, a raw exposure or a detection by its registry id."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveydm.db.models.calibration import Detection
from surveydm.db.models.production import Product
from surveydm.db.models.raw import ArchiveFile, Image, Mosaic
from surveydm.errors import SurveydmError
from surveydm.pipelines.productions import raw_product

#: The forms of ID accepted, shown in error messages.
ID_FORMS = (
    "a product uuid, product:N, an archive path (raw/... or red/...), image:N, mosaic:N "
    "(a raw exposure) or detection:N"
)


class UnknownTargetError(SurveydmError):
    """An ID that names nothing in the registry (the message says which forms are accepted)."""


@dataclass(frozen=True)
class DetectionRef:
    """A detection a lineage starts from: its id, position (deg) and band."""

    id: int
    image_id: int
    ra: float
    dec: float
    band: str


@dataclass(frozen=True)
class Target:
    """A resolved ID: the product it stands for, and the detection when one was named."""

    product_id: int
    detection: DetectionRef | None = None


def resolve(session: Session, ident: str) -> Target:
    """The product (and detection) named by ``ident`` (see :data:`ID_FORMS`). A raw exposure
    named by ``mosaic:N`` or its archive path gets its ``raw`` product on first use, which is
    why this needs a writable session for raw files.

    Raises:
        UnknownTargetError: nothing matches, or the image/detection has no product.
    """
    ident = ident.strip()
    kind, _, num = ident.partition(":")
    if num.isdigit() and kind in _BY_KIND:
        return _BY_KIND[kind](session, int(num), ident)
    try:
        u = uuid.UUID(ident)
    except ValueError:
        return _by_path(session, ident)
    pid = session.scalar(select(Product.id).where(Product.uuid == u))
    if pid is None:
        raise UnknownTargetError(f"no product with uuid {ident}")
    return Target(pid)


def _by_product(session: Session, num: int, ident: str) -> Target:
    if session.get(Product, num) is None:
        raise UnknownTargetError(f"no product {ident}")
    return Target(num)


def _by_image(session: Session, num: int, ident: str) -> Target:
    image = session.get(Image, num)
    if image is None or image.product_id is None:
        raise UnknownTargetError(f"no reduced image {ident} with a product")
    return Target(image.product_id)


def _by_mosaic(session: Session, num: int, ident: str) -> Target:
    mosaic = session.get(Mosaic, num)
    if mosaic is None or mosaic.archive_file_id is None:
        raise UnknownTargetError(f"no archived raw exposure {ident}")
    return Target(raw_product(session, mosaic.archive_file_id, {"mosaic_id": mosaic.id}).id)


def _by_detection(session: Session, num: int, ident: str) -> Target:
    det = session.get(Detection, num)
    if det is None:
        raise UnknownTargetError(f"no detection {ident}")
    image = _by_image(session, det.image_id, f"image:{det.image_id}")
    return Target(image.product_id, DetectionRef(det.id, det.image_id, det.ra, det.dec, det.band))


def _by_path(session: Session, path: str) -> Target:
    row = session.scalar(select(ArchiveFile).where(ArchiveFile.path == path.strip("/")))
    if row is None:
        raise UnknownTargetError(f"{path!r} names nothing: give {ID_FORMS}")
    pid = session.scalar(select(Product.id).where(Product.file_id == row.id).limit(1))
    if pid is not None:
        return Target(pid)
    mosaic = session.scalar(select(Mosaic).where(Mosaic.archive_file_id == row.id))
    if mosaic is None:
        raise UnknownTargetError(f"archive file {path!r} is no product and no raw exposure")
    return _by_mosaic(session, mosaic.id, path)


_BY_KIND = {
    "product": _by_product,
    "image": _by_image,
    "mosaic": _by_mosaic,
    "detection": _by_detection,
}
