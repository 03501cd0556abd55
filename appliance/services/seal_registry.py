"""Seal management: the hospital's and departments' seals as the security administrator keeps
them (tender: 印章管理) -- a name, a kind (hospital | department), the seal image shown in PDF
seals, the server-held key and certificate it signs with, enabled or not, which applications
may use it, and a log of every use.

Creating a seal generates a server-held key and has its ``organization-seal`` certificate issued
through the profile's active CA channel (``ChannelService.enroll_server_key``); an existing
seal certificate with a server-held key can be bound instead (a renewed one, a certificate from
an external CA).  ``POST /api/v1/seal`` asks :meth:`SealRegistry.authorize` before it seals:
the seal must exist, be enabled and have a key, and an application must be in its scope.

Threat model.  A seal is the hospital's signature, so every change to it is the security
administrator's (DESIGN §8) and is in the audit log (category ``data``; binding another key is
``seal.bind``, a sensitive change, with the old and new certificate).  Deny by default: a new
seal has no application in its scope.  Images come from the console: only PNG, at most
``MAX_IMAGE_BYTES``, fully decoded by pdfsign before anything is stored (a corrupt, huge or
non-image upload is a 400 and changes nothing).  A disabled seal seals nothing, whoever asks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

import pdfsign
from appliance.errors import Conflict, Forbidden, NotFound, ValidationFailed
from appliance.services._time import aware, utc_now
from appliance.services.admins import Actor, actor_label, require_manager
from appliance.services.ca import CaService
from appliance.services.channels import ChannelService
from appliance.storage import Database, schema
from ca_client import SubjectInfo
from signcore.hashes import HashAlgorithm, digest

S = schema.seals
SCOPES = schema.seal_scopes
USAGE = schema.seal_usage
C = schema.certificates
SEAL_PROFILE = "organization-seal"
KINDS = ("hospital", "department")
ALGORITHMS = ("sm2", "rsa")
MAX_IMAGE_BYTES = 512 * 1024
MAX_PAGE = 200
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_PNG = b"\x89PNG\r\n\x1a\n"
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]


@dataclasses.dataclass(frozen=True)
class ManagedSeal:
    id: int
    name: str
    kind: str
    department: str | None
    image_sm3: str | None
    certificate_id: int | None
    key_id: str | None
    enabled: bool
    applications: tuple[int, ...]
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    updated_by: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind,
                "department": self.department, "has_image": self.image_sm3 is not None,
                "image_sm3": self.image_sm3, "certificate_id": self.certificate_id,
                "enabled": self.enabled, "applications": list(self.applications),
                "created_at": self.created_at.isoformat(), "created_by": self.created_by,
                "updated_at": self.updated_at.isoformat(), "updated_by": self.updated_by}


@dataclasses.dataclass(frozen=True)
class Use:
    """One document sealed: what the usage log records."""

    document_id: str
    digest: str  # hex
    digest_algorithm: str
    format: str


def check_png(data: bytes) -> bytes:
    """A seal image: a PNG of at most MAX_IMAGE_BYTES that decodes completely."""
    if not isinstance(data, bytes) or not data:
        raise ValidationFailed("image: 请上传 PNG 格式的印章图片")
    if len(data) > MAX_IMAGE_BYTES:
        raise ValidationFailed(f"image: 印章图片不得超过 {MAX_IMAGE_BYTES} 字节")
    if not data.startswith(_PNG):
        raise ValidationFailed("image: 印章图片须为 PNG 格式")
    try:
        pdfsign.load_image(data)
    except pdfsign.InvalidAppearance as exc:
        raise ValidationFailed(f"image: 印章图片无法解码（{exc}）") from None
    return data


def _text(value: Any, name: str, max_length: int, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value.strip()) <= max_length or \
            any(ord(c) < 0x20 for c in value):
        raise ValidationFailed(f"{name}: 1 到 {max_length} 个字符")
    return value.strip()


class SealRegistry:
    def __init__(self, database: Database, ca: CaService, channels: ChannelService, *,
                 audit: AuditHook | None = None,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._db, self._ca, self._channels = database, ca, channels
        self._audit, self._clock = audit, clock

    # -- reading

    def list(self, actor: Actor | None) -> list[ManagedSeal]:
        require_manager(actor, "印章")
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(S).order_by(S.c.id)).all()
            scopes = self._scopes(conn, [r.id for r in rows])
        return [_seal(row, scopes.get(row.id, ())) for row in rows]

    def get(self, actor: Actor | None, seal_id: int) -> ManagedSeal:
        require_manager(actor, "印章")
        return self._get(seal_id)

    def _get(self, seal_id: int) -> ManagedSeal:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(S).where(S.c.id == seal_id)).first()
            if row is None:
                raise NotFound(f"没有编号为 {seal_id} 的印章")
            scopes = self._scopes(conn, [seal_id])
        return _seal(row, scopes.get(seal_id, ()))

    @staticmethod
    def _scopes(conn: Any, seal_ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
        found: dict[int, list[int]] = {}
        if seal_ids:
            for seal_id, app_id in conn.execute(
                    select(SCOPES.c.seal_id, SCOPES.c.application_id)
                    .where(SCOPES.c.seal_id.in_(seal_ids))
                    .order_by(SCOPES.c.application_id)):
                found.setdefault(int(seal_id), []).append(int(app_id))
        return {k: tuple(v) for k, v in found.items()}

    def image(self, actor: Actor | None, seal_id: int) -> bytes:
        require_manager(actor, "印章")
        with self._db.engine.connect() as conn:
            row = conn.execute(select(S.c.id, S.c.image).where(S.c.id == seal_id)).first()
        if row is None:
            raise NotFound(f"没有编号为 {seal_id} 的印章")
        if row.image is None:
            raise NotFound("该印章尚未上传图片")
        return bytes(row.image)

    def usage(self, actor: Actor | None, seal_id: int, *, offset: int = 0,
              limit: int = 50) -> dict[str, Any]:
        require_manager(actor, "印章")
        if not 0 < limit <= MAX_PAGE or offset < 0:
            raise ValidationFailed(f"limit: 1 到 {MAX_PAGE}；offset ≥ 0")
        self._get(seal_id)
        with self._db.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(USAGE)
                                 .where(USAGE.c.seal_id == seal_id)).scalar_one()
            rows = conn.execute(select(USAGE).where(USAGE.c.seal_id == seal_id)
                                .order_by(USAGE.c.id.desc()).offset(offset).limit(limit)).all()
        return {"items": [_use(row) for row in rows], "total": int(total), "offset": offset,
                "limit": limit}

    # -- changes (security administrator)

    def create(self, actor: Actor | None, *, name: str, kind: str, department: str | None,
               common_name: str, organization: str, algorithm: str,
               image: bytes | None = None) -> ManagedSeal:
        """A new seal with a fresh server-held key, certified through the active channel of
        the organization-seal profile; enabled, with no application in its scope."""
        require_manager(actor, "印章")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValidationFailed("name: 小写字母、数字、. _ -，1 到 64 个字符")
        if kind not in KINDS:
            raise ValidationFailed("kind 应为 hospital 或 department")
        department = _text(department, "department", 128, required=kind == "department")
        if algorithm not in ALGORITHMS:
            raise ValidationFailed("algorithm 应为 sm2 或 rsa")
        subject = SubjectInfo(common_name=str(_text(common_name, "common_name", 64)),
                              organization=str(_text(organization, "organization", 128)),
                              department=department or "")
        png = check_png(image) if image is not None else None
        self._unique(name)
        # Slow (key generation, maybe an external CA): before, not inside, the transaction.
        info = self._channels.enroll_server_key(actor, profile=SEAL_PROFILE, subject=subject,
                                                algorithm=algorithm)
        key_id = self._key_of(info.id)
        now, who = self._clock(), actor_label(actor)
        try:
            with self._db.transaction() as conn:
                seal_id = conn.execute(insert(S).values(
                    name=name, kind=kind, department=department, image=png,
                    image_sm3=_sm3(png), certificate_id=info.id, key_id=key_id, enabled=True,
                    created_at=now, created_by=who, updated_at=now, updated_by=who)
                    .returning(S.c.id)).scalar_one()
        except IntegrityError:
            raise Conflict(f"印章 {name} 已存在") from None
        self._record("seal.create", actor, seal_id, {
            "name": name, "kind": kind, "department": department, "certificate_id": info.id,
            "algorithm": algorithm, "image_sm3": _sm3(png)})
        return self._get(seal_id)

    def _unique(self, name: str) -> None:
        with self._db.engine.connect() as conn:
            if conn.execute(select(S.c.id).where(S.c.name == name)).first() is not None:
                raise Conflict(f"印章 {name} 已存在")

    def _key_of(self, certificate_id: int) -> str:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(C.c.key_id).where(C.c.id == certificate_id)).first()
        if row is None or row.key_id is None:
            raise Conflict(f"证书 {certificate_id} 没有设备持有的私钥")
        return str(row.key_id)

    def set_image(self, actor: Actor | None, seal_id: int, image: bytes) -> ManagedSeal:
        require_manager(actor, "印章")
        png = check_png(image)
        old = self._update(actor, seal_id, image=png, image_sm3=_sm3(png))
        self._record("seal.image", actor, seal_id, {"old_sm3": old.image_sm3,
                                                    "new_sm3": _sm3(png)})
        return self._get(seal_id)

    def bind(self, actor: Actor | None, seal_id: int, certificate_id: int) -> ManagedSeal:
        """Bind an existing organization-seal certificate whose key the appliance holds."""
        require_manager(actor, "印章")
        with self._db.engine.connect() as conn:
            row = conn.execute(select(C).where(C.c.id == certificate_id)).first() \
                if 0 < certificate_id < 2**63 else None
        if row is None:
            raise NotFound(f"没有编号为 {certificate_id} 的证书")
        if row.profile != SEAL_PROFILE or row.key_id is None:
            raise ValidationFailed("只能绑定设备持有私钥的机构印章证书（organization-seal）")
        status = self._ca.get(certificate_id).effective_status(self._clock())
        if status != "active":
            raise ValidationFailed(f"证书 {certificate_id} 当前不可用（{status}）")
        old = self._update(actor, seal_id, certificate_id=certificate_id, key_id=row.key_id)
        self._record("seal.bind", actor, seal_id, {"old_certificate_id": old.certificate_id,
                                                   "certificate_id": certificate_id})
        return self._get(seal_id)

    def set_enabled(self, actor: Actor | None, seal_id: int, enabled: bool) -> ManagedSeal:
        require_manager(actor, "印章")
        self._update(actor, seal_id, enabled=enabled)
        self._record("seal.enable" if enabled else "seal.disable", actor, seal_id, {})
        return self._get(seal_id)

    def set_scope(self, actor: Actor | None, seal_id: int,
                  application_ids: Iterable[int]) -> ManagedSeal:
        """Exactly these applications may use the seal (an empty list: none)."""
        require_manager(actor, "印章")
        wanted = sorted(set(application_ids))
        if len(wanted) > 500 or any(isinstance(a, bool) or not isinstance(a, int)
                                    or not 0 < a < 2**63 for a in wanted):
            raise ValidationFailed("applications: 应用编号列表（至多 500 个）")
        with self._db.transaction() as conn:
            known = {int(r.id) for r in conn.execute(
                select(schema.applications.c.id)
                .where(schema.applications.c.id.in_(wanted)))} if wanted else set()
            missing = [a for a in wanted if a not in known]
            if missing:
                raise ValidationFailed(f"applications: 没有编号为 {missing[0]} 的应用")
            if conn.execute(select(S.c.id).where(S.c.id == seal_id)).first() is None:
                raise NotFound(f"没有编号为 {seal_id} 的印章")
            conn.execute(delete(SCOPES).where(SCOPES.c.seal_id == seal_id))
            if wanted:
                conn.execute(insert(SCOPES), [{"seal_id": seal_id, "application_id": a}
                                              for a in wanted])
            conn.execute(update(S).where(S.c.id == seal_id).values(
                updated_at=self._clock(), updated_by=actor_label(actor)))
        self._record("seal.scope", actor, seal_id, {"applications": wanted})
        return self._get(seal_id)

    def _update(self, actor: Actor | None, seal_id: int, **values: Any) -> ManagedSeal:
        old = self._get(seal_id)
        with self._db.transaction() as conn:
            conn.execute(update(S).where(S.c.id == seal_id).values(
                updated_at=self._clock(), updated_by=actor_label(actor), **values))
        return old

    # -- use (POST /api/v1/seal)

    def authorize(self, actor: Actor | None, seal_id: int) -> tuple[ManagedSeal, bytes | None]:
        """The seal ``actor`` may seal with now, and its image: 404 unknown, 409 disabled or
        without a key, 403 an application outside its scope."""
        seal = self._get(seal_id)
        self._check_use(actor, seal)
        return seal, self._image_of(seal.id)

    def for_certificate(self, actor: Actor | None, certificate_ids: Sequence[int],
                        ) -> tuple[ManagedSeal, bytes | None] | None:
        """The managed seal one of these certificates (a certificate and those it renewed) is
        bound to, if any, checked as :meth:`authorize` (a certificate of a managed seal is
        used only under that seal's rules)."""
        with self._db.engine.connect() as conn:
            ids = [int(r.id) for r in conn.execute(
                select(S.c.id).where(S.c.certificate_id.in_(list(certificate_ids)))
                .order_by(S.c.id))]
        if not ids:
            return None
        seals = [self._get(i) for i in ids]
        usable = [s for s in seals if s.enabled and _allowed(actor, s)]
        chosen = usable[0] if usable else seals[0]
        self._check_use(actor, chosen)
        return chosen, self._image_of(chosen.id)

    @staticmethod
    def _check_use(actor: Actor | None, seal: ManagedSeal) -> None:
        if not seal.enabled:
            raise Conflict(f"印章 {seal.name} 已停用")
        if seal.certificate_id is None or seal.key_id is None:
            raise Conflict(f"印章 {seal.name} 尚未绑定密钥和证书")
        if not _allowed(actor, seal):
            raise Forbidden(f"本应用无权使用印章 {seal.name}")

    def _image_of(self, seal_id: int) -> bytes | None:
        with self._db.engine.connect() as conn:
            image = conn.execute(select(S.c.image).where(S.c.id == seal_id)).scalar_one()
        return bytes(image) if image is not None else None

    def record_usage(self, actor: Actor | None, seal: ManagedSeal, uses: Sequence[Use],
                     request_id: str) -> None:
        """One usage row per document (the audit entry of the batch is SealService's)."""
        now = self._clock()
        app_id = actor.id if actor is not None and actor.kind == "app" else None
        with self._db.transaction() as conn:
            conn.execute(insert(USAGE), [
                {"seal_id": seal.id, "application_id": app_id, "actor": actor_label(actor),
                 "document_id": use.document_id, "document_digest": use.digest,
                 "digest_algorithm": use.digest_algorithm, "format": use.format,
                 "request_id": request_id, "used_at": now} for use in uses])

    def _record(self, action: str, actor: Actor | None, seal_id: int,
                details: dict[str, Any]) -> None:
        if self._audit is not None:
            self._audit("data", action, actor_label(actor), f"seal:{seal_id}", details)


def _allowed(actor: Actor | None, seal: ManagedSeal) -> bool:
    """Applications only within the seal's scope; the appliance itself (evidence reports) and
    the console's operator are not applications."""
    if actor is None or actor.kind != "app":
        return True
    return actor.id in seal.applications


def _sm3(data: bytes | None) -> str | None:
    return digest(HashAlgorithm.SM3, data).hex() if data is not None else None


def _seal(row: Any, applications: Sequence[int]) -> ManagedSeal:
    return ManagedSeal(
        id=int(row.id), name=row.name, kind=row.kind, department=row.department,
        image_sm3=row.image_sm3,
        certificate_id=int(row.certificate_id) if row.certificate_id is not None else None,
        key_id=row.key_id, enabled=bool(row.enabled), applications=tuple(applications),
        created_at=aware(row.created_at), created_by=row.created_by,
        updated_at=aware(row.updated_at), updated_by=row.updated_by)


def _use(row: Any) -> dict[str, Any]:
    return {"id": int(row.id), "application_id": row.application_id, "actor": row.actor,
            "document_id": row.document_id, "document_digest": row.document_digest,
            "digest_algorithm": row.digest_algorithm, "format": row.format,
            "request_id": row.request_id, "used_at": aware(row.used_at).isoformat()}


__all__ = ["KINDS", "MAX_IMAGE_BYTES", "ManagedSeal", "SealRegistry", "Use", "check_png"]
