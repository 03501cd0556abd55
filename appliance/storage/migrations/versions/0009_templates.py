"""PDF form templates and their versions

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 09:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "form_templates",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("retired_at", TIMESTAMP, nullable=True),
        sa.Column("retired_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_form_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_form_templates_name")),
    )
    op.create_table(
        "form_template_versions",
        sa.Column("template_id", BIG_ID, nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.LargeBinary(), nullable=False),
        sa.Column("sidecar", sa.Text(), nullable=True),
        sa.Column("sm3", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"], ["form_templates.id"],
            name=op.f("fk_form_template_versions_template_id_form_templates"),
        ),
        sa.PrimaryKeyConstraint("template_id", "version", name=op.f("pk_form_template_versions")),
    )


def downgrade() -> None:
    op.drop_table("form_template_versions")
    op.drop_table("form_templates")
