"""the PAdES level a sign request asks for (B-B, B-T, B-LT, B-LTA)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 10:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: not a pades request, or one made before levels existed (B-B).
    op.add_column("sign_requests", sa.Column("pades_level", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sign_requests") as batch:
        batch.drop_column("pades_level")
