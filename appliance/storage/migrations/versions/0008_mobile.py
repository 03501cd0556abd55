"""signers" phones and split keys, sign requests and tasks, co-sign sessions, auto-sign
authorizations, the phone"s message center

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sign_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("application_id", BIG_ID, nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("flavour", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_sign_requests_application_id_applications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_requests")),
        sa.UniqueConstraint(
            "application_id", "idempotency_key", name="uq_sign_requests_idempotency"
        ),
    )
    op.create_index(
        "ix_sign_requests_status", "sign_requests", ["status", "expires_at"], unique=False
    )
    op.create_table(
        "activation_codes",
        sa.Column("code_hmac", sa.String(length=64), nullable=False),
        sa.Column("signer_id", BIG_ID, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("used_at", TIMESTAMP, nullable=True),
        sa.Column("device_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["signers.id"], name=op.f("fk_activation_codes_signer_id_signers")
        ),
        sa.PrimaryKeyConstraint("code_hmac", name=op.f("pk_activation_codes")),
    )
    op.create_index("ix_activation_codes_signer", "activation_codes", ["signer_id"], unique=False)
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("signer_id", BIG_ID, nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_seen_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["signers.id"], name=op.f("fk_devices_signer_id_signers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
    )
    op.create_index("ix_devices_signer", "devices", ["signer_id", "status"], unique=False)
    op.create_table(
        "mobile_messages",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("signer_id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("task_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("read_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["signers.id"], name=op.f("fk_mobile_messages_signer_id_signers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mobile_messages")),
    )
    op.create_index(
        "ix_mobile_messages_signer", "mobile_messages", ["signer_id", "id"], unique=False
    )
    op.create_table(
        "sign_documents",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("digest_algorithm", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["sign_requests.id"],
            name=op.f("fk_sign_documents_request_id_sign_requests"),
        ),
        sa.PrimaryKeyConstraint("request_id", "idx", name=op.f("pk_sign_documents")),
    )
    op.create_table(
        "sign_tasks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("signer_id", BIG_ID, nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=True),
        sa.Column("certificate_id", BIG_ID, nullable=True),
        sa.Column("auto_sign_id", sa.String(length=32), nullable=True),
        sa.Column("signatures", sa.Text(), nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["sign_requests.id"],
            name=op.f("fk_sign_tasks_request_id_sign_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["signers.id"], name=op.f("fk_sign_tasks_signer_id_signers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_tasks")),
    )
    op.create_index("ix_sign_tasks_request", "sign_tasks", ["request_id", "step"], unique=False)
    op.create_index("ix_sign_tasks_signer", "sign_tasks", ["signer_id", "status"], unique=False)
    op.create_table(
        "auto_sign_grants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("signer_id", BIG_ID, nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("not_before", TIMESTAMP, nullable=False),
        sa.Column("not_after", TIMESTAMP, nullable=False),
        sa.Column("max_count", sa.Integer(), nullable=False),
        sa.Column("used_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_auto_sign_grants_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["signers.id"], name=op.f("fk_auto_sign_grants_signer_id_signers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auto_sign_grants")),
    )
    op.create_index(
        "ix_auto_sign_grants_signer", "auto_sign_grants", ["signer_id", "status"], unique=False
    )
    op.create_table(
        "cosign_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_message", sa.String(length=64), nullable=True),
        sa.Column("last_answer", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_cosign_sessions_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cosign_sessions")),
    )
    op.create_index("ix_cosign_sessions_expires", "cosign_sessions", ["expires_at"], unique=False)
    op.create_table(
        "signer_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("signer_id", BIG_ID, nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("algorithm", sa.String(length=8), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("share_wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("pin_wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("enrollment", sa.Text(), nullable=True),
        sa.Column("certificate_id", BIG_ID, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificates.id"],
            name=op.f("fk_signer_keys_certificate_id_certificates"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_signer_keys_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["signers.id"], name=op.f("fk_signer_keys_signer_id_signers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signer_keys")),
    )
    op.create_index("ix_signer_keys_signer", "signer_keys", ["signer_id", "status"], unique=False)

    op.create_table(
        "qr_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("application_id", BIG_ID, nullable=False),
        sa.Column("purpose", sa.String(length=8), nullable=False),
        sa.Column("challenge", sa.LargeBinary(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("signer_id", BIG_ID, nullable=True),
        sa.Column("device_id", sa.String(length=32), nullable=True),
        sa.Column("sign_request_id", sa.String(length=36), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("scanned_at", TIMESTAMP, nullable=True),
        sa.Column("confirmed_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_qr_sessions_application_id_applications"),
        ),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["signers.id"], name=op.f("fk_qr_sessions_signer_id_signers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qr_sessions")),
    )
    op.create_table(
        "handwritings",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("signer_id", BIG_ID, nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("strokes", sa.Text(), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["signers.id"], name=op.f("fk_handwritings_signer_id_signers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handwritings")),
    )
    op.create_index(
        "ix_handwritings_signer", "handwritings", ["signer_id", "id"], unique=False
    )
    op.create_table(
        "revocation_cache",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("kind", "key_sha256", name=op.f("pk_revocation_cache")),
    )


def downgrade() -> None:
    op.drop_table("revocation_cache")
    op.drop_index("ix_handwritings_signer", table_name="handwritings")
    op.drop_table("handwritings")
    op.drop_table("qr_sessions")
    op.drop_index("ix_signer_keys_signer", table_name="signer_keys")
    op.drop_table("signer_keys")
    op.drop_index("ix_cosign_sessions_expires", table_name="cosign_sessions")
    op.drop_table("cosign_sessions")
    op.drop_index("ix_auto_sign_grants_signer", table_name="auto_sign_grants")
    op.drop_table("auto_sign_grants")
    op.drop_index("ix_sign_tasks_signer", table_name="sign_tasks")
    op.drop_index("ix_sign_tasks_request", table_name="sign_tasks")
    op.drop_table("sign_tasks")
    op.drop_table("sign_documents")
    op.drop_index("ix_mobile_messages_signer", table_name="mobile_messages")
    op.drop_table("mobile_messages")
    op.drop_index("ix_devices_signer", table_name="devices")
    op.drop_table("devices")
    op.drop_index("ix_activation_codes_signer", table_name="activation_codes")
    op.drop_table("activation_codes")
    op.drop_index("ix_sign_requests_status", table_name="sign_requests")
    op.drop_table("sign_requests")
