"""evidence reports and archived evidence

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 09:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "evidence_reports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("sign_request_id", sa.String(length=36), nullable=True),
        sa.Column("document_sm3", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("facts", sa.Text(), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("timestamp_expires_at", TIMESTAMP, nullable=True),
        sa.Column("retimestamped_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_evidence_reports_request", "evidence_reports",
                    ["sign_request_id", "created_at"])
    op.create_index("ix_evidence_reports_timestamp", "evidence_reports",
                    ["timestamp_expires_at"])
    op.create_table(
        "audit_tree_tiles",
        sa.Column("start", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("start", "size"),
    )
    op.create_index("ix_audit_log_subject", "audit_log", ["subject", "seq"])
    op.create_index("ix_sign_documents_digest", "sign_documents", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_sign_documents_digest", table_name="sign_documents")
    op.drop_index("ix_audit_log_subject", table_name="audit_log")
    op.drop_table("audit_tree_tiles")
    op.drop_index("ix_evidence_reports_timestamp", table_name="evidence_reports")
    op.drop_index("ix_evidence_reports_request", table_name="evidence_reports")
    op.drop_table("evidence_reports")
