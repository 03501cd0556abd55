"""ca: the built-in CA's authorities, every issued certificate, CA channels and the active
channel per certificate profile

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ca_authorities",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("algorithm", sa.String(8), nullable=False),
        sa.Column("certificate", sa.LargeBinary(), nullable=False),
        sa.Column("root_certificate", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(36), sa.ForeignKey("wrapped_keys.id",
                  name="fk_ca_authorities_key_id_wrapped_keys"), nullable=False),
        sa.Column("root_key_id", sa.String(36), sa.ForeignKey("wrapped_keys.id",
                  name="fk_ca_authorities_root_key_id_wrapped_keys"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("crl_number", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("full_crl", sa.LargeBinary(), nullable=True),
        sa.Column("full_crl_number", sa.BigInteger(), nullable=True),
        sa.Column("full_crl_at", _TIME, nullable=True),
        sa.Column("delta_crl", sa.LargeBinary(), nullable=True),
        sa.Column("crl_stale", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.PrimaryKeyConstraint("id", name="pk_ca_authorities"),
    )
    op.create_table(
        "certificates",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("issuer_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("serial_hex", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(40), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("not_before", _TIME, nullable=False),
        sa.Column("not_after", _TIME, nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("signer_id", _BIG_ID, sa.ForeignKey("signers.id",
                  name="fk_certificates_signer_id_signers"), nullable=True),
        sa.Column("key_id", sa.String(36), sa.ForeignKey(
            "wrapped_keys.id", name="fk_certificates_key_id_wrapped_keys"), nullable=True),
        sa.Column("replaced_by", _BIG_ID, sa.ForeignKey(
            "certificates.id", name="fk_certificates_replaced_by_certificates"), nullable=True),
        sa.Column("renewal_error", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", _TIME, nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_certificates"),
        sa.UniqueConstraint("issuer_id", "serial_hex", name="uq_certificates_issuer_serial"),
    )
    op.create_index("ix_certificates_status", "certificates", ["status", "not_after"])
    op.create_index("ix_certificates_signer", "certificates", ["signer_id"])
    op.create_index("ix_certificates_revoked_at", "certificates", ["issuer_id", "revoked_at"])
    op.create_table(
        "ca_channels",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("secrets_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_ca_channels"),
    )
    op.create_table(
        "ca_active_channels",
        sa.Column("profile", sa.String(40), primary_key=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("profile", name="pk_ca_active_channels"),
    )


def downgrade() -> None:
    op.drop_table("ca_active_channels")
    op.drop_table("ca_channels")
    op.drop_index("ix_certificates_revoked_at", table_name="certificates")
    op.drop_index("ix_certificates_signer", table_name="certificates")
    op.drop_index("ix_certificates_status", table_name="certificates")
    op.drop_table("certificates")
    op.drop_table("ca_authorities")
