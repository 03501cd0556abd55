"""The relational schema (SQLAlchemy Core).  Migrations in ``migrations/versions`` create it;
this module is what the services query with.  Secrets never appear in clear: columns named
``*_wrapped`` hold envelopes from :mod:`appliance.custody`, and personal data is kept as a
salted HMAC (``*_hmac``, for lookup and logs) next to its wrapped value.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

# Stable constraint names, so that migrations on SQLite (batch mode) and PostgreSQL agree.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# SQLite only auto-assigns INTEGER PRIMARY KEY, not BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)

kek = Table(
    "kek", metadata,
    Column("id", Integer, primary_key=True),  # always 1: one KEK per installation
    Column("method", String(16), nullable=False),  # passphrase | shamir | pkcs11 | file
    Column("sealed", Text, nullable=False),  # JSON: the sealed KEK and how to open it
    Column("created_at", Timestamp, nullable=False),
)

wrapped_keys = Table(
    "wrapped_keys", metadata,
    Column("id", String(36), primary_key=True),
    Column("purpose", String(40), nullable=False),  # audit-signing, pii-hmac, tsa, ca, seal, ...
    Column("key_type", String(16), nullable=False),  # sm2, rsa, ec-p256, secret
    Column("public_key", LargeBinary, nullable=True),  # SubjectPublicKeyInfo DER
    Column("wrapped", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_wrapped_keys_purpose", "purpose", "status"),
)

admins = Table(
    "admins", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False),
    # One role per account (三员分立): system_admin, security_admin, audit_admin, reviewer.
    Column("role", String(32), nullable=False),
    Column("password_hash", String(255), nullable=False),  # Argon2id
    Column("totp_wrapped", LargeBinary, nullable=True),
    Column("totp_confirmed", Boolean, nullable=False, default=False),
    Column("totp_last_step", BigInteger, nullable=True),  # RFC 6238 replay guard (0003)
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", Timestamp, nullable=True),
    Column("status", String(16), nullable=False, default="active"),  # active | disabled
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("last_login_at", Timestamp, nullable=True),
)

admin_sessions = Table(
    "admin_sessions", metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 of the cookie token, hex
    Column("admin_id", BigId, ForeignKey("admins.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_hash", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("last_seen_at", Timestamp, nullable=False),
    Column("ip_hmac", String(64), nullable=True),
)

applications = Table(
    "applications", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("key_id", String(64), nullable=False, unique=True),
    Column("secret_wrapped", LargeBinary, nullable=False),
    Column("scopes", Text, nullable=False, default=""),  # space-separated
    Column("status", String(16), nullable=False, default="active"),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(64), nullable=True),
)

request_nonces = Table(
    "request_nonces", metadata,
    Column("key_id", String(64), primary_key=True),
    Column("nonce", String(64), primary_key=True),
    Column("seen_at", Timestamp, nullable=False),
    Index("ix_request_nonces_seen_at", "seen_at"),
)

signers = Table(
    "signers", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # doctor | pharmacist | nurse
    Column("name", String(64), nullable=False),
    Column("id_number_hmac", String(64), nullable=False, unique=True),
    Column("id_number_wrapped", LargeBinary, nullable=False),
    Column("phone_hmac", String(64), nullable=True),
    Column("phone_wrapped", LargeBinary, nullable=True),
    Column("department", String(128), nullable=False, default=""),
    Column("title", String(64), nullable=False, default=""),
    Column("qualification_no", String(64), nullable=False, default=""),
    Column("practice_no", String(64), nullable=False, default=""),
    # draft | pending_review | active | disabled
    Column("status", String(20), nullable=False, default="draft"),
    Column("review_note", Text, nullable=False, default=""),
    Column("reviewed_by", BigId, ForeignKey("admins.id"), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    # 0004: what enable restores, optimistic locking, who created, when submitted/reviewed.
    Column("status_before_disable", String(20), nullable=True),
    Column("version", Integer, nullable=False, default=1, server_default="1"),
    Column("created_by", String(128), nullable=False, default="", server_default=""),
    Column("submitted_at", Timestamp, nullable=True),
    Column("reviewed_at", Timestamp, nullable=True),
    Index("ix_signers_status", "status"),
    Index("ix_signers_kind", "kind"),
    Index("ix_signers_department", "department"),
    Index("uq_signers_phone_hmac", "phone_hmac", unique=True),
)

audit_log = Table(
    "audit_log", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),  # leaf index, from 0
    Column("node_id", String(64), nullable=False),
    Column("node_seq", BigInteger, nullable=False),
    Column("category", String(16), nullable=False),  # login | signature | data | system
    Column("action", String(64), nullable=False),
    Column("actor", String(128), nullable=False, default=""),
    Column("subject", String(256), nullable=False, default=""),
    Column("details", Text, nullable=False, default="{}"),  # canonical JSON
    Column("created_at", Timestamp, nullable=False),
    Column("leaf_hash", LargeBinary, nullable=False),  # SM3(0x00 || canonical entry)
    UniqueConstraint("node_id", "node_seq", name="uq_audit_log_node"),
    Index("ix_audit_log_category", "category", "seq"),
)

audit_checkpoints = Table(
    "audit_checkpoints", metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),  # the signed checkpoint (C2SP tlog-checkpoint text)
    Column("created_at", Timestamp, nullable=False),
)

# 0005: the built-in CA, issued certificates, CA channels.
ca_authorities = Table(
    "ca_authorities", metadata,
    Column("id", String(32), primary_key=True),  # sm2-g1, rsa-g1, ...
    Column("algorithm", String(8), nullable=False),  # sm2 | rsa
    Column("certificate", LargeBinary, nullable=False),  # the issuing CA (DER)
    Column("root_certificate", LargeBinary, nullable=False),
    Column("key_id", String(36), ForeignKey("wrapped_keys.id"), nullable=False),
    Column("root_key_id", String(36), ForeignKey("wrapped_keys.id"), nullable=False),
    Column("status", String(16), nullable=False, default="active"),  # active | retired
    Column("created_at", Timestamp, nullable=False),
    # CRL publication: one number sequence for full and delta CRLs (RFC 5280 5.2.3)
    Column("crl_number", BigInteger, nullable=False, default=0, server_default="0"),
    Column("full_crl", LargeBinary, nullable=True),
    Column("full_crl_number", BigInteger, nullable=True),  # the base of the delta CRLs
    Column("full_crl_at", Timestamp, nullable=True),  # thisUpdate of that base
    Column("delta_crl", LargeBinary, nullable=True),
    Column("crl_stale", Boolean, nullable=False, default=True, server_default=true()),
)

certificates = Table(
    "certificates", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("issuer_id", String(64), nullable=False),  # a ca_authorities id or a channel's CA
    Column("channel", String(64), nullable=False),
    Column("serial_hex", String(64), nullable=False),  # lower-case hex, no leading zeros
    Column("profile", String(40), nullable=False),
    Column("subject", Text, nullable=False),
    Column("key_type", String(16), nullable=False),
    Column("not_before", Timestamp, nullable=False),
    Column("not_after", Timestamp, nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("signer_id", BigId, ForeignKey("signers.id"), nullable=True),
    # the appliance's own key for this certificate (seals, TSA, TLS, update signing)
    Column("key_id", String(36), ForeignKey("wrapped_keys.id"), nullable=True),
    # silent renewal: the certificate that replaces this one, and the last failed attempt
    Column("replaced_by", BigId, ForeignKey("certificates.id"), nullable=True),
    Column("renewal_error", Text, nullable=True),
    Column("status", String(16), nullable=False, default="active"),  # active | revoked
    Column("revoked_at", Timestamp, nullable=True),
    Column("revocation_reason", String(32), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(128), nullable=False, default=""),
    UniqueConstraint("issuer_id", "serial_hex", name="uq_certificates_issuer_serial"),
    Index("ix_certificates_status", "status", "not_after"),
    Index("ix_certificates_signer", "signer_id"),
    Index("ix_certificates_revoked_at", "issuer_id", "revoked_at"),
)

ca_channels = Table(
    "ca_channels", metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # builtin | cmp | vendor-http
    Column("settings", Text, nullable=False, default="{}"),  # JSON, no secrets
    Column("secrets_wrapped", LargeBinary, nullable=True),  # JSON secrets under the KEK
    Column("enabled", Boolean, nullable=False, default=True, server_default=true()),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

ca_active_channels = Table(
    "ca_active_channels", metadata,
    Column("profile", String(40), primary_key=True),
    # a ca_channels name or builtin-sm2 / builtin-rsa (no foreign key: the built-in channels
    # are not rows); the service refuses to remove a channel a profile uses
    Column("channel", String(64), nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("updated_by", String(128), nullable=False, default=""),
)

# 0006: webhooks to the hospital's systems (an outbox: written with the change it reports).
webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("application_id", BigId, ForeignKey("applications.id"), nullable=False),
    Column("url", Text, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # canonical JSON
    Column("status", String(16), nullable=False, default="pending"),  # pending|delivered|failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("delivered_at", Timestamp, nullable=True),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

# 0007: trust anchors the security administrator added (external CAs' roots, cross-certified
# CAs); the built-in CA's roots are trusted without being listed here.
trust_anchors = Table(
    "trust_anchors", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("subject", Text, nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("kind", String(16), nullable=False),  # anchor | intermediate
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(128), nullable=False, default=""),
)

# 0008: signers' phones and split keys, sign requests from the hospital's systems, the tasks
# they give signers, co-sign sessions, auto-sign authorizations and the phone's message center.
devices = Table(
    "devices", metadata,
    Column("id", String(32), primary_key=True),  # dv_...
    Column("signer_id", BigId, ForeignKey("signers.id"), nullable=False),
    Column("public_key", LargeBinary, nullable=False),  # the device's SM2 key (SPKI DER)
    Column("name", String(64), nullable=False, default=""),
    Column("status", String(16), nullable=False, default="active"),  # active | revoked
    Column("created_at", Timestamp, nullable=False),
    Column("last_seen_at", Timestamp, nullable=True),
    Column("revoked_at", Timestamp, nullable=True),
    Index("ix_devices_signer", "signer_id", "status"),
)

activation_codes = Table(
    "activation_codes", metadata,
    Column("code_hmac", String(64), primary_key=True),  # the code itself is never stored
    Column("signer_id", BigId, ForeignKey("signers.id"), nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("used_at", Timestamp, nullable=True),
    Column("device_id", String(32), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(128), nullable=False, default=""),
    Index("ix_activation_codes_signer", "signer_id"),
)

signer_keys = Table(
    "signer_keys", metadata,
    Column("id", String(32), primary_key=True),  # sk_...
    Column("signer_id", BigId, ForeignKey("signers.id"), nullable=False),
    Column("device_id", String(32), ForeignKey("devices.id"), nullable=False),
    Column("algorithm", String(8), nullable=False),  # sm2
    Column("public_key", LargeBinary, nullable=False),  # the joint public point
    Column("share_wrapped", LargeBinary, nullable=False),  # the server share under the KEK
    Column("pin_wrapped", LargeBinary, nullable=False),  # keysplit.pin.PinRecord under the KEK
    Column("version", Integer, nullable=False, default=1),  # compare-and-swap of pin_wrapped
    # enrolling | active | retired | revoked | failed
    Column("status", String(16), nullable=False, default="enrolling"),
    Column("enrollment", Text, nullable=True),  # the pending enrollment (JSON)
    Column("certificate_id", BigId, ForeignKey("certificates.id"), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Index("ix_signer_keys_signer", "signer_id", "status"),
)

cosign_sessions = Table(
    "cosign_sessions", metadata,
    Column("id", String(64), primary_key=True),  # the protocol session id (hex)
    Column("kind", String(16), nullable=False),  # keygen | enroll | sign
    Column("device_id", String(32), ForeignKey("devices.id"), nullable=False),
    Column("key_id", String(32), nullable=True),  # signer_keys.id
    Column("state", Text, nullable=False),  # the keysplit state (JSON, no secrets)
    Column("context", Text, nullable=False, default="{}"),  # tasks and prepared CMS (JSON)
    Column("version", Integer, nullable=False, default=1),  # compare-and-swap of the state
    Column("status", String(16), nullable=False, default="open"),  # open | done
    Column("expires_at", Timestamp, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    # The last message answered (SM3 of its bytes) and the answer, wrapped under the KEK (it
    # may hold an unwrap key): a phone that lost the answer sends the same bytes again.
    Column("last_message", String(64), nullable=True),
    Column("last_answer", LargeBinary, nullable=True),
    Index("ix_cosign_sessions_expires", "expires_at"),
)

sign_requests = Table(
    "sign_requests", metadata,
    Column("id", String(36), primary_key=True),  # uuid
    Column("application_id", BigId, ForeignKey("applications.id"), nullable=False),
    Column("idempotency_key", String(128), nullable=True),
    Column("fingerprint", String(64), nullable=False),  # SM3 of the canonical request
    Column("title", String(200), nullable=False, default=""),
    Column("format", String(16), nullable=False),  # cms-attached | cms-detached | raw
    Column("flavour", String(8), nullable=False),  # rfc5652 | gmt0010
    # pending | completed | rejected | cancelled | expired
    Column("status", String(16), nullable=False, default="pending"),
    Column("callback_url", Text, nullable=True),
    Column("expires_at", Timestamp, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp, nullable=True),
    # 0012: pades only: B-B | B-T | B-LT | B-LTA (NULL: B-B, or not pades)
    Column("pades_level", String(8), nullable=True),
    UniqueConstraint("application_id", "idempotency_key", name="uq_sign_requests_idempotency"),
    Index("ix_sign_requests_status", "status", "expires_at"),
)

sign_documents = Table(
    "sign_documents", metadata,
    Column("request_id", String(36), ForeignKey("sign_requests.id"), primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False, default=""),
    Column("media_type", String(100), nullable=False, default="application/octet-stream"),
    Column("content", LargeBinary, nullable=True),  # absent when only a digest was sent
    Column("size", BigInteger, nullable=True),
    Column("digest_algorithm", String(16), nullable=False),  # sm3 | sha256
    Column("digest", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=True),  # CMS with every signer so far, or raw
)

sign_tasks = Table(
    "sign_tasks", metadata,
    Column("id", String(32), primary_key=True),  # tk_...
    Column("request_id", String(36), ForeignKey("sign_requests.id"), nullable=False),
    Column("step", Integer, nullable=False),  # 0, 1, ... in the signers' order
    Column("signer_id", BigId, ForeignKey("signers.id"), nullable=False),
    Column("action", String(8), nullable=False),  # sign | review
    # waiting | pending | signed | rejected | cancelled | expired
    Column("status", String(16), nullable=False, default="waiting"),
    Column("reason", Text, nullable=False, default=""),
    Column("device_id", String(32), nullable=True),
    Column("certificate_id", BigId, nullable=True),
    Column("auto_sign_id", String(32), nullable=True),
    Column("signatures", Text, nullable=True),  # JSON: raw signature values per document
    Column("finished_at", Timestamp, nullable=True),
    Index("ix_sign_tasks_signer", "signer_id", "status"),
    Index("ix_sign_tasks_request", "request_id", "step"),
)

auto_sign_grants = Table(
    "auto_sign_grants", metadata,
    Column("id", String(32), primary_key=True),  # as_...
    Column("signer_id", BigId, ForeignKey("signers.id"), nullable=False),
    Column("device_id", String(32), ForeignKey("devices.id"), nullable=False),
    Column("not_before", Timestamp, nullable=False),
    Column("not_after", Timestamp, nullable=False),
    Column("max_count", Integer, nullable=False),
    Column("used_count", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False, default="active"),  # active | revoked
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
    Index("ix_auto_sign_grants_signer", "signer_id", "status"),
)

mobile_messages = Table(
    "mobile_messages", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("signer_id", BigId, ForeignKey("signers.id"), nullable=False),
    Column("kind", String(32), nullable=False),  # task | result | key | auto-sign | notice
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False, default=""),
    Column("task_id", String(32), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("read_at", Timestamp, nullable=True),
    Index("ix_mobile_messages_signer", "signer_id", "id"),
)

qr_sessions = Table(
    "qr_sessions", metadata,
    Column("id", String(36), primary_key=True),  # uuid, in the QR code
    Column("application_id", BigId, ForeignKey("applications.id"), nullable=False),
    Column("purpose", String(8), nullable=False),  # login | sign
    Column("challenge", LargeBinary, nullable=False),  # 32 random bytes
    Column("payload", Text, nullable=False, default="{}"),  # sign: the documents (JSON)
    # waiting | scanned | confirmed | cancelled | expired
    Column("status", String(16), nullable=False, default="waiting"),
    Column("signer_id", BigId, ForeignKey("signers.id"), nullable=True),
    Column("device_id", String(32), nullable=True),
    Column("sign_request_id", String(36), nullable=True),
    Column("result", Text, nullable=True),  # login: the signed assertion (JSON)
    Column("expires_at", Timestamp, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("scanned_at", Timestamp, nullable=True),
    Column("confirmed_at", Timestamp, nullable=True),
)

handwritings = Table(
    "handwritings", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("signer_id", BigId, ForeignKey("signers.id"), nullable=False),
    Column("device_id", String(32), nullable=False),
    Column("strokes", Text, nullable=False),  # the normalized strokes (JSON)
    Column("png", LargeBinary, nullable=False),  # rendered, transparent background
    Column("created_at", Timestamp, nullable=False),
    Index("ix_handwritings_signer", "signer_id", "id"),
)

# 0009: PDF form templates (appliance.services.templates): a template is a name and a status;
# its versions are immutable once stored -- the uploaded source (a layout spec as canonical
# JSON, or an AcroForm PDF plus its sidecar), its SM3 digest, who uploaded it and when.
form_templates = Table(
    "form_templates", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),  # the template id (e-prescription)
    Column("title", String(200), nullable=False, default=""),
    Column("status", String(16), nullable=False, default="active"),  # active | retired
    Column("latest_version", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("retired_at", Timestamp, nullable=True),
    Column("retired_by", String(128), nullable=True),
)

form_template_versions = Table(
    "form_template_versions", metadata,
    Column("template_id", BigId, ForeignKey("form_templates.id"), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),  # layout | acroform
    Column("source", LargeBinary, nullable=False),  # canonical JSON spec, or the PDF
    Column("sidecar", Text, nullable=True),  # acroform: the sidecar (canonical JSON)
    Column("sm3", String(64), nullable=False),  # hex, of source (+ 0x00 + sidecar)
    Column("fields", Text, nullable=False),  # JSON: the typed fields and signature slots
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(128), nullable=False),
)

# 0010: managed seals (appliance.services.seals): the hospital's and departments' seals, each
# a name, an image (PNG, validated, at most 2 MiB) and its SM3 digest, a bound server-held key
# and certificate, enabled or not; which applications may use which seal; every use.
seals = Table(
    "seals", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # hospital | department
    Column("department", String(128), nullable=True),
    Column("image", LargeBinary, nullable=True),  # PNG
    Column("image_sm3", String(64), nullable=True),  # hex
    Column("certificate_id", BigId, ForeignKey("certificates.id"), nullable=True),
    Column("key_id", String(36), ForeignKey("wrapped_keys.id"), nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("updated_by", String(128), nullable=False),
    Index("ix_seals_certificate", "certificate_id"),
)

seal_scopes = Table(
    "seal_scopes", metadata,
    Column("seal_id", BigId, ForeignKey("seals.id"), primary_key=True),
    Column("application_id", BigId, ForeignKey("applications.id"), primary_key=True),
)

seal_usage = Table(
    "seal_usage", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("seal_id", BigId, ForeignKey("seals.id"), nullable=False),
    Column("application_id", BigId, nullable=True),  # none for a console caller
    Column("actor", String(128), nullable=False),
    Column("document_id", String(64), nullable=False),
    Column("document_digest", String(128), nullable=False),  # hex
    Column("digest_algorithm", String(16), nullable=False),
    Column("format", String(16), nullable=False),  # cms-attached | cms-detached | pades
    Column("request_id", String(36), nullable=False),  # one per /seal request (a batch)
    Column("used_at", Timestamp, nullable=False),
    Index("ix_seal_usage_seal", "seal_id", "id"),
)

# Revocation data fetched from external CAs (CRLs, OCSP responses), shared by every worker
# and node and kept across restarts; verified again whenever it is read.
revocation_cache = Table(
    "revocation_cache", metadata,
    Column("kind", String(8), primary_key=True),  # crl | ocsp
    Column("key_sha256", String(64), primary_key=True),  # of the key (URL#issuer[:serial])
    Column("key", Text, nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("stored_at", Timestamp, nullable=False),
)

# 0011: evidence reports (appliance.services.evidence) and what makes them cheap on a big log:
# the audit tree's complete subtrees of 1024+ leaves ("tiles": a cache, checked against the
# signed checkpoints on every use), lookups of a signer's / request's entries by subject, and
# of an uploaded document by its digest.
evidence_reports = Table(
    "evidence_reports", metadata,
    Column("id", String(40), primary_key=True),  # ev_...
    Column("sign_request_id", String(36), nullable=True),
    Column("document_sm3", String(64), nullable=False),  # hex, of the document reported on
    Column("verdict", String(16), nullable=False),  # valid | invalid
    Column("facts", Text, nullable=False),  # the canonical JSON embedded in the PDF
    Column("pdf", LargeBinary, nullable=False),  # the signed report (archive time stamps added)
    Column("created_by", String(128), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("timestamp_expires_at", Timestamp, nullable=True),  # newest TSA certificate's end
    Column("retimestamped_at", Timestamp, nullable=True),
    Index("ix_evidence_reports_request", "sign_request_id", "created_at"),
    Index("ix_evidence_reports_timestamp", "timestamp_expires_at"),
)

audit_tree_tiles = Table(
    "audit_tree_tiles", metadata,
    Column("start", BigInteger, primary_key=True, autoincrement=False),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

Index("ix_audit_log_subject", audit_log.c.subject, audit_log.c.seq)
Index("ix_sign_documents_digest", sign_documents.c.digest)
