"""Signers' phones: one-time activation codes, device binding, device-signed requests.

A signer's phone is bound once: the hospital's backend (scope ``signer:write``) or the
security administrator issues a one-time activation code for an *active* signer (shown as
text and as a QR code), the phone generates its device key (SM2, on the phone), and
``POST /api/v1/mobile/activate`` binds that key to the signer.  Every later mobile request is
signed with the device key (:mod:`appliance.api.device_signing`).

Threat model.
- An activation code is 80 random bits (16 Crockford base-32 characters), valid for
  ``ACTIVATION_MINUTES`` and for one use; only its SM3 hash is stored, so a database reader
  cannot bind a phone with it.  Guessing one online is hopeless at 80 bits, so the public
  activation endpoint needs no counter; every failure still costs the caller a request.
- Whoever holds a valid code can bind a device to that signer: the code must reach the signer
  over a channel the hospital trusts (its app after login, or the console in person).  The
  bound device alone cannot sign: a signature also needs the phone's key share and the PIN,
  which the server checks (keysplit.pin).
- Binding a new phone revokes the signer's earlier devices: their requests are refused from
  then on, and the split key they held is retired when the new phone's key is enrolled.
- Device requests are SM2 signatures over the method, path, query, body digest, timestamp and
  nonce; the nonce is remembered like an application's (replays refused), the timestamp
  bounds the window.  A revoked device, or one whose signer was disabled, is refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update

from appliance.errors import BadRequest, NotFound, Unauthorized, ValidationFailed
from appliance.services._time import aware, utc_now
from appliance.services.admins import Actor, actor_label
from appliance.services.applications import ApplicationService
from appliance.storage import Database, schema
from signcore.errors import DecodeError, InvalidKey, UnsupportedAlgorithm
from signcore.hashes import sm3
from signcore.keys import load_public_key
from signcore.sm2 import SM2PublicKey

D = schema.devices
A = schema.activation_codes
S = schema.signers
# Built once: every device-signed request runs it, and building a statement costs about four
# times what executing a built one does (SQLAlchemy's coercions and cache key).
_DEVICE_AND_SIGNER = select(D, S.c.status.label("signer_status")).join(
    S, S.c.id == D.c.signer_id).where(D.c.id == bindparam("device_id"))
ACTIVATION_MINUTES = 15
MAX_ACTIVATION_MINUTES = 7 * 24 * 60
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base 32: no I, L, O, U
_CODE_LENGTH = 16
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]


class ActivationFailed(BadRequest):
    code, title = "activation-failed", "激活码无效"


class DeviceSignatureInvalid(Unauthorized):
    code, title = "device-signature-invalid", "设备签名无效"


class DeviceRevoked(Unauthorized):
    code, title = "device-revoked", "该设备已解绑"


class DeviceReplay(Unauthorized):
    code, title = "replay", "请求重放"


@dataclasses.dataclass(frozen=True)
class Activation:
    code: str  # grouped for reading: XXXX-XXXX-XXXX-XXXX
    signer_id: int
    expires_at: dt.datetime

    @property
    def uri(self) -> str:
        """What the QR code carries; the phone app reads the code from it."""
        return f"medsign://activate?code={self.code.replace('-', '')}"

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "uri": self.uri, "signer_id": self.signer_id,
                "expires_at": self.expires_at.isoformat()}


@dataclasses.dataclass(frozen=True)
class Device:
    id: str
    signer_id: int
    name: str
    status: str
    public_key: bytes  # SPKI DER
    created_at: dt.datetime
    last_seen_at: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "signer_id": self.signer_id, "name": self.name,
                "status": self.status, "created_at": self.created_at.isoformat(),
                "last_seen_at": self.last_seen_at.isoformat() if self.last_seen_at else None}


def normalize_code(code: str) -> str:
    """The code as issued: upper case, separators and spaces dropped, the letters people
    mistake for digits read as those digits (Crockford)."""
    cleaned = code.strip().upper().replace("-", "").replace(" ", "")
    return cleaned.translate(str.maketrans("OIL", "011"))


def _code_hash(code: str) -> str:
    return sm3(b"medsign/activation/v1" + normalize_code(code).encode()).hex()


def _device(row: Row[Any]) -> Device:
    return Device(row.id, int(row.signer_id), row.name, row.status, bytes(row.public_key),
                  aware(row.created_at), aware(row.last_seen_at) if row.last_seen_at else None)


@functools.lru_cache(maxsize=4096)
@functools.lru_cache(maxsize=4096)
def load_device_key(der: bytes) -> SM2PublicKey:
    """The SM2 key of a device (cached by its DER: every device-signed request needs it, and
    a key object is immutable)."""
    try:
        key = load_public_key(der)
    except (DecodeError, InvalidKey, UnsupportedAlgorithm, ValueError):
        key = None
    if not isinstance(key, SM2PublicKey):
        raise ValidationFailed("device_public_key 应为 SM2 公钥（SubjectPublicKeyInfo DER，"
                               "base64）")
    return key


class DeviceService:
    def __init__(self, database: Database, applications: ApplicationService, *,
                 audit: AuditHook | None = None,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._db, self._apps, self._audit, self._clock = database, applications, audit, clock

    # -- activation

    def issue_activation(self, actor: Actor, signer_id: int, *,
                         minutes: int = ACTIVATION_MINUTES) -> Activation:
        if not 0 < minutes <= MAX_ACTIVATION_MINUTES:
            raise ValidationFailed(f"有效期应为 1 到 {MAX_ACTIVATION_MINUTES} 分钟")
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_LENGTH))
        code = "-".join(raw[i:i + 4] for i in range(0, _CODE_LENGTH, 4))
        now = self._clock()
        expires = now + dt.timedelta(minutes=minutes)
        with self._db.transaction() as conn:
            signer = conn.execute(select(S.c.status).where(S.c.id == signer_id)).first()
            if signer is None:
                raise NotFound(f"没有编号为 {signer_id} 的签名人")
            if signer.status != "active":
                raise ValidationFailed("只有已审核通过（启用）的签名人可以激活手机")
            conn.execute(insert(A).values(code_hmac=_code_hash(code), signer_id=signer_id,
                                          expires_at=expires, created_at=now,
                                          created_by=actor_label(actor)))
        self._record("data", "device.activation-code", actor, f"signer:{signer_id}",
                     {"expires_at": expires.isoformat()})
        return Activation(code, signer_id, expires)

    def activate(self, code: str, public_key_der: bytes, name: str) -> Device:
        """Bind a phone's device key to the code's signer; earlier devices are revoked."""
        load_device_key(public_key_der)
        if not isinstance(code, str) or len(code) > 64:
            raise ActivationFailed("激活码无效或已过期，请重新获取")
        now = self._clock()
        device_id = "dv_" + secrets.token_urlsafe(15)
        with self._db.transaction() as conn:
            row = conn.execute(select(A).where(A.c.code_hmac == _code_hash(code))).first()
            if row is None or row.used_at is not None or aware(row.expires_at) <= now:
                raise ActivationFailed("激活码无效、已使用或已过期，请重新获取")
            signer = conn.execute(select(S.c.status).where(S.c.id == row.signer_id)).one()
            if signer.status != "active":
                raise ActivationFailed("该签名人当前不可激活手机")
            taken = conn.execute(update(A).where(A.c.code_hmac == row.code_hmac,
                                                 A.c.used_at.is_(None))
                                 .values(used_at=now, device_id=device_id)).rowcount
            if taken != 1:
                raise ActivationFailed("激活码已使用")
            revoked = conn.execute(update(D).where(D.c.signer_id == row.signer_id,
                                                   D.c.status == "active")
                                   .values(status="revoked", revoked_at=now)).rowcount
            conn.execute(insert(D).values(id=device_id, signer_id=row.signer_id,
                                          public_key=public_key_der, name=name[:64],
                                          status="active", created_at=now))
            device = _device(conn.execute(select(D).where(D.c.id == device_id)).one())
        self._record("data", "device.bind", None, f"signer:{device.signer_id}",
                     {"device_id": device_id, "earlier_devices_revoked": revoked})
        return device

    # -- requests signed by a device

    def authenticate(self, device_id: str, nonce: str,
                     signature_valid: Callable[[SM2PublicKey], bool]) -> Device:
        """Check a device-signed request: known, active device of an active signer, valid
        signature, new nonce.  Unknown devices and bad signatures get the same answer."""
        with self._db.engine.connect() as conn:
            row = conn.execute(_DEVICE_AND_SIGNER, {"device_id": device_id}).first()
        if row is None or not signature_valid(load_device_key(bytes(row.public_key))):
            raise DeviceSignatureInvalid("设备签名无效")
        if row.status != "active":
            raise DeviceRevoked("该设备已解绑，请重新激活")
        if row.signer_status != "active":
            raise DeviceRevoked("签名人已停用")
        if not self._apps.record_nonce(device_id, nonce):
            raise DeviceReplay("该请求的 nonce 已使用过，请求被拒绝")
        return _device(row)

    def touch(self, device_id: str) -> None:
        with self._db.transaction() as conn:
            conn.execute(update(D).where(D.c.id == device_id).values(last_seen_at=self._clock()))

    # -- reading and unbinding

    def get(self, device_id: str) -> Device:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(D).where(D.c.id == device_id)).first()
        if row is None:
            raise NotFound(f"没有设备 {device_id}")
        return _device(row)

    def of_signer(self, signer_id: int) -> list[Device]:
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(D).where(D.c.signer_id == signer_id)
                                .order_by(D.c.created_at.desc())).all()
        return [_device(r) for r in rows]

    def revoke(self, actor: Actor, device_id: str) -> Device:
        with self._db.transaction() as conn:
            changed = conn.execute(update(D).where(D.c.id == device_id, D.c.status == "active")
                                   .values(status="revoked", revoked_at=self._clock())).rowcount
        device = self.get(device_id)
        if changed:
            self._record("data", "device.revoke", actor, f"signer:{device.signer_id}",
                         {"device_id": device_id})
        return device

    def _record(self, category: str, action: str, actor: Actor | None, subject: str,
                details: Mapping[str, Any]) -> None:
        if self._audit is not None:
            self._audit(category, action, actor_label(actor) if actor else "device",
                        subject, dict(details))
