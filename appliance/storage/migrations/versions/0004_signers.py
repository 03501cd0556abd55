"""signers: status before disable, version, creator, submission and review times; indexes

Enabling a disabled signer restores the status it had (``status_before_disable``); ``version``
lets a reviewer's decision and an edit refuse to act on a record that changed meanwhile; the
phone number (as its HMAC) is unique like the ID number.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_before_disable", sa.String(length=20),
                                      nullable=True))
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False,
                                      server_default="1"))
        batch_op.add_column(sa.Column("created_by", sa.String(length=128), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_signers_kind", ["kind"], unique=False)
        batch_op.create_index("ix_signers_department", ["department"], unique=False)
        batch_op.create_index("uq_signers_phone_hmac", ["phone_hmac"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("signers", schema=None) as batch_op:
        batch_op.drop_index("uq_signers_phone_hmac")
        batch_op.drop_index("ix_signers_department")
        batch_op.drop_index("ix_signers_kind")
        batch_op.drop_column("reviewed_at")
        batch_op.drop_column("submitted_at")
        batch_op.drop_column("created_by")
        batch_op.drop_column("version")
        batch_op.drop_column("status_before_disable")
