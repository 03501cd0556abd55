"""The built-in CA on the appliance: hierarchies under the KEK, issuance, revocation, CRL
publication and OCSP (issue 5; the CA logic itself is :mod:`ca_client.builtin`).

Threat model.  The CA keys (root and issuing, SM2 and RSA) exist in clear only in the memory of
an unsealed appliance: at rest they are envelopes under the KEK (``wrapped_keys``), bound to
their key id, and the public key stored next to them is checked on every unwrap.  Only the
security administrator (or the operator's CLI) creates hierarchies, issues and revokes; every
such act is in the audit log.  Relying parties read CRLs, CA certificates and OCSP answers
anonymously (they carry no personal data beyond what the certificates publish).

Publication.  Every revocation is committed first, then the authority's CRLs are republished
at once (a full CRL, and a delta CRL over the scheduled base), so the CRL reflects it within
the same request; OCSP answers are computed from the table on every request.  A full CRL is
also republished when a reader finds it older than ``CRL_REFRESH`` (or it is missing), and the
delta base moves to a new full CRL once a day.  Concurrent publishers (workers, nodes) take the
authority's row lock, so CRL numbers only ever grow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from appliance.custody import KeyHolder, Keyring
from appliance.errors import Conflict, NotFound, ValidationFailed
from appliance.services._time import aware as _aware
from appliance.services._time import utc_now as _now
from appliance.services.admins import Actor, actor_label, require_manager
from appliance.storage import Database, schema
from ca_client import (
    AlreadyRevoked,
    BuiltinCa,
    CaError,
    CaUrls,
    IssuedRecord,
    OcspResponder,
    RequestRejected,
    SubjectInfo,
    UnknownCertificate,
    generate_hierarchy,
)
from signcore.errors import DecryptionError, SigncoreError
from signcore.keys import PrivateKey, load_private_key
from signcore.x509 import (
    Certificate,
    RevokedCertificate,
    load_certificate,
    load_crl,
    load_csr,
)

A = schema.ca_authorities
C = schema.certificates
T = schema.trust_anchors
# Built once: every signature reads its certificate (building a statement costs more than
# executing it).
_CERTIFICATE_BY_ID = select(C).where(C.c.id == bindparam("certificate_id"))
W = schema.wrapped_keys

CRL_REFRESH = dt.timedelta(hours=1)  # a full CRL older than this is republished when read
DELTA_BASE_AGE = dt.timedelta(days=1)  # deltas are computed over a base at most this old
ROOT_PURPOSE, ISSUING_PURPOSE = "ca-root", "ca-issuing"
MAX_PAGE = 500
MAX_ID = 2**63 - 1  # BIGINT: larger ids cannot exist (and would overflow the driver)
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]
Clock = Callable[[], dt.datetime]


def _key_context(key_id: str) -> bytes:
    return f"medsign/wrapped-key/ca/{key_id}".encode()


@dataclasses.dataclass(frozen=True)
class Authority:
    """A hierarchy of the built-in CA, as the API shows it."""

    id: str
    algorithm: str
    status: str
    certificate: Certificate
    root: Certificate
    created_at: dt.datetime
    crl_number: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "algorithm": self.algorithm, "status": self.status,
                "subject": self.certificate.subject, "root_subject": self.root.subject,
                "not_before": self.certificate.not_before.isoformat(),
                "not_after": self.certificate.not_after.isoformat(),
                "created_at": _aware(self.created_at).isoformat(),
                "crl_number": self.crl_number}


@dataclasses.dataclass(frozen=True)
class CertificateInfo:
    """One issued certificate (any channel), as the API and the CLI show it."""

    id: int
    issuer_id: str
    channel: str
    serial_hex: str
    profile: str
    subject: str
    key_type: str
    not_before: dt.datetime
    not_after: dt.datetime
    status: str
    revoked_at: dt.datetime | None
    revocation_reason: str | None
    signer_id: int | None
    created_at: dt.datetime
    created_by: str
    der: bytes

    def effective_status(self, now: dt.datetime) -> str:
        if self.status == "revoked":
            return "revoked"
        return "expired" if _aware(self.not_after) < now else "active"

    def to_json(self, now: dt.datetime | None = None) -> dict[str, Any]:
        certificate = Certificate.from_stored(self.der)
        return {
            "id": self.id, "issuer_id": self.issuer_id, "channel": self.channel,
            "serial": self.serial_hex, "profile": self.profile, "subject": self.subject,
            "issuer": certificate.issuer, "key_type": self.key_type,
            "not_before": _aware(self.not_before).isoformat(),
            "not_after": _aware(self.not_after).isoformat(),
            "status": self.effective_status(now or _now()),
            "revoked_at": _aware(self.revoked_at).isoformat() if self.revoked_at else None,
            "revocation_reason": self.revocation_reason, "signer_id": self.signer_id,
            "created_at": _aware(self.created_at).isoformat(), "created_by": self.created_by,
            "sha256": certificate.fingerprint("sha256").hex(),
            "pem": certificate.to_pem().decode(),
        }


def certificate_info(row: Row[Any]) -> CertificateInfo:
    """A ``certificates`` row, with aware UTC times on both engines."""
    return CertificateInfo(row.id, row.issuer_id, row.channel, row.serial_hex, row.profile,
                           row.subject, row.key_type, _aware(row.not_before),
                           _aware(row.not_after), row.status,
                           _aware(row.revoked_at) if row.revoked_at else None,
                           row.revocation_reason, row.signer_id, _aware(row.created_at),
                           row.created_by, bytes(row.der))


class SqlCaRepository:
    """:class:`ca_client.CaRepository` on the ``certificates`` table."""

    def __init__(self, database: Database, created_by: Callable[[], str] = lambda: "") -> None:
        self._db = database
        self._created_by = created_by

    def add_issued(self, record: IssuedRecord) -> None:
        cert = record.certificate
        with self._db.transaction() as conn:
            conn.execute(insert(C).values(
                issuer_id=record.ca_id, channel=record.channel,
                serial_hex=f"{record.serial_number:x}", profile=record.profile,
                subject=cert.subject, key_type=cert.public_key().key_type.value,
                not_before=cert.not_before, not_after=cert.not_after, der=cert.der,
                status="active", created_at=_now(), created_by=self._created_by()))

    def find_issued(self, ca_id: str, serial_number: int) -> IssuedRecord | None:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(C).where(C.c.issuer_id == ca_id,
                                               C.c.serial_hex == f"{serial_number:x}")).first()
        return _record(row) if row is not None else None

    def mark_revoked(self, ca_id: str, serial_number: int, when: dt.datetime,
                     reason: str) -> IssuedRecord:
        with self._db.transaction() as conn:
            row = conn.execute(select(C).where(C.c.issuer_id == ca_id,
                                               C.c.serial_hex == f"{serial_number:x}")
                               .with_for_update()).first()
            if row is None:
                raise UnknownCertificate(f"证书 {serial_number:x} 不是 {ca_id} 签发的")
            if row.status == "revoked":
                raise AlreadyRevoked(f"证书 {serial_number:x} 已于 "
                                     f"{_aware(row.revoked_at):%Y-%m-%d %H:%M} 吊销")
            conn.execute(update(C).where(C.c.id == row.id).values(
                status="revoked", revoked_at=when, revocation_reason=reason))
            conn.execute(update(A).where(A.c.id == ca_id).values(crl_stale=True))
            row = conn.execute(select(C).where(C.c.id == row.id)).one()
        return _record(row)

    def revoked(self, ca_id: str, since: dt.datetime | None = None) -> list[RevokedCertificate]:
        query = select(C.c.serial_hex, C.c.revoked_at, C.c.revocation_reason).where(
            C.c.issuer_id == ca_id, C.c.status == "revoked")
        if since is not None:
            query = query.where(C.c.revoked_at >= since)
        with self._db.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [RevokedCertificate(int(r.serial_hex, 16), _aware(r.revoked_at),
                                   r.revocation_reason) for r in rows]


def _record(row: Row[Any]) -> IssuedRecord:
    return IssuedRecord(row.issuer_id, int(row.serial_hex, 16), row.profile,
                        Certificate.from_stored(bytes(row.der)), row.channel,
                        _aware(row.revoked_at) if row.revoked_at else None,
                        row.revocation_reason)


class CaService:
    """Hierarchies, issuance, revocation and publication of the built-in CA."""

    def __init__(self, database: Database, key_holder: KeyHolder, *, public_url: str,
                 audit: AuditHook | None = None, clock: Clock = _now) -> None:
        self._db, self._holder, self._audit, self._clock = database, key_holder, audit, clock
        self._base = public_url.rstrip("/")
        self._actor = threading.local()
        self._repository = SqlCaRepository(database, lambda: getattr(self._actor, "label", ""))
        self._lock = threading.Lock()
        self._cas: tuple[str, dict[str, BuiltinCa]] | None = None  # (KEK fingerprint, by id)

    # -- hierarchies

    def initialize(self, actor: Actor | None, algorithm: str, organization: str) -> Authority:
        """Create a new SM2 or RSA hierarchy (root + issuing CA) under the KEK; an older active
        one of the same algorithm keeps answering for what it issued but issues no more."""
        require_manager(actor, "证书颁发机构")
        keyring = self._holder.keyring()
        try:
            generation = 1 + len([a for a in self.authorities() if a.algorithm == algorithm])
            hierarchy = generate_hierarchy(algorithm, organization.strip(), now=self._clock(),
                                           generation=generation)
        except RequestRejected as exc:
            raise ValidationFailed(str(exc)) from None
        ca_id = f"{algorithm}-g{generation}"
        now = self._clock()
        with self._db.transaction() as conn:
            root_key_id = self._store_key(conn, keyring, ROOT_PURPOSE, hierarchy.root_key, now)
            key_id = self._store_key(conn, keyring, ISSUING_PURPOSE, hierarchy.issuing_key, now)
            conn.execute(update(A).where(A.c.algorithm == algorithm, A.c.status == "active")
                         .values(status="retired"))
            try:
                conn.execute(insert(A).values(
                    id=ca_id, algorithm=algorithm, certificate=hierarchy.issuing.der,
                    root_certificate=hierarchy.root.der, key_id=key_id, root_key_id=root_key_id,
                    status="active", created_at=now, crl_number=0, crl_stale=True))
            except IntegrityError:
                raise Conflict("另一个请求正在创建同一算法的 CA，请稍后重试") from None
        self._forget()
        self._record("system", "ca.initialize", actor, ca_id,
                     {"algorithm": algorithm, "subject": hierarchy.issuing.subject})
        self.publish_crls(ca_id)
        return self.authority(ca_id)

    @staticmethod
    def _store_key(conn: Connection, keyring: Keyring, purpose: str, key: PrivateKey,
                   now: dt.datetime) -> str:
        key_id = str(uuid.uuid4())
        conn.execute(insert(W).values(
            id=key_id, purpose=purpose, key_type=key.public_key().key_type.value,
            public_key=key.public_key().to_der(),
            wrapped=keyring.wrap(key.to_der(), _key_context(key_id)), status="active",
            created_at=now))
        return key_id

    def authorities(self) -> list[Authority]:
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(A).order_by(A.c.created_at, A.c.id)).all()
        return [_authority(row) for row in rows]

    def authority(self, ca_id: str) -> Authority:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(A).where(A.c.id == ca_id)).first()
        if row is None:
            raise NotFound(f"没有 CA {ca_id}")
        return _authority(row)

    def active_authority(self, algorithm: str) -> Authority:
        found = [a for a in self.authorities() if a.algorithm == algorithm and a.status == "active"]
        if not found:
            raise Conflict(f"尚未创建 {algorithm.upper()} CA（medsign ca init --algorithm "
                           f"{algorithm}）")
        return found[-1]

    def urls(self, ca_id: str) -> CaUrls:
        return CaUrls(crl=f"{self._base}/crl/{ca_id}.crl",
                      delta_crl=f"{self._base}/crl/{ca_id}-delta.crl",
                      ocsp=f"{self._base}/ocsp", ca_issuers=f"{self._base}/ca/{ca_id}.crt")

    def _builtin(self, ca_id: str) -> BuiltinCa:
        keyring = self._holder.keyring()
        with self._lock:
            if self._cas is None or self._cas[0] != keyring.fingerprint:
                self._cas = (keyring.fingerprint, {})
            cached = self._cas[1].get(ca_id)
            if cached is not None:
                return cached
        with self._db.engine.connect() as conn:
            row = conn.execute(select(A).where(A.c.id == ca_id)).first()
            if row is None:
                raise NotFound(f"没有 CA {ca_id}")
            key_row = conn.execute(select(W).where(W.c.id == row.key_id)).one()
        key = _open_key(keyring, key_row)
        ca = BuiltinCa(ca_id, Certificate.from_stored(bytes(row.certificate)), key,
                       self._repository,
                       chain=[Certificate.from_stored(bytes(row.root_certificate))],
                       urls=self.urls(ca_id), clock=self._clock)
        with self._lock:
            if self._cas is not None and self._cas[0] == keyring.fingerprint:
                self._cas[1][ca_id] = ca
        return ca

    def builtin(self, ca_id: str) -> BuiltinCa:
        """The CA object of hierarchy ``ca_id`` (its key unwrapped; needs the KEK)."""
        return self._builtin(ca_id)

    def record_issued(self, certificate: Certificate, *, channel: str, profile: str,
                      actor: Actor | None, key_id: str | None = None,
                      signer_id: int | None = None, builtin: bool = False) -> CertificateInfo:
        """Keep a certificate a channel issued (the built-in CA stored it already: then only
        the key id and who asked are added)."""
        serial_hex = f"{certificate.serial_number:x}"
        with self._db.transaction() as conn:
            if builtin:
                row = conn.execute(select(C.c.id).where(
                    C.c.serial_hex == serial_hex, C.c.channel == channel)).first()
                if row is None:
                    raise NotFound(f"没有证书 {serial_hex}")
                conn.execute(update(C).where(C.c.id == row.id).values(
                    key_id=key_id, signer_id=signer_id, created_by=actor_label(actor)))
                certificate_id = row.id
            else:
                certificate_id = conn.execute(insert(C).values(
                    issuer_id=channel, channel=channel, serial_hex=serial_hex, profile=profile,
                    subject=certificate.subject,
                    key_type=certificate.public_key().key_type.value,
                    not_before=certificate.not_before, not_after=certificate.not_after,
                    der=certificate.der, key_id=key_id, signer_id=signer_id, status="active",
                    created_at=_now(),
                    created_by=actor_label(actor)).returning(C.c.id)).scalar_one()
        return self.get(int(certificate_id))

    def _forget(self) -> None:
        with self._lock:
            self._cas = None

    # -- issuance and revocation

    def issue(self, actor: Actor | None, *, algorithm: str, profile: str, subject: SubjectInfo,
              csr_der: bytes, validity_days: int | None = None) -> CertificateInfo:
        """Issue from a CSR (its proof of possession is checked) with the active hierarchy of
        ``algorithm``."""
        require_manager(actor, "证书")
        ca = self._builtin(self.active_authority(algorithm).id)
        try:
            csr = load_csr(csr_der)
        except (SigncoreError, ValueError) as exc:
            raise ValidationFailed(f"CSR 无法解析：{exc}") from None
        self._actor.label = actor_label(actor)
        try:
            record = ca.issue(profile, subject, csr=csr, validity_days=validity_days)
        except RequestRejected as exc:
            raise ValidationFailed(str(exc)) from None
        except CaError as exc:
            raise Conflict(str(exc)) from None
        finally:
            self._actor.label = ""
        info = self.find(ca.ca_id, record.serial_number)
        self._record("data", "cert.issue", actor, f"{ca.ca_id}/{info.serial_hex}",
                     {"profile": profile, "certificate_id": info.id})
        return info

    def revoke(self, actor: Actor | None, certificate_id: int, reason: str) -> CertificateInfo:
        require_manager(actor, "证书")
        info = self.get(certificate_id)
        if info.issuer_id not in {a.id for a in self.authorities()}:
            raise Conflict("该证书由外部 CA 通道签发，请通过该通道吊销")
        ca = self._builtin(info.issuer_id)
        try:
            ca.revoke(int(info.serial_hex, 16), reason)
        except RequestRejected as exc:
            raise ValidationFailed(str(exc)) from None
        except AlreadyRevoked as exc:
            raise Conflict(str(exc)) from None
        self._record("data", "cert.revoke", actor, f"{info.issuer_id}/{info.serial_hex}",
                     {"reason": reason, "certificate_id": certificate_id})
        self.publish_crls(info.issuer_id)
        return self.get(certificate_id)

    def mark_revoked(self, certificate_id: int, reason: str) -> None:
        """Record a revocation an external channel performed."""
        with self._db.transaction() as conn:
            conn.execute(update(C).where(C.c.id == certificate_id, C.c.status == "active")
                         .values(status="revoked", revoked_at=self._clock(),
                                 revocation_reason=reason))

    def certificates_of_signer(self, signer_id: int) -> list[CertificateInfo]:
        """A signer's certificates that are not revoked (expired ones included: revoking
        them too keeps the record unambiguous)."""
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(C).where(C.c.signer_id == signer_id,
                                                C.c.status == "active")
                                .order_by(C.c.id)).all()
        return [certificate_info(row) for row in rows]

    def get(self, certificate_id: int) -> CertificateInfo:
        row = None
        if 0 < certificate_id <= MAX_ID:
            with self._db.engine.connect() as conn:
                row = conn.execute(_CERTIFICATE_BY_ID, {"certificate_id": certificate_id}
                                   ).first()
        if row is None:
            raise NotFound(f"没有编号为 {certificate_id} 的证书")
        return certificate_info(row)

    def find(self, issuer_id: str, serial_number: int) -> CertificateInfo:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(C).where(C.c.issuer_id == issuer_id,
                                               C.c.serial_hex == f"{serial_number:x}")).first()
        if row is None:
            raise NotFound(f"没有证书 {serial_number:x}")
        return certificate_info(row)

    def search(self, *, status: str | None = None, profile: str | None = None,
             query: str | None = None, offset: int = 0,
             limit: int = 100) -> tuple[list[CertificateInfo], int]:
        """A page of certificates (newest first) and the total matching."""
        if not 0 < limit <= MAX_PAGE or offset < 0:
            raise ValidationFailed(f"limit must be 1 to {MAX_PAGE}, offset >= 0")
        conditions: list[Any] = []
        now = self._clock()
        if status == "revoked":
            conditions.append(C.c.status == "revoked")
        elif status == "active":
            conditions += [C.c.status == "active", C.c.not_after >= now]
        elif status == "expired":
            conditions += [C.c.status == "active", C.c.not_after < now]
        elif status is not None:
            raise ValidationFailed("status must be active, expired or revoked")
        if profile:
            conditions.append(C.c.profile == profile)
        if query:
            like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(C.c.subject.like(like, escape="\\")
                              | C.c.serial_hex.like(like.lower(), escape="\\"))
        with self._db.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(C).where(*conditions)).scalar()
            rows = conn.execute(select(C).where(*conditions).order_by(C.c.id.desc())
                                .offset(offset).limit(limit)).all()
        return [certificate_info(row) for row in rows], int(total or 0)

    # -- publication

    def publish_crls(self, ca_id: str) -> None:
        """Republish the full CRL and the delta CRL of ``ca_id`` (module docstring).

        Numbers are taken under the authority's row lock; the CRLs are signed outside any
        transaction (reading the revocations needs its own connection) and stored only if no
        concurrent publisher stored newer ones meanwhile."""
        ca = self._builtin(ca_id)
        now = self._clock()
        with self._db.transaction() as conn:
            row = conn.execute(select(A).where(A.c.id == ca_id).with_for_update()).one()
            number = int(row.crl_number) + 1
            conn.execute(update(A).where(A.c.id == ca_id).values(crl_number=number + 1))
        full = ca.crl(number)
        values: dict[str, Any] = {"full_crl": full.der}
        base_number, base_at = row.full_crl_number, row.full_crl_at
        if base_number is None or now - _aware(base_at) >= DELTA_BASE_AGE:
            base_number, base_at = number, full.this_update
            values.update(full_crl_number=number, full_crl_at=full.this_update)
        values["delta_crl"] = ca.crl(number + 1, delta_of=(int(base_number),
                                                            _aware(base_at))).der
        with self._db.transaction() as conn:
            row = conn.execute(select(A).where(A.c.id == ca_id).with_for_update()).one()
            stored = load_crl(bytes(row.full_crl)).crl_number if row.full_crl else None
            if stored is not None and stored > number:
                return  # a concurrent publisher stored newer CRLs
            # Stale again if a revocation was recorded after these CRLs read the table (its own
            # publication is on its way; a reader republishes if that one failed).
            later = conn.execute(select(func.count()).select_from(C).where(
                C.c.issuer_id == ca_id, C.c.revoked_at >= now - dt.timedelta(seconds=1))
            ).scalar()
            values["crl_stale"] = bool(later) and bool(row.crl_stale)
            conn.execute(update(A).where(A.c.id == ca_id).values(**values))

    def crl(self, ca_id: str, *, delta: bool = False) -> bytes:
        """The published CRL (DER), republished first when stale and the KEK is at hand."""
        row = self._authority_row(ca_id)
        current = row.delta_crl if delta else row.full_crl
        fresh = current is not None and not row.crl_stale and (
            self._clock() - _crl_this_update(bytes(row.full_crl)) < CRL_REFRESH)
        if not fresh and not self._holder.sealed:
            self.publish_crls(ca_id)
            row = self._authority_row(ca_id)
            current = row.delta_crl if delta else row.full_crl
        if current is None:
            raise NotFound(f"CA {ca_id} 的 CRL 尚未发布（设备未解封）")
        return bytes(current)

    def ca_certificate(self, ca_id: str, *, root: bool = False) -> bytes:
        row = self._authority_row(ca_id)
        return bytes(row.root_certificate if root else row.certificate)

    def _authority_row(self, ca_id: str) -> Row[Any]:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(A).where(A.c.id == ca_id)).first()
        if row is None:
            raise NotFound(f"没有 CA {ca_id}")
        return row

    def ocsp(self, request_der: bytes) -> bytes:
        """The OCSP answer (DER) to a request: every authority, retired ones included, answers
        for what it issued."""
        with self._db.engine.connect() as conn:
            ids = conn.execute(select(A.c.id).order_by(A.c.created_at, A.c.id)).scalars().all()
        return OcspResponder([self._builtin(ca_id) for ca_id in ids]).respond(request_der)

    # -- trust anchors beyond the built-in CA (external CAs, cross-certified CAs)

    def trust_anchors(self) -> list[dict[str, Any]]:
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(T).order_by(T.c.id)).all()
        return [_anchor_json(row) for row in rows]

    def add_trust_anchor(self, actor: Actor | None, pem: bytes, *,
                         kind: str = "anchor") -> dict[str, Any]:
        """Trust an external CA's root (``anchor``) or make a CA certificate known for path
        building (``intermediate``, e.g. a cross-certificate).  Only CA certificates."""
        require_manager(actor, "信任锚")
        if kind not in ("anchor", "intermediate"):
            raise ValidationFailed("kind 应为 anchor 或 intermediate")
        try:
            certificate = load_certificate(pem)
        except (SigncoreError, ValueError) as exc:
            raise ValidationFailed(f"certificate 无法解析：{exc}") from None
        if not certificate.is_ca:
            raise ValidationFailed("只能添加 CA 证书（basicConstraints cA=TRUE）")
        if kind == "anchor":
            try:
                certificate.verify_signature(certificate.public_key())
            except SigncoreError:
                raise ValidationFailed("信任锚应为自签名的根证书"
                                       "（交叉证书请作为 intermediate 添加）") from None
        digest = certificate.fingerprint("sha256").hex()
        try:
            with self._db.transaction() as conn:
                conn.execute(insert(T).values(
                    sha256=digest, subject=certificate.subject, der=certificate.der, kind=kind,
                    created_at=self._clock(), created_by=actor_label(actor)))
        except IntegrityError:
            raise Conflict("该证书已在信任列表中") from None
        self._record("system", "trust.add", actor, certificate.subject,
                     {"sha256": digest, "kind": kind})
        return next(a for a in self.trust_anchors() if a["sha256"] == digest)

    def remove_trust_anchor(self, actor: Actor | None, anchor_id: int) -> None:
        require_manager(actor, "信任锚")
        with self._db.transaction() as conn:
            row = conn.execute(select(T).where(T.c.id == anchor_id)).first() \
                if 0 < anchor_id <= MAX_ID else None
            if row is None:
                raise NotFound(f"没有编号为 {anchor_id} 的信任锚")
            conn.execute(T.delete().where(T.c.id == anchor_id))
        self._record("system", "trust.remove", actor, row.subject, {"sha256": row.sha256})

    def trusted_certificates(self) -> tuple[list[Certificate], list[Certificate]]:
        """(anchors, other known CA certificates): the built-in CA's roots and issuing CAs,
        and what the security administrator added."""
        anchors, others = [], []
        for authority in self.authorities():
            anchors.append(authority.root)
            others.append(authority.certificate)
        with self._db.engine.connect() as conn:
            for row in conn.execute(select(T.c.der, T.c.kind)).all():
                (anchors if row.kind == "anchor" else others).append(
                    Certificate.from_stored(bytes(row.der)))
        return anchors, others

    def _record(self, category: str, action: str, actor: Actor | None, subject: str,
                details: Mapping[str, Any]) -> None:
        if self._audit is not None:
            self._audit(category, action, actor_label(actor), subject, dict(details))


class ServerKeyStore:
    """The appliance's own keys for certificates (seals, TSA, TLS, update signing): wrapped
    under the KEK in ``wrapped_keys``, bound to their id, checked against their public key."""

    def __init__(self, database: Database, key_holder: KeyHolder) -> None:
        self._db, self._holder = database, key_holder

    def store(self, key: PrivateKey, *, purpose: str) -> str:
        with self._db.transaction() as conn:
            return CaService._store_key(conn, self._holder.keyring(), purpose, key, _now())

    def load(self, key_id: str) -> PrivateKey:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(W).where(W.c.id == key_id)).first()
        if row is None:
            raise NotFound(f"没有密钥 {key_id}")
        return _open_key(self._holder.keyring(), row)


def _anchor_json(row: Row[Any]) -> dict[str, Any]:
    certificate = Certificate.from_stored(bytes(row.der))
    return {"id": row.id, "kind": row.kind, "subject": row.subject, "sha256": row.sha256,
            "not_after": certificate.not_after.isoformat(),
            "created_at": _aware(row.created_at).isoformat(), "created_by": row.created_by,
            "pem": certificate.to_pem().decode()}


def _crl_this_update(der: bytes) -> dt.datetime:
    return load_crl(der).this_update


def _authority(row: Row[Any]) -> Authority:
    return Authority(row.id, row.algorithm, row.status,
                     Certificate.from_stored(bytes(row.certificate)),
                     Certificate.from_stored(bytes(row.root_certificate)), row.created_at,
                     int(row.crl_number))


def _open_key(keyring: Keyring, row: Row[Any]) -> PrivateKey:
    key = load_private_key(keyring.unwrap(bytes(row.wrapped), _key_context(row.id)))
    if key.public_key().to_der() != bytes(row.public_key):
        raise DecryptionError("the CA key does not match its public key")
    return key

