"""Silent renewal: no signature fails because a certificate expired while a renewal was possible.

``medsign worker`` runs :meth:`RenewalService.run_once` on a cadence (``ca.
worker_interval_seconds``).  A pass looks at every active certificate that expires within
``ca.renew_days_before`` days and has not been replaced yet:

- the appliance's own keys (seals, TSA, TLS, update signing: a ``key_id``): a fresh key of the
  same type is generated and enrolled through the *currently* active channel of the profile,
  with the same subject; the old certificate stays valid until it expires (signatures made with
  it stay verifiable) and points to its replacement (``replaced_by``);
- split keys of doctors, pharmacists and nurses (a ``signer_id``, no ``key_id``): the key share
  on the phone must take part, so the certificate is reported as due and renewed at the
  signer's next phone contact (the mobile API asks :meth:`due_for_signer`), with nothing for
  the doctor to do beyond the usual PIN.

A renewal that fails (channel down, refused) is retried on every pass; the error is kept on the
certificate (``renewal_error``) and an alert goes to the audit log (category ``system``).
:meth:`report` lists what is due, what failed, and what will expire un-renewed within a week,
for the security administrator's console.  Each pass also republishes the built-in CA's CRLs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select, update

from appliance.config import CaConfig
from appliance.errors import ApplianceError
from appliance.services._time import aware as _aware
from appliance.services._time import utc_now as _now
from appliance.services.admins import Actor, actor_label
from appliance.services.ca import CaService, CertificateInfo, certificate_info
from appliance.services.channels import KEY_SPECS, ChannelService
from appliance.storage import Database, schema
from ca_client import SubjectInfo
from signcore.x509 import Certificate

C = schema.certificates
URGENT = dt.timedelta(days=7)  # un-renewed this close to expiry: the report says so
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]


@dataclasses.dataclass(frozen=True)
class _Worker:
    """The actor renewals are attributed to in the audit log."""

    name: str = "renewal"
    kind: str = "system"
    id: int = 0


WORKER = _Worker()


@dataclasses.dataclass
class PassResult:
    renewed: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (old, new) ids
    waiting_for_phone: list[int] = dataclasses.field(default_factory=list)
    failed: dict[int, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"renewed": [{"old": o, "new": n} for o, n in self.renewed],
                "waiting_for_phone": self.waiting_for_phone,
                "failed": [{"id": i, "error": e} for i, e in sorted(self.failed.items())]}


class RenewalService:
    def __init__(self, database: Database, ca: CaService, channels: ChannelService,
                 config: CaConfig, *, audit: AuditHook | None = None,
                 clock: Callable[[], dt.datetime] = _now) -> None:
        self._db, self._ca, self._channels, self._config = database, ca, channels, config
        self._audit, self._clock = audit, clock

    def due(self) -> list[CertificateInfo]:
        """Active, unreplaced certificates that expire within the renewal window."""
        now = self._clock()
        horizon = now + dt.timedelta(days=self._config.renew_days_before)
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(C).where(
                C.c.status == "active", C.c.replaced_by.is_(None), C.c.not_after > now,
                C.c.not_after <= horizon).order_by(C.c.not_after)).all()
        return [certificate_info(row) for row in rows]

    def due_for_signer(self, signer_id: int) -> list[CertificateInfo]:
        return [c for c in self.due() if c.signer_id == signer_id]

    def run_once(self) -> PassResult:
        result = PassResult()
        for info in self.due():
            if info.signer_id is not None and not self._has_key(info):
                result.waiting_for_phone.append(info.id)
                continue
            try:
                new = self.renew_server_certificate(info)
            except ApplianceError as exc:
                result.failed[info.id] = exc.detail
                self._failed(info, exc.detail)
            else:
                result.renewed.append((info.id, new.id))
        for authority in self._ca.authorities():
            try:
                self._ca.publish_crls(authority.id)
            except ApplianceError as exc:
                self._record("system", "ca.crl.publish-failed", authority.id,
                             {"error": exc.detail})
        return result

    def _has_key(self, info: CertificateInfo) -> bool:
        with self._db.engine.connect() as conn:
            return conn.execute(select(C.c.key_id).where(C.c.id == info.id)).scalar() is not None

    def renew_server_certificate(self, info: CertificateInfo) -> CertificateInfo:
        old = Certificate.from_stored(info.der)
        algorithm = "sm2" if old.public_key().key_type.value == "sm2" else "rsa"
        assert algorithm in KEY_SPECS
        new = self._channels.enroll_server_key(WORKER, profile=info.profile,
                                               subject=SubjectInfo.from_certificate(old),
                                               algorithm=algorithm)
        with self._db.transaction() as conn:
            conn.execute(update(C).where(C.c.id == info.id).values(
                replaced_by=new.id, renewal_error=None))
        self._record("data", "cert.renew", f"{info.channel}/{info.serial_hex}",
                     {"certificate_id": info.id, "replaced_by": new.id,
                      "channel": new.channel})
        return new

    def _failed(self, info: CertificateInfo, error: str) -> None:
        with self._db.transaction() as conn:
            conn.execute(update(C).where(C.c.id == info.id).values(renewal_error=error[:1000]))
        self._record("system", "cert.renewal-failed", f"{info.channel}/{info.serial_hex}",
                     {"certificate_id": info.id, "error": error,
                      "not_after": _aware(info.not_after).isoformat()})

    def report(self) -> dict[str, Any]:
        """What is due, what failed, what expires un-renewed within a week."""
        now = self._clock()
        due = self.due()
        with self._db.engine.connect() as conn:
            errors = dict(conn.execute(select(C.c.id, C.c.renewal_error).where(
                C.c.id.in_([c.id for c in due]), C.c.renewal_error.is_not(None))).all())

        def entry(info: CertificateInfo) -> dict[str, Any]:
            return {"id": info.id, "profile": info.profile, "subject": info.subject,
                    "channel": info.channel, "not_after": _aware(info.not_after).isoformat(),
                    "holder": "signer" if info.signer_id is not None else "appliance",
                    "signer_id": info.signer_id, "error": errors.get(info.id)}

        return {"renew_days_before": self._config.renew_days_before,
                "due": [entry(c) for c in due],
                "failed": [entry(c) for c in due if c.id in errors],
                "urgent": [entry(c) for c in due if _aware(c.not_after) - now <= URGENT]}

    def _record(self, category: str, action: str, subject: str,
                details: Mapping[str, Any]) -> None:
        if self._audit is not None:
            self._audit(category, action, actor_label(WORKER_ACTOR), subject, dict(details))


WORKER_ACTOR: Actor = WORKER
