"""The registry: SQLAlchemy models, engines and sessions, migrations and spatial helpers."""

from surveydm.db.base import Base
from surveydm.db.session import Registry, make_engine

__all__ = ["Base", "Registry", "make_engine"]
