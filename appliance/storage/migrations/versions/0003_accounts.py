"""accounts: the last TOTP time step each console account used

A TOTP code is refused when its time step is not newer than the last one accepted for the
account (RFC 6238 section 5.2), so an observed code cannot be replayed within its window.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("admins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("admins", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
