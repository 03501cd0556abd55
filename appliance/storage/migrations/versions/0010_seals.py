"""seal management: seals, their images, scopes and usage

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 09:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "seals",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=128), nullable=True),
        sa.Column("image", sa.LargeBinary(), nullable=True),
        sa.Column("image_sm3", sa.String(length=64), nullable=True),
        sa.Column("certificate_id", BIG_ID, nullable=True),
        sa.Column("key_id", sa.String(length=36), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name=op.f("fk_seals_certificate_id_certificates")),
        sa.ForeignKeyConstraint(["key_id"], ["wrapped_keys.id"],
                                name=op.f("fk_seals_key_id_wrapped_keys")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seals")),
        sa.UniqueConstraint("name", name=op.f("uq_seals_name")),
    )
    op.create_index("ix_seals_certificate", "seals", ["certificate_id"], unique=False)
    op.create_table(
        "seal_scopes",
        sa.Column("seal_id", BIG_ID, nullable=False),
        sa.Column("application_id", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(["seal_id"], ["seals.id"],
                                name=op.f("fk_seal_scopes_seal_id_seals")),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"],
                                name=op.f("fk_seal_scopes_application_id_applications")),
        sa.PrimaryKeyConstraint("seal_id", "application_id", name=op.f("pk_seal_scopes")),
    )
    op.create_table(
        "seal_usage",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("seal_id", BIG_ID, nullable=False),
        sa.Column("application_id", BIG_ID, nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.Column("document_digest", sa.String(length=128), nullable=False),
        sa.Column("digest_algorithm", sa.String(length=16), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("used_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["seal_id"], ["seals.id"],
                                name=op.f("fk_seal_usage_seal_id_seals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seal_usage")),
    )
    op.create_index("ix_seal_usage_seal", "seal_usage", ["seal_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_seal_usage_seal", table_name="seal_usage")
    op.drop_table("seal_usage")
    op.drop_table("seal_scopes")
    op.drop_index("ix_seals_certificate", table_name="seals")
    op.drop_table("seals")
