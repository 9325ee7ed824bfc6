"""access control by release; the stale listing's indexes

* ``portal_user``, ``api_token``, ``web_session``, ``release_access``: users with a role
  (reader, curator, admin), their API tokens and portal sessions (SHA-256 digests of the
  secrets only) and the proprietary releases granted to each.
* ``data_release.visibility``: ``public`` or ``proprietary``. Releases made before this
  migration were readable by anyone (the portal had no access control) and stay ``public``;
  new ones are ``proprietary`` until published.
* ``ix_product_obs_set``: an expression index on the data ID's ``obs_set``
  (``json_extract(data_id, '$.obs_set')`` on SQLite, ``(data_id ->> 'obs_set')`` on
  PostgreSQL, as :class:`surveydm.db.lineage.obs_set_key` writes it): a night's products are
  an index lookup instead of a scan of every product (the stale listing of a night).

Revision ID: 0010_lineage
Revises: 0009
Create Date: 2026-12-07 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_lineage"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_WHEN = sa.DateTime(timezone=True)


_OBS_SET_KEY = {
    "sqlite": "json_extract(data_id, '$.obs_set')",
    "postgresql": "(data_id ->> 'obs_set')",
}


def upgrade() -> None:
    key = _OBS_SET_KEY[op.get_bind().dialect.name]
    op.execute(f"CREATE INDEX ix_product_obs_set ON product ({key})")
    op.add_column(
        "data_release",
        sa.Column("visibility", sa.String(16), nullable=False, server_default="proprietary",
                  comment="public (anyone) or proprietary (the users granted, curators, "
                  "admins)"),
    )  # fmt: skip
    op.execute("UPDATE data_release SET visibility = 'public'")
    op.create_table(
        "portal_user",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, comment="login name"),
        sa.Column("role", sa.String(16), nullable=False, comment="reader, curator or admin"),
        sa.Column("active", sa.Boolean(), nullable=False, comment="false: cannot log in"),
        sa.Column("created", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_portal_user"),
        sa.UniqueConstraint("name", name="uq_portal_user_name"),
    )
    op.create_table(
        "api_token",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, comment="sha256 of the token"),
        sa.Column("label", sa.String(128), nullable=False, comment="what it is for"),
        sa.Column("created", _WHEN, nullable=False),
        sa.Column("last_used", _WHEN, nullable=True),
        sa.Column("expires", _WHEN, nullable=True, comment="null: never"),
        sa.Column("revoked", _WHEN, nullable=True, comment="null: in use"),
        sa.PrimaryKeyConstraint("id", name="pk_api_token"),
        sa.UniqueConstraint("digest", name="uq_api_token_digest"),
        sa.ForeignKeyConstraint(["user_id"], ["portal_user.id"],
                                name="fk_api_token_user_id_portal_user"),
    )  # fmt: skip
    op.create_index("ix_api_token_user_id", "api_token", ["user_id"])
    op.create_table(
        "web_session",
        sa.Column("digest", sa.String(64), nullable=False, comment="sha256 of cookie"),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("created", _WHEN, nullable=False),
        sa.Column("expires", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_web_session"),
        sa.ForeignKeyConstraint(["user_id"], ["portal_user.id"],
                                name="fk_web_session_user_id_portal_user"),
    )  # fmt: skip
    op.create_index("ix_web_session_user_id", "web_session", ["user_id"])
    op.create_table(
        "release_access",
        sa.Column("release_id", _ID, nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("granted_by", sa.String(128), nullable=False, comment="who granted it"),
        sa.Column("created", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("release_id", "user_id", name="pk_release_access"),
        sa.ForeignKeyConstraint(["release_id"], ["data_release.id"],
                                name="fk_release_access_release_id_data_release"),
        sa.ForeignKeyConstraint(["user_id"], ["portal_user.id"],
                                name="fk_release_access_user_id_portal_user"),
    )  # fmt: skip
    op.create_index("ix_release_access_user_id", "release_access", ["user_id"])


def downgrade() -> None:
    op.execute("DROP INDEX ix_product_obs_set")
    for table in ("release_access", "web_session", "api_token", "portal_user"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE data_release DROP COLUMN visibility")
    else:
        op.drop_column("data_release", "visibility")
